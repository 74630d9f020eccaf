package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
)

// auditReserve is the room set aside on disk, past the end of the audit
// file, before a request is forwarded: enough for its record (and many
// more), so that a request the cluster saw is a request the file records.
const auditReserve = 64 << 10

// ErrAudit wraps every failure to write or sync an audit record.
var ErrAudit = errors.New("audit failed")

// auditLog writes one JSON line per API request and per call, to a file
// when one is configured and to the log. It fails closed: a request is
// forwarded only once room for its record is allocated, a line is written
// whole or not at all, and a call whose record is not on disk is not a
// success.
type auditLog struct {
	log  hclog.Logger
	path string

	mu   sync.Mutex
	file *os.File
	// noReserve: the filesystem cannot preallocate; only write errors count.
	noReserve bool
	// torn: a failed write left part of a line that could not be cut off.
	torn bool
	// failure is why the last write or sync failed, since when, and how
	// many records were lost since; nil once a record is written again.
	failure error
	since   time.Time
	lost    int
	// refusing is why no room could be set aside for the next request's
	// record; nil once it can be.
	refusing error
}

func openAudit(path string, log hclog.Logger) (*auditLog, error) {
	a := &auditLog{log: log, path: path}
	if path == "" {
		return a, nil
	}
	// Read access is only to mend a partial last line; a file the server
	// may only write is still used.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_APPEND|os.O_CREATE, 0o600)
	if errors.Is(err, os.ErrPermission) {
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	}
	if err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	a.file = f
	// A line a crash cut short stays on a line of its own.
	if st, err := f.Stat(); err == nil && st.Size() > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, st.Size()-1); err == nil && last[0] != '\n' {
			if _, err := f.Write([]byte("\n")); err != nil {
				f.Close()
				return nil, fmt.Errorf("audit file %s: %w", path, err)
			}
		}
	}
	// A server that cannot audit does not start.
	if err := a.reserveLocked(); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit file %s: no room for audit records: %w", path, err)
	}
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
	Warm       bool      `json:"warm,omitempty"`
	Status     Status    `json:"status"`
	ExitCode   int       `json:"exit_code"`
	DurationMS int64     `json:"duration_ms"`
	Allowed    int       `json:"requests_allowed"`
	Denied     int       `json:"requests_denied"`
}

// gapLine records, once writing works again, that records were lost.
type gapLine struct {
	Type  string    `json:"type"` // "audit_gap"
	Time  time.Time `json:"time"`
	Since time.Time `json:"since"`
	Lost  int       `json:"records_lost"`
	Error string    `json:"error"`
}

// ready reports whether a request may be forwarded: room for its record
// must be allocated first. It is the gateway's AuditReady.
func (a *auditLog) ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file == nil {
		return nil
	}
	if a.torn {
		return fmt.Errorf("%w: the audit file %s ends with a partial line that could not be removed", ErrAudit, a.path)
	}
	if a.noReserve && a.failure != nil {
		// No room can be set aside here: the last failed write decides,
		// until a record (this request's refusal, say) is written again.
		return fmt.Errorf("%w: the last record could not be written to %s: %w", ErrAudit, a.path, a.failure)
	}
	if err := a.reserveLocked(); err != nil {
		err = fmt.Errorf("%w: no room in the audit file %s for the record of this request: %w", ErrAudit, a.path, err)
		if a.refusing == nil {
			a.log.Error("no room for audit records; API requests are refused until there is", "file", a.path, "error", err)
		}
		a.refusing = err
		return err
	}
	if a.refusing != nil {
		a.log.Warn("room for audit records again; API requests are forwarded", "file", a.path)
		a.refusing = nil
	}
	return nil
}

// reserveLocked allocates auditReserve bytes past the end of the file,
// keeping its size: appends then use blocks the file already holds.
func (a *auditLog) reserveLocked() error {
	if a.noReserve {
		return nil
	}
	st, err := a.file.Stat()
	if err != nil {
		return err
	}
	err = unix.Fallocate(int(a.file.Fd()), unix.FALLOC_FL_KEEP_SIZE, st.Size(), auditReserve)
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		a.noReserve = true
		a.log.Warn("the audit file's filesystem cannot preallocate; requests are forwarded without room set aside for their records", "file", a.path)
		return nil
	}
	return err
}

func (a *auditLog) request(rec gateway.Record) error {
	err := a.write(requestLine{Type: "request", Record: rec})
	a.log.Debug("api request", "call_id", rec.CallID, "verb", rec.Verb, "resource", rec.Resource, "namespace", rec.Namespace,
		"name", rec.Name, "decision", rec.Decision, "rule", rec.Rule, "status", rec.Status)
	if err != nil {
		// The log is then the only trace of the request: all of it.
		a.log.Error("api request not audited", "error", err, "record", fmt.Sprintf("%+v", rec))
	}
	return err
}

