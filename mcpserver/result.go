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
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// Statuses of calls that never reached a plugin, besides the runtime's own.
const (
	statusRefused runtime.Status = "refused" // the runtime refused the call before anything ran
	statusError   runtime.Status = "error"   // the call could not be prepared
)

// ownStatuses describes the statuses this package gives calls that never
// reached the runtime's Result, added to the generated description of
// status. The runtime's own statuses are described on runtime.Result.
const ownStatuses = "A call that never ran has status refused (not run: policy, an unknown plugin or cluster, forbidden arguments, no sandbox, or the server is shutting down) or error (not run: the call could not be prepared)."

// resultSchema is the outputSchema of plugins_execute: the one description
// of the result that every tool running a plugin returns. The plugin_<name>
// tools declare none, since a thousand copies of its 4 KiB in every
// tools/list would tell a client nothing new.
//
// mcp-go generates it from runtime.Result, as mcp.WithOutputSchema does:
// property names from the json tags, types from the Go types, required from
// the fields without omitempty, descriptions from the jsonschema tags. So it
// can never drift from what results carry. This package adds one sentence,
// on the statuses it owns; status stays described, not enumerated, so a
// status the runtime adds later does not turn results into schema errors.
var resultSchema = sync.OnceValues(func() (json.RawMessage, error) {
	raw, err := mcp.SchemaForRaw[runtime.Result]()
	if err != nil {
		return nil, fmt.Errorf("outputSchema of runtime.Result: %w", err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		return nil, fmt.Errorf("outputSchema of runtime.Result: %w", err)
	}
	props, _ := schema["properties"].(map[string]any)
	status, _ := props["status"].(map[string]any)
	if status == nil {
		return nil, errors.New("outputSchema of runtime.Result: it has no status property")
	}
	if _, enumerated := status["enum"]; enumerated {
		return nil, errors.New("outputSchema of runtime.Result: status is enumerated; describe its values instead, so a new status is no schema error")
	}
	desc, _ := status["description"].(string)
	status["description"] = strings.TrimSpace(desc + " " + ownStatuses)
	out, err := json.Marshal(schema)
	if err != nil {
		return nil, fmt.Errorf("outputSchema of runtime.Result: %w", err)
	}
	return out, nil
})

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
		s.logRefusal(ctx, plugin, cluster, err)
		return s.refusal(plugin, cluster, err)
	case res == nil:
		return s.refusal(plugin, cluster, errors.New("the runtime returned no result"))
	}
	s.logCall(ctx, res)
	return s.resultOf(res)
}

// refusal is the result of a call that never ran.
func (s *Server) refusal(plugin, cluster string, err error) *mcp.CallToolResult {
	status, what := statusError, "could not run"
	if errors.Is(err, runtime.ErrRefused) || isRefusal(err) {
		status, what = statusRefused, "was refused before it ran"
	}
	reason := strings.TrimPrefix(err.Error(), runtime.ErrRefused.Error()+": ")
	sb := s.rt.Sandbox()
	res := &runtime.Result{
		Plugin:    plugin,
		Cluster:   cluster,
		ExitCode:  -1,
		Timestamp: time.Now().UTC(),
		Sandbox:   sb.Name,
		Status:    status,
		Message:   reason,
	}
	name := plugin
	if name == "" || pluginname.Check(name) != nil {
		name = "call"
	} else {
		name = "plugin " + name
	}
	text := fmt.Sprintf("%s %s: %s", name, what, reason)
	if sb.Available && !sb.Isolated {
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
	// The runtime's plugins run without isolation, and this one ran there
	// (a WebAssembly plugin runs in a backend of its own).
	if sb := s.rt.Sandbox(); sb.Available && !sb.Isolated && res.Sandbox == sb.Name {
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
