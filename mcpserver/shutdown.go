package mcpserver

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// teardownGrace bounds how long the transports take to close once Shutdown
// has answered every call: for the answers to calls that arrived since
// (each refused at once) and for closing streams and connections.
const teardownGrace = 2 * time.Second

// errShuttingDown ends tool handlers that are still running when the
// shutdown grace period is over and are not runtime calls (those the
// runtime ends itself), such as plugins_discover.
var errShuttingDown = errors.New("the server is shutting down")

// Shutdown stops the server taking calls without losing an answer, on every
// transport. From now on every call that would run a plugin is refused at
// once, with a tool error result that says the server is shutting down;
// calls in flight get grace to finish, then they are cancelled (the runtime
// does both, see runtime.Runtime.Shutdown), as are other tool handlers
// still running then. Shutdown returns once every tools/call that reached a
// transport has been answered: its handler returned and its response was
// handed to the transport (written to stdout, or to the HTTP response or
// SSE stream that carries it), or the connection that would carry it is
// gone. It returns ctx's error when ctx ends first.
//
// The transports keep serving until their own context ends, which should
// be after Shutdown returns: they then close at once, within teardownGrace.
// Ending their context earlier does not cut off the calls Shutdown is
// waiting for: the transports wait for Shutdown to return first.
func (s *Server) Shutdown(ctx context.Context, grace time.Duration) error {
	defer s.stopOnce.Do(func() { close(s.stopped) })
	s.stopping.Store(true)
	start := time.Now()
	pending, running := s.calls.counts()
	s.log.Info("shutdown begun: new calls are refused, calls in flight get the grace period",
		"grace", grace, "tool_calls_unanswered", pending, "tool_handlers_running", running)
	if err := s.rt.Shutdown(ctx, grace); err != nil {
		return fmt.Errorf("shut down the runtime: %w", err)
	}
	// Handlers that are not runtime calls get what is left of the grace
	// period, then their context ends.
	hctx, cancel := context.WithDeadline(ctx, start.Add(grace))
	err := s.calls.waitHandlers(hctx)
	cancel()
	if err != nil && ctx.Err() == nil {
		_, running := s.calls.counts()
		s.log.Warn("tool handlers still running after the shutdown grace period are cancelled", "handlers", running)
		s.calls.cancelHandlers(errShuttingDown)
	}
	if err := s.calls.waitIdle(ctx); err != nil {
		pending, running := s.calls.counts()
		return fmt.Errorf("%d tool calls unanswered, %d tool handlers running: %w", pending, running, err)
	}
	s.log.Info("every tool call is answered", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// drainBeforeTeardown runs when a transport's context has ended, before it
// closes anything. After Shutdown (or while it runs) it waits for Shutdown
// to return, then up to teardownGrace for the answers still owed, to calls
// that arrived since (refused at once). Without Shutdown it waits up to
// unstopped for the calls in flight.
func (s *Server) drainBeforeTeardown(transport string, unstopped time.Duration) {
	bound := unstopped
	if s.stopping.Load() {
		<-s.stopped // Shutdown itself is bounded by its context and grace period
		bound = teardownGrace
	}
	if bound <= 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	if err := s.calls.waitIdle(ctx); err != nil {
		pending, running := s.calls.counts()
		s.log.Warn("closing with tool calls unanswered", "transport", transport, "waited", bound,
			"tool_calls_unanswered", pending, "tool_handlers_running", running)
	}
}

// trackHandler is the tool handler middleware that counts running handlers,
// so Shutdown can wait for them and, once the grace period is over, cancel
// those the runtime does not end itself.
func (s *Server) trackHandler(next server.ToolHandlerFunc) server.ToolHandlerFunc {
	return func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		ctx, cancel := context.WithCancelCause(ctx)
		h := s.calls.begin(cancel)
		defer func() {
			s.calls.end(h)
			cancel(nil)
		}()
		return next(ctx, req)
	}
}

// inflight follows every tools/call from the moment a transport reads it
// until its response has been handed to the transport, and every tool
// handler while it runs.
//
// A tools/call is known by a key: its transport, its session where ids are
// per session, and its JSON-RPC id in canonical form (see canonicalID).
type inflight struct {
	mu       sync.Mutex
	pending  map[string]int           // key -> tools/call requests not yet answered
	handlers map[*handlerRun]struct{} // running tool handlers
	changed  chan struct{}            // closed, and replaced, on every change
	seq      atomic.Uint64            // for keys of requests that carry their own answer
	lastSSE  atomic.Int64             // when an SSE stream last flushed an answer, in Unix nanoseconds
}

// handlerRun is one running tool handler. (Not of size zero: pointers to
// distinct zero-size values may be equal.)
type handlerRun struct{ cancel context.CancelCauseFunc }

func newInflight() *inflight {
	return &inflight{pending: map[string]int{}, handlers: map[*handlerRun]struct{}{}, changed: make(chan struct{})}
}

func (f *inflight) notifyLocked() {
	close(f.changed)
	f.changed = make(chan struct{})
}

// add records a tools/call a transport has read.
func (f *inflight) add(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending[key]++
	f.notifyLocked()
}

// answered records that the response to key was handed to the transport,
// or that the transport did not take the request after all.
func (f *inflight) answered(key string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n, ok := f.pending[key]
	if !ok {
		return
	}
	if n <= 1 {
		delete(f.pending, key)
	} else {
		f.pending[key] = n - 1
	}
	f.notifyLocked()
}

// gone forgets the requests whose keys start with prefix: the connection
// that would carry their responses is gone.
func (f *inflight) gone(prefix string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dropped := false
	for key := range f.pending {
		if strings.HasPrefix(key, prefix) {
			delete(f.pending, key)
			dropped = true
		}
	}
	if dropped {
		f.notifyLocked()
	}
}

// has reports whether any request whose key starts with prefix waits for
// its response, so transports parse what they write only when it matters.
func (f *inflight) has(prefix string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for key := range f.pending {
		if strings.HasPrefix(key, prefix) {
			return true
		}
	}
	return false
}

func (f *inflight) begin(cancel context.CancelCauseFunc) *handlerRun {
	h := &handlerRun{cancel: cancel}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.handlers[h] = struct{}{}
	f.notifyLocked()
	return h
}

func (f *inflight) end(h *handlerRun) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.handlers, h)
	f.notifyLocked()
}