// call writes the call's line and syncs the file, so the audit trail is
// on disk before the result reaches the caller. An error means it is not.
func (a *auditLog) call(res *Result, args []string) error {
	line := callLine{Type: "call", Time: res.Timestamp, CallID: res.CallID, Plugin: res.Plugin, Cluster: res.Cluster,
		Args: args, Sandbox: res.Sandbox, Warm: res.Warm, Status: res.Status, ExitCode: res.ExitCode, DurationMS: res.DurationMS}
	for _, r := range res.APIRequests {
		if r.Decision == gateway.Allow {
			line.Allowed++
		} else {
			line.Denied++
		}
	}
	err := a.write(line)
	if err == nil {
		a.mu.Lock()
		if a.file != nil {
			if serr := a.file.Sync(); serr != nil {
				err = fmt.Errorf("%w: the audit file %s was not synced: %w", ErrAudit, a.path, serr)
				a.failLocked(err, 0)
			}
		}
		a.mu.Unlock()
	}
	if err != nil {
		a.log.Error("call not audited", "call_id", res.CallID, "plugin", res.Plugin, "cluster", res.Cluster, "status", res.Status,
			"exit_code", res.ExitCode, "args", args, "requests_allowed", line.Allowed, "requests_denied", line.Denied, "error", err)
		return err
	}
	a.log.Info("call audited", "call_id", res.CallID, "plugin", res.Plugin, "cluster", res.Cluster, "status", res.Status,
		"requests_allowed", line.Allowed, "requests_denied", line.Denied)
	return nil
}

func (a *auditLog) write(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		err = fmt.Errorf("%w: %w", ErrAudit, err)
		a.log.Error("audit line not written", "error", err)
		return err
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file == nil {
		return nil
	}
	if a.failure != nil {
		// Say what is missing before going on.
		gap, _ := json.Marshal(gapLine{Type: "audit_gap", Time: time.Now().UTC(), Since: a.since, Lost: a.lost, Error: a.failure.Error()})
		if err := a.appendLocked(gap); err != nil {
			a.failLocked(err, 1)
			return err
		}
		a.log.Warn("audit file written again", "file", a.path, "since", a.since, "records_lost", a.lost)
		a.failure, a.lost = nil, 0
	}
	if err := a.appendLocked(data); err != nil {
		a.failLocked(err, 1)
		return err
	}
	return nil
}

// appendLocked appends data and a newline in one write. A short write is
// cut off again, so the file never holds part of a line.
func (a *auditLog) appendLocked(data []byte) error {
	if a.torn {
		if err := a.cutLocked(0); err != nil {
			return err
		}
	}
	line := append(data, '\n')
	n, err := a.file.Write(line)
	if err == nil {
		return nil
	}
	err = fmt.Errorf("%w: audit line not written to %s: %w", ErrAudit, a.path, err)
	if n > 0 {
		a.torn = true
		if cerr := a.cutLocked(int64(n)); cerr != nil {
			return errors.Join(err, cerr)
		}
	}
	return err
}

// cutLocked removes the last n bytes, a partial line; with n 0, whatever
// follows the last newline.
func (a *auditLog) cutLocked(n int64) error {
	st, err := a.file.Stat()
	if err != nil {
		return fmt.Errorf("%w: the partial line at the end of %s could not be removed: %w", ErrAudit, a.path, err)
	}
	end := st.Size() - n
	if n == 0 {
		for end > 0 {
			b := make([]byte, 1)
			if _, err := a.file.ReadAt(b, end-1); err != nil {
				return fmt.Errorf("%w: the partial line at the end of %s could not be removed: %w", ErrAudit, a.path, err)
			}
			if b[0] == '\n' {
				break
			}
			end--
		}
	}
	if err := a.file.Truncate(end); err != nil {
		return fmt.Errorf("%w: the partial line at the end of %s could not be removed: %w", ErrAudit, a.path, err)
	}
	a.torn = false
	return nil
}

// failLocked records a failure: the log says so once, then /health.
func (a *auditLog) failLocked(err error, lost int) {
	if a.failure == nil {
		a.since = time.Now().UTC()
		a.log.Error("the audit file cannot be written; calls fail until it can", "file", a.path, "error", err)
	}
	a.failure = err
	a.lost += lost
}

// state is "ok", "" without an audit file, or why records cannot be written.
func (a *auditLog) state() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	switch {
	case a.file == nil && a.path == "":
		return ""
	case a.failure != nil:
		return "failing since " + a.since.Format(time.RFC3339) + ": " + a.failure.Error()
	case a.refusing != nil:
		return "refusing API requests: " + a.refusing.Error()
	}
	return "ok"
}

// Close syncs the audit file, so no record is lost at shutdown, gives back
// the room set aside past its end, and closes it.
func (a *auditLog) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.file == nil {
		return nil
	}
	var cut error
	if a.torn {
		cut = a.cutLocked(0)
	}
	if st, err := a.file.Stat(); err == nil && !a.noReserve && cut == nil {
		// Only frees the room set aside; an append-only file keeps it.
		if err := a.file.Truncate(st.Size()); err != nil {
			a.log.Warn("the room set aside past the end of the audit file was not given back", "file", a.path, "error", err)
		}
	}
	err := errors.Join(a.file.Sync(), cut, a.file.Close())
	a.file = nil
	if err != nil {
		return fmt.Errorf("audit file: %w", err)
	}
	return nil
}

// AuditState says whether audit records are being written, for /health:
// "ok", "" without an audit file, or why not.
func (r *Runtime) AuditState() string { return r.audit.state() }
