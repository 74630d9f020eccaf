package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// Statuses of calls that never reached a plugin, besides the runtime's own.
const (
	statusRefused runtime.Status = "refused" // the runtime refused the call before anything ran
	statusError   runtime.Status = "error"   // the call could not be prepared
)

// resultSchema is the outputSchema of every tool that runs a plugin: the
// runtime's Result. Statuses are described, not enumerated, so a status the
// runtime adds later does not turn results into schema errors.
var resultSchema = json.RawMessage(`{
  "type": "object",
  "properties": {
    "call_id": {"type": "string", "description": "Identifies this call in the server's logs; empty when nothing ran."},
    "plugin": {"type": "string", "description": "The plugin's name."},
    "cluster": {"type": "string", "description": "The cluster it ran on; empty when no cluster was used."},
    "output": {"type": "string", "description": "The plugin's stdout."},
    "error": {"type": "string", "description": "The plugin's stderr."},
    "exit_code": {"type": "integer", "description": "The plugin's exit code; -1 when it did not exit by itself or did not run."},
    "timestamp": {"type": "string", "description": "When the call started, RFC 3339."},
    "duration": {"type": "integer", "description": "How long it ran, in nanoseconds."},
    "duration_ms": {"type": "integer", "description": "How long it ran, in milliseconds."},
    "sandbox": {"type": "string", "description": "The sandbox backend that ran it; \"none\" means no sandbox: a plain process with the server's rights."},
    "truncated": {"type": "boolean", "description": "True when output beyond the server's cap was dropped."},
    "status": {"type": "string", "description": "ok (exit 0), failed (non-zero exit), timeout, cancelled, killed (a signal); refused (not run: policy, unknown plugin or cluster, forbidden arguments, no sandbox) or error (not run: the call could not be prepared)."},
    "message": {"type": "string", "description": "Why the call did not end with status ok, in words."},
    "api_requests": {
      "type": "array",
      "description": "Every Kubernetes API request the plugin made, as the call's gateway decided and audited it: what the plugin did to the cluster.",
      "items": {
        "type": "object",
        "properties": {
          "method": {"type": "string"}, "path": {"type": "string"},
          "verb": {"type": "string"}, "group": {"type": "string"}, "version": {"type": "string"},
          "resource": {"type": "string"}, "subresource": {"type": "string"},
          "namespace": {"type": "string"}, "name": {"type": "string"},
          "decision": {"type": "string", "description": "allow or deny"},
          "rule": {"type": "string", "description": "The policy rule that decided."},
          "reason": {"type": "string", "description": "Why a request was denied."},
          "status": {"type": "integer", "description": "HTTP status the plugin got."},
          "bytes_in": {"type": "integer"}, "bytes_out": {"type": "integer"},
          "latency_ms": {"type": "number"}
        }
      }
    }
  },
  "required": ["plugin", "cluster", "output", "error", "exit_code", "status", "sandbox"]
}`)

// progressToken is the call's progress token, or nil when it has none.
func progressToken(req mcp.CallToolRequest) mcp.ProgressToken {
	if req.Params.Meta == nil {
		return nil
	}
	return req.Params.Meta.ProgressToken
}

// execute runs one call through the runtime and renders its result. ctx is
// the request's: mcp-go cancels it on notifications/cancelled (and when an
// HTTP client goes away), which ends the plugin at once.
func (s *Server) execute(ctx context.Context, req mcp.CallToolRequest, plugin string, argv []string, cluster, stdin string) *mcp.CallToolResult {
	call := runtime.Call{Plugin: plugin, Args: argv, Cluster: cluster, Stdin: stdin}
	var (
		progressMu sync.Mutex
		finished   bool
	)
	if tok := progressToken(req); tok != nil {
		call.Progress = func(elapsed time.Duration) {
			progressMu.Lock()
			defer progressMu.Unlock()
			if finished { // no progress after the result
				return
			}
			err := s.mcp.SendNotificationToClient(ctx, string(mcp.MethodNotificationProgress), map[string]any{
				"progressToken": tok,
				"progress":      elapsed.Seconds(),
				"message":       fmt.Sprintf("plugin %s running for %s", plugin, elapsed.Round(time.Second)),
			})
			if err != nil {
				s.log.Debug("progress not sent", "plugin", plugin, "error", err)
			}
		}
	}
	res, err := s.rt.Execute(ctx, call)
	progressMu.Lock()
	finished = true
	progressMu.Unlock()
	switch {
	case err != nil:
		return s.refusal(plugin, cluster, err)
	case res == nil:
		return s.refusal(plugin, cluster, errors.New("the runtime returned no result"))
	}
	return s.resultOf(res)
}

