package runtime

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
)

// ErrNoAuditFile is returned when records are asked for and no audit file
// is configured: without one they go to the log only.
var ErrNoAuditFile = errors.New("no audit file is configured: set [audit] file (env PLUGINS_AUDIT_FILE)")

// AuditReader reads an audit file's records, one JSON line each, as the
// server wrote them. It hands out whole lines only: the server appends a
// record in one write, but a reader may catch one half-way; the rest of
// it comes with the next Read.
type AuditReader struct {
	f       *os.File
	r       *bufio.Reader
	callID  string
	partial []byte
}

// OpenAuditFile opens the audit file at path for reading; with callID
// set, only that call's records are read.
func OpenAuditFile(path, callID string) (*AuditReader, error) {
	if path == "" {
		return nil, ErrNoAuditFile
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit file: %w", err)
	}
	return &AuditReader{f: f, r: bufio.NewReaderSize(f, 64<<10), callID: callID}, nil
}

// Read calls each with every whole record from where the last Read
// stopped to the file's end now. each must copy a line it keeps.
func (a *AuditReader) Read(each func(line []byte)) error {
	for {
		chunk, err := a.r.ReadBytes('\n')
		a.partial = append(a.partial, chunk...)
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("audit file: %w", err)
		}
		line := bytes.TrimSpace(a.partial)
		a.partial = a.partial[:0]
		if len(line) > 0 && a.keep(line) {
			each(line)
		}
	}
}

func (a *AuditReader) keep(line []byte) bool {
	if a.callID == "" {
		return true
	}
	var rec struct {
		CallID string `json:"call_id"`
	}
	return json.Unmarshal(line, &rec) == nil && rec.CallID == a.callID
}

// Close closes the file.
func (a *AuditReader) Close() error { return a.f.Close() }

// CallAudit is the records of one call in the audit file, in the order
// they were written: its API requests, then the line that closes it.
// A call with no record yields none and no error.
func (r *Runtime) CallAudit(callID string) ([]json.RawMessage, error) {
	if callID == "" {
		return nil, errors.New("no call id given")
	}
	a, err := OpenAuditFile(r.audit.path, callID)
	if err != nil {
		return nil, err
	}
	defer a.Close()
	out := []json.RawMessage{}
	err = a.Read(func(line []byte) { out = append(out, json.RawMessage(bytes.Clone(line))) })
	return out, err
}
