package runtime

import (
	"context"
	"errors"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
)

// Call is one plugin run an agent asked for.
type Call struct {
	// Plugin is the plugin's name, in any spelling (get_all, get-all).
	Plugin string
	// Args are the plugin's arguments, passed as argv: no shell reads them.
	Args []string
	// Cluster is the target cluster; "" means the default cluster.
	Cluster string
	// Stdin is the plugin's standard input, e.g. a manifest for
	// `kube-score score -`; at most MaxStdin bytes.
	Stdin string
	// Progress, when set, is called about once a second while the plugin
	// runs, with the time it has run so far.
	Progress func(elapsed time.Duration)
}

// Status says in one word how a call ended.
type Status string

const (
	StatusOK        Status = "ok"        // exit code 0
	StatusFailed    Status = "failed"    // a non-zero exit code
	StatusTimeout   Status = "timeout"   // execution_timeout ended it
	StatusCancelled Status = "cancelled" // the caller cancelled it
	StatusKilled    Status = "killed"    // a signal ended it
)

// Result is one call's structured result: the proposal's PluginResult and
// what an agent needs to reason about the run.
type Result struct {
	CallID    string    `json:"call_id" jsonschema:"Identifies this call in the server's logs and audit file; empty when nothing ran."`
	Plugin    string    `json:"plugin" jsonschema:"The plugin's name."`
	Cluster   string    `json:"cluster" jsonschema:"The cluster it ran on; empty when no cluster was used."`
	Output    string    `json:"output" jsonschema:"The plugin's standard output."`
	Error     string    `json:"error" jsonschema:"The plugin's standard error."`
	ExitCode  int       `json:"exit_code" jsonschema:"The plugin's exit code; -1 when it did not exit by itself or did not run."`
	Timestamp time.Time `json:"timestamp" jsonschema:"When the call started, RFC 3339."`
	// Duration is in nanoseconds, as the proposal's PluginResult has it.
	Duration   time.Duration `json:"duration" jsonschema:"How long it ran, in nanoseconds."`
	DurationMS int64         `json:"duration_ms" jsonschema:"How long it ran, in milliseconds."`
	// Sandbox names the backend that ran the plugin; "none" means no sandbox.
	Sandbox string `json:"sandbox" jsonschema:"The sandbox backend that ran it; container/gvisor means a container under gVisor's kernel; none means no sandbox: a plain process with the server's own rights. Empty when no backend can run plugins."`
	// Warm says the call started a container made ahead of it.
	Warm      bool   `json:"warm,omitempty" jsonschema:"True when the call started a container created ahead of it (the warm pool); absent when the call created its own. Either way the container served this call alone."`
	Truncated bool   `json:"truncated" jsonschema:"True when output beyond the server's cap (max_output) was dropped."`
	Status    Status `json:"status" jsonschema:"How the call ended: ok (exit code 0), failed (a non-zero exit code, or the plugin could not run), timeout (execution_timeout ended it), cancelled (the caller cancelled it, or the server shut down), killed (a signal ended it)."`
	// Message says in words why a call did not end with status ok.
	Message string `json:"message,omitempty" jsonschema:"In words: why the call did not end with status ok, that output was truncated, or that the server was shutting down."`
	// APIRequests are the Kubernetes API requests the plugin made, each as
	// the call's gateway decided and audited it.
	APIRequests []gateway.Record `json:"api_requests" jsonschema:"Every Kubernetes API request the plugin made, as the call's gateway decided and audited it: what the plugin did to the cluster."`
}

// MaxStdin is the most standard input one call may carry.
const MaxStdin = 1 << 20

// ErrRefused wraps every reason a call was refused before anything ran:
// unknown plugin or cluster, policy, forbidden arguments, no sandbox.
var ErrRefused = errors.New("call refused")

// Execute runs one call in a fresh sandbox. A refusal returns an error that
// wraps ErrRefused and runs nothing; a run that fails, times out or is
// cancelled returns a Result that says so.
func (r *Runtime) Execute(ctx context.Context, call Call) (*Result, error) {
	return r.execute(ctx, call)
}