func (f *inflight) cancelHandlers(cause error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for h := range f.handlers {
		h.cancel(cause)
	}
}

func (f *inflight) counts() (pending, running int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, n := range f.pending {
		pending += n
	}
	return pending, len(f.handlers)
}

// waitHandlers waits until no tool handler runs.
func (f *inflight) waitHandlers(ctx context.Context) error {
	return f.waitUntil(ctx, func() bool { return len(f.handlers) == 0 })
}

// waitIdle waits until no tool handler runs and every tools/call read is
// answered.
func (f *inflight) waitIdle(ctx context.Context) error {
	return f.waitUntil(ctx, func() bool { return len(f.handlers) == 0 && len(f.pending) == 0 })
}

func (f *inflight) waitUntil(ctx context.Context, done func() bool) error {
	for {
		f.mu.Lock()
		ok, changed := done(), f.changed
		f.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Keys of tools/call requests, per transport.
const (
	keyStdio      = "stdio/"
	keySSE        = "sse/"  // + session id + "/" + request id
	keyStreamable = "http/" // + a number: the request's HTTP response carries the answer
)

// rpcHead is what tracking needs of a JSON-RPC message.
type rpcHead struct {
	ID     json.RawMessage `json:"id"`
	Method *string         `json:"method"`
}

// canonicalID spells a JSON-RPC id as mcp-go writes it in the response:
// decoded as JSON, encoded again. It is false for an absent or null id.
func canonicalID(raw json.RawMessage) (string, bool) {
	if len(raw) == 0 {
		return "", false
	}
	var v any
	if err := json.Unmarshal(raw, &v); err != nil || v == nil {
		return "", false
	}
	b, err := json.Marshal(v)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// toolCallID is the canonical id of a tools/call request, or false for any
// other message.
func toolCallID(msg []byte) (string, bool) {
	var h rpcHead
	if json.Unmarshal(msg, &h) != nil || h.Method == nil || *h.Method != string(mcp.MethodToolsCall) {
		return "", false
	}
	return canonicalID(h.ID)
}

// responseID is the canonical id of a response (a message with an id and
// no method), or false for requests and notifications.
func responseID(msg []byte) (string, bool) {
	var h rpcHead
	if json.Unmarshal(bytes.TrimSpace(msg), &h) != nil || h.Method != nil {
		return "", false
	}
	return canonicalID(h.ID)
}

// lines splits a byte stream into lines and hands each complete one, without
// its newline, to onLine. Lines are bounded by what feeds it (maxMessageBytes
// on stdin, mcp-go's own messages on the way out).
type lines struct {
	partial []byte
	onLine  func([]byte)
}

func (l *lines) feed(data []byte) {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			l.partial = append(l.partial, data...)
			return
		}
		if len(l.partial) == 0 {
			l.onLine(data[:i])
		} else {
			l.partial = append(l.partial, data[:i]...)
			l.onLine(l.partial)
			if cap(l.partial) > 1<<20 {
				l.partial = nil // do not keep a large buffer for good
			} else {
				l.partial = l.partial[:0]
			}
		}
		data = data[i+1:]
	}
}

// stdinTap records every tools/call read from stdin before mcp-go sees it,
// so a call waiting in mcp-go's queue for a worker counts as in flight.
type stdinTap struct {
	r     io.Reader
	lines lines
}

func (s *Server) newStdinTap(r io.Reader) *stdinTap {
	t := &stdinTap{r: r}
	t.lines.onLine = func(line []byte) {
		if id, ok := toolCallID(line); ok {
			s.calls.add(keyStdio + id)
		}
	}
	return t
}

// Read passes r on. A last line without a newline is not taken: mcp-go
// drops it at the end of input too.
func (t *stdinTap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.lines.feed(p[:n])
	return n, err
}

// stdoutTap marks a tools/call answered once its response was written to
// stdout: mcp-go writes each message with one Write, a newline at its end.
type stdoutTap struct {
	w     io.Writer
	calls *inflight
	mu    sync.Mutex
	lines lines
}

func (s *Server) newStdoutTap(w io.Writer) *stdoutTap {
	t := &stdoutTap{w: w, calls: s.calls}
	t.lines.onLine = func(line []byte) {
		if !t.calls.has(keyStdio) {
			return
		}
		if id, ok := responseID(line); ok {
			t.calls.answered(keyStdio + id)
		}
	}
	return t
}

// Write writes p, then looks at it: written, or failed to, the response has
// been handed to the transport, and nothing more will come of it.
func (t *stdoutTap) Write(p []byte) (int, error) {
	n, err := t.w.Write(p)
	t.mu.Lock()
	t.lines.feed(p)
	t.mu.Unlock()
	return n, err
}

// readBody reads a request's body for tracking and gives the handler after
// it the same bytes, and the same read error, as r.Body would have.
// postedToolCall is the canonical id of the tools/call a POST carries, or
// false for any other request. The body stays readable for the handler.
func postedToolCall(r *http.Request) (string, bool) {
	if r.Method != http.MethodPost {
		return "", false
	}
	body, err := readBody(r)
	if err != nil {
		return "", false
	}
	return toolCallID(body)
}

func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	var rest io.Reader = bytes.NewReader(body)
	if err != nil {
		rest = io.MultiReader(rest, errReader{err})
	}
	r.Body = io.NopCloser(rest)
	return body, err
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }

// trackStreamable wraps the streamable HTTP endpoint: a POST carrying a
// tools/call is in flight until mcp-go's handler, which writes the answer
// into that POST's response, returns.
func (s *Server) trackStreamable(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := postedToolCall(r); ok {
			key := keyStreamable + strconv.FormatUint(s.calls.seq.Add(1), 10)
			s.calls.add(key)
			defer s.calls.answered(key)
		}
		next.ServeHTTP(w, r)
	})
}

// trackSSEMessages wraps the SSE message endpoint: mcp-go accepts a message
// with 202 and answers it later on the session's stream, so a tools/call
// is in flight from here until that stream writes its answer.
func (s *Server) trackSSEMessages(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := ""
		if id, ok := postedToolCall(r); ok && r.URL.Query().Get("sessionId") != "" {
			key = keySSE + r.URL.Query().Get("sessionId") + "/" + id
			s.calls.add(key)
		}
		sw := &statusWriter{ResponseWriter: w}
		next.ServeHTTP(sw, r)
		if key != "" && sw.status != http.StatusAccepted {
			s.calls.answered(key) // not taken: no stream will answer it
		}
	})
}

// statusWriter remembers the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// sseStreamKey carries an sseStream in the context of an SSE GET request,
// for the session id generator to fill in.
type sseStreamKey struct{}

