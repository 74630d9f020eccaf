package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
)

// auditLog writes one JSON line per API request and per call, to a file
// when one is configured and to the log.
type auditLog struct {
	log  hclog.Logger
	mu   sync.Mutex
	file *os.File
}

func openAudit(path string, log hclog.Logger) (*auditLog, error) {
	a := &auditLog{log: log}
	if path == "" {
		return a, nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	a.file = f
	return a, nil
}

// requestLine is an audit line for one API request.
type requestLine struct {
	Type string `json:"type"` // "request"
	gateway.Record
}

// callLine is the audit line that closes a call.
type callLine struct {
	Type       string    `json:"type"` // "call"
	Time       time.Time `json:"time"`
	CallID     string    `json:"call_id"`
	Plugin     string    `json:"plugin"`
	Cluster    string    `json:"cluster"`
	Args       []string  `json:"args"`
	Sandbox    string    `json:"sandbox"`
	Status     Status    `json:"status"`
	ExitCode   int       `json:"exit_code"`
	DurationMS int64     `json:"duration_ms"`
	Allowed    int       `json:"requests_allowed"`
	Denied     int       `json:"requests_denied"`
}

func (a *auditLog) request(rec gateway.Record) {
	a.write(requestLine{Type: "request", Record: rec})
	a.log.Debug("api request", "call_id", rec.CallID, "verb", rec.Verb, "resource", rec.Resource, "namespace", rec.Namespace,
		"name", rec.Name, "decision", rec.Decision, "rule", rec.Rule, "status", rec.Status)
}

// call writes the call's line and flushes the file, so the audit trail is
// on disk before the result reaches the caller.
func (a *auditLog) call(res *Result, args []string) {
	line := callLine{Type: "call", Time: res.Timestamp, CallID: res.CallID, Plugin: res.Plugin, Cluster: res.Cluster,
		Args: args, Sandbox: res.Sandbox, Status: res.Status, ExitCode: res.ExitCode, DurationMS: res.DurationMS}
	for _, r := range res.APIRequests {
		if r.Decision == gateway.Allow {
			line.Allowed++
		} else {
			line.Denied++
		}
	}
	a.write(line)
	a.log.Info("call audited", "call_id", res.CallID, "plugin", res.Plugin, "cluster", res.Cluster, "status", res.Status,
		"requests_allowed", line.Allowed, "requests_denied", line.Denied)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file != nil {
		if err := a.file.Sync(); err != nil {
			a.log.Error("audit file not flushed", "error", err)
		}
	}
}

func (a *auditLog) write(v any) {
	data, err := json.Marshal(v)
	if err != nil {
		a.log.Error("audit line not written", "error", err)
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file == nil {
		return
	}
	if _, err := a.file.Write(append(data, '\n')); err != nil {
		a.log.Error("audit line not written", "error", err)
	}
}

// Close syncs the audit file, so no record is lost at shutdown, and closes it.
func (a *auditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file == nil {
		return nil
	}
	err := errors.Join(a.file.Sync(), a.file.Close())
	a.file = nil
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	return nil
}