// refusal is the result of a call that never ran.
func (s *Server) refusal(plugin, cluster string, err error) *mcp.CallToolResult {
	status, what := statusError, "could not run"
	if errors.Is(err, runtime.ErrRefused) || isRefusal(err) {
		status, what = statusRefused, "was refused before it ran"
	}
	reason := strings.TrimPrefix(err.Error(), runtime.ErrRefused.Error()+": ")
	res := &runtime.Result{
		Plugin:    plugin,
		Cluster:   cluster,
		ExitCode:  -1,
		Timestamp: time.Now().UTC(),
		Sandbox:   s.rt.Backend(),
		Status:    status,
		Message:   reason,
	}
	name := plugin
	if name == "" || checkPluginName(name) != nil {
		name = "call"
	} else {
		name = "plugin " + name
	}
	text := fmt.Sprintf("%s %s: %s", name, what, reason)
	if s.rt.Backend() == "none" {
		text += "\nNothing ran. (Plugins on this server run without a sandbox, as plain processes with the server's own rights.)"
	}
	return &mcp.CallToolResult{
		Content:           []mcp.Content{mcp.NewTextContent(text)},
		StructuredContent: res,
		IsError:           true,
	}
}

// refusalError marks errors this package finds before the runtime runs
// anything, such as a plugin name that cannot be one.
type refusalError struct{ error }

func isRefusal(err error) bool {
	var r refusalError
	return errors.As(err, &r)
}

// resultOf renders a finished call for people and models: a summary line,
// then stdout, stderr and the message.
func (s *Server) resultOf(res *runtime.Result) *mcp.CallToolResult {
	var b strings.Builder
	b.WriteString(summaryLine(res))
	if res.Sandbox == "none" {
		b.WriteString("\nRan without a sandbox: a plain process with this server's own rights, files and network.")
	}
	if res.Output == "" {
		b.WriteString("\nstdout: (empty)")
	} else {
		b.WriteString("\nstdout:\n" + strings.TrimSuffix(res.Output, "\n"))
	}
	if res.Error != "" {
		b.WriteString("\nstderr:\n" + strings.TrimSuffix(res.Error, "\n"))
	}
	if res.Message != "" {
		b.WriteString("\nmessage: " + res.Message)
	}
	writeAPIRequests(&b, res)
	return &mcp.CallToolResult{
		Content:           []mcp.Content{mcp.NewTextContent(b.String())},
		StructuredContent: res,
		IsError:           res.Status != runtime.StatusOK,
	}
}

// writeAPIRequests says what the plugin did to the cluster: how many API
// requests, and each denied one with its rule, so a model sees why a
// plugin printed "Forbidden".
func writeAPIRequests(b *strings.Builder, res *runtime.Result) {
	if len(res.APIRequests) == 0 {
		return
	}
	denied := 0
	for _, r := range res.APIRequests {
		if r.Decision != gateway.Allow {
			denied++
		}
	}
	fmt.Fprintf(b, "\nAPI requests: %d (%d denied by policy)", len(res.APIRequests), denied)
	for _, r := range res.APIRequests {
		if r.Decision == gateway.Allow {
			continue
		}
		what := r.Resource
		if r.Subresource != "" {
			what += "/" + r.Subresource
		}
		if what == "" {
			what = r.Path
		}
		fmt.Fprintf(b, "\n  denied: %s %s", r.Verb, what)
		if r.Namespace != "" {
			fmt.Fprintf(b, " in %s", r.Namespace)
		}
		fmt.Fprintf(b, " (rule %s)", r.Rule)
	}
}

// summaryLine is "plugin X on cluster Y: exit 0 in 12ms (sandbox: none)".
func summaryLine(res *runtime.Result) string {
	where := "on cluster " + res.Cluster
	if res.Cluster == "" {
		where = "with no cluster"
	}
	how := fmt.Sprintf("exit %d", res.ExitCode)
	switch res.Status {
	case runtime.StatusOK:
	case runtime.StatusFailed:
		how = "failed, " + how
	default:
		how = string(res.Status)
		if res.ExitCode >= 0 {
			how += fmt.Sprintf(", exit %d", res.ExitCode)
		}
	}
	sandbox := res.Sandbox
	if sandbox == "" {
		sandbox = "unknown"
	}
	return fmt.Sprintf("plugin %s %s: %s in %dms (sandbox: %s)", res.Plugin, where, how, res.DurationMS, sandbox)
}