// sseStream is one SSE connection: its session and what it wrote.
type sseStream struct {
	mu      sync.Mutex
	session string
}

func (st *sseStream) setSession(id string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.session = id
}

func (st *sseStream) sessionID() string {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.session
}

// newSSESessionID is the SSE server's session id generator: a random id,
// told to the stream that asked for it.
func newSSESessionID(ctx context.Context, _ *http.Request) (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	id := hex.EncodeToString(b)
	if st, ok := ctx.Value(sseStreamKey{}).(*sseStream); ok {
		st.setSession(id)
	}
	return id, nil
}

// trackSSEStreams wraps the SSE endpoint: each stream tells which answers
// it wrote, and when it ends, its session's calls can no longer be
// answered.
func (s *Server) trackSSEStreams(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := &sseStream{}
		tw := &sseStreamWriter{ResponseWriter: w, stream: st, calls: s.calls}
		tw.lines.onLine = tw.line
		defer func() {
			if id := st.sessionID(); id != "" {
				s.calls.gone(keySSE + id + "/")
			}
		}()
		next.ServeHTTP(tw, r.WithContext(context.WithValue(r.Context(), sseStreamKey{}, st)))
	})
}

// sseStreamWriter is an SSE stream's response writer. mcp-go writes each
// event ("event: message\ndata: {...}\n\n") and flushes it; an answer is
// handed to the transport once flushed.
type sseStreamWriter struct {
	http.ResponseWriter
	stream  *sseStream
	calls   *inflight
	mu      sync.Mutex
	lines   lines
	written []string // keys of answers written, not yet flushed
}

func (w *sseStreamWriter) line(line []byte) {
	data, ok := bytes.CutPrefix(line, []byte("data:"))
	if !ok {
		return
	}
	session := w.stream.sessionID()
	if session == "" || !w.calls.has(keySSE+session+"/") {
		return
	}
	if id, ok := responseID(data); ok {
		w.written = append(w.written, keySSE+session+"/"+id)
	}
}

func (w *sseStreamWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.mu.Lock()
	w.lines.feed(p)
	w.mu.Unlock()
	return n, err
}

func (w *sseStreamWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	w.mu.Lock()
	written := w.written
	w.written = nil
	w.mu.Unlock()
	if len(written) > 0 {
		w.calls.lastSSE.Store(time.Now().UnixNano())
	}
	for _, key := range written {
		w.calls.answered(key)
	}
}

// sseLinger is how long SSE streams stay open after their last answer
// went out. An SSE client may drop what it has read but not yet handed
// on when its stream ends (the Go SDK's does), so streams do not end
// right on the heels of an answer.
const sseLinger = 300 * time.Millisecond

// lingerSSE waits until the last SSE answer is sseLinger old.
func (f *inflight) lingerSSE() {
	last := f.lastSSE.Load()
	if last == 0 {
		return
	}
	if d := time.Until(time.Unix(0, last).Add(sseLinger)); d > 0 {
		time.Sleep(min(d, sseLinger))
	}
}

func (w *sseStreamWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
