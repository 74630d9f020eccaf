package mcpserver

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mark3labs/mcp-go/server"
)

// Paths the HTTP transports serve.
const (
	PathStreamable = "/mcp"
	PathSSE        = "/sse"
	PathMessage    = "/message" // SSE clients post here; /sse's endpoint event says so
	PathHealth     = "/health"
	PathHealthz    = "/healthz"
	// PathMetrics serves Prometheus metrics, authenticated as MCP is.
	PathMetrics = "/metrics"
)

// maxMessageBytes bounds one JSON-RPC message on every transport. The
// largest legitimate message is a call with a few arguments of at most
// maxValueBytes each; this leaves room for a call whose too-long argument
// deserves a clear tool error rather than a transport one.
const maxMessageBytes = 8 << 20

// Bounds of the HTTP server. No WriteTimeout and no http.Server
// ReadTimeout: either would end SSE and streamable GET streams, and
// answers to long calls (net/http cancels a request whose connection hits
// its read deadline). A request body instead gets bodyReadTimeout to
// arrive, set on its own connection and lifted once it is read.
const (
	readHeaderTimeout = 10 * time.Second
	bodyReadTimeout   = 30 * time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10 // room for a large JWT
)

// shutdownGrace is how long tool calls in flight get when a transport's
// context ends without Shutdown: on the HTTP transports they may finish
// within it (on stdio they are cancelled at once, as mcp-go does). After
// Shutdown, every call is answered already and teardownGrace bounds the
// close instead.
const shutdownGrace = 10 * time.Second

// stdioWorkers is how many tools/call requests mcp-go's stdio server
// handles at once (its default is 5). The runtime bounds plugin runs on
// its own; more workers keep a call that should be refused at once, or a
// plugins_list, from queueing behind calls that run.
const stdioWorkers = 64

// ServeStdio serves MCP over in and out (newline-delimited JSON-RPC) until
// ctx ends or in reaches its end.
//
// mcp-go derives every request's context from the context Listen gets and
// cancels it when Listen ends, so ServeStdio gives Listen a context of its
// own. When ctx ends after Shutdown (or while Shutdown runs), it waits for
// Shutdown to return and for the answers to calls that arrived since, then
// ends Listen: no response already produced is cut off. When ctx ends
// without Shutdown, calls still running are cancelled at once, and their
// results written, before ServeStdio returns. At the end of in, mcp-go
// cancels the calls still running: nobody is left to read their answers.
//
// mcp-go keeps stdio's session in a package variable: serve one stdio
// connection per process at a time.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	stdio := server.NewStdioServer(s.mcp)
	stdio.SetErrorLogger(s.log.Named("stdio").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}))
	server.WithWorkerPoolSize(stdioWorkers)(stdio)
	s.log.Debug("serving MCP over stdio", "tools", len(s.Tools()))
	listenCtx, endListen := context.WithCancel(context.WithoutCancel(ctx))
	defer endListen()
	stop := context.AfterFunc(ctx, func() {
		s.drainBeforeTeardown("stdio", 0)
		endListen()
	})
	defer stop()
	err := stdio.Listen(listenCtx, s.newStdinTap(newLineLimiter(in, maxMessageBytes)), s.newStdoutTap(out))
	s.calls.gone(keyStdio) // nothing more is written
	if ctx.Err() != nil && (err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)) {
		return nil
	}
	return err
}

// ServeHTTP listens on addr and serves streamable HTTP at /mcp, SSE at /sse
// (with its message endpoint at /message), and /health and /healthz, until
// ctx ends; then it shuts down gracefully.
func (s *Server) ServeHTTP(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is ServeHTTP on a listener the caller opened (for example
// on port 0, to learn the port from ln.Addr()). It closes ln. It refuses
// (CheckExposure) a listener that is not on loopback when no
// authentication is configured and Options.HTTP does not say
// InsecureListen.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	host := listenerHost(ln)
	if err := CheckExposure(host, s.guard.opts); err != nil {
		ln.Close()
		return fmt.Errorf("serve HTTP on %s: %w", ln.Addr(), err)
	}
	h := s.newHTTPHandler()
	h.exposed = host == "" || !IsLoopback(host)
	conns := &newConns{conns: map[net.Conn]bool{}}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          s.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
		ConnState:         conns.track,
	}
	if w := h.insecureWarning(); w != "" {
		s.log.Warn(w, "address", ln.Addr().String())
	}
	s.log.Info("serving MCP over HTTP", "address", ln.Addr().String(), "auth", s.guard.opts.authMode(),
		"streamable_http", PathStreamable, "sse", PathSSE, "health", PathHealth, "tools", len(s.Tools()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve HTTP on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	// Answers still owed first: SSE answers travel on streams that closing
	// the sessions ends.
	s.drainBeforeTeardown("http", shutdownGrace)
	s.calls.lingerSSE()
	s.log.Info("closing HTTP", "bound", teardownGrace)
	teardownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), teardownGrace)
	defer cancel()
	// Long-lived streams (SSE, streamable GET) never finish by themselves:
	// end them, again while Shutdown waits, so it only waits for requests
	// in flight.
	_ = h.streamable.Shutdown(teardownCtx) // no http.Server of its own: this closes its sessions
	closeStreams := func() {
		h.sse.CloseSessions()
		h.streamable.CloseSessions(teardownCtx)
		// net/http's Shutdown waits up to 5 s for a connection that has
		// not sent its first request (an HTTP client may dial one ahead):
		// after the drain nothing it sends would be answered anyway.
		conns.closeNew()
	}
	closeStreams()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(teardownCtx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-shut:
			if err != nil {
				s.log.Warn("connections still open after the teardown bound were cut off", "error", err)
				_ = srv.Close()
			}
			<-errc // http.ErrServerClosed
			return nil
		case <-tick.C:
			closeStreams()
		}
	}
}

// newConns follows the connections that have not sent a request yet.
type newConns struct {
	mu    sync.Mutex
	conns map[net.Conn]bool
}

func (c *newConns) track(conn net.Conn, state http.ConnState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if state == http.StateNew {
		c.conns[conn] = true
	} else {
		delete(c.conns, conn)
	}
}

func (c *newConns) closeNew() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for conn := range c.conns {
		conn.Close()
		delete(c.conns, conn)
	}
}

// httpHandler routes the HTTP transports and the health endpoints.
type httpHandler struct {
	s          *Server
	mux        *http.ServeMux
	guarded    http.Handler // mux behind the Origin check and authentication
	streamable *server.StreamableHTTPServer
	sse        *server.SSEServer
	exposed    bool // listening on more than loopback
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = newDeadlineBody(w, http.MaxBytesReader(w, r.Body, maxMessageBytes), h.s.bodyReadTimeout)
	}
	h.guarded.ServeHTTP(w, r)
}

// deadlineBody gives a request body a read deadline on its connection
// and lifts it when the body is read, so that the answer (a stream, perhaps)
// may take as long as it needs.
type deadlineBody struct {
	io.ReadCloser
	rc   *http.ResponseController
	done bool
}

func newDeadlineBody(w http.ResponseWriter, body io.ReadCloser, d time.Duration) io.ReadCloser {
	rc := http.NewResponseController(w)
	if rc.SetReadDeadline(time.Now().Add(d)) != nil {
		return body // not a connection of net/http's: nothing to bound
	}
	return &deadlineBody{ReadCloser: body, rc: rc}
}

func (b *deadlineBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	// Only a whole body lifts the deadline: after a timeout, net/http
	// still reads what is left of the body, and must not wait for it.
	if err == io.EOF && !b.done {
		b.done = true
		_ = b.rc.SetReadDeadline(time.Time{})
	}
	return n, err
}

// Handler returns the HTTP handler ServeHTTP serves, to mount elsewhere,
// with its Origin check and authentication. Whoever serves it decides
// where it listens: CheckExposure says whether that needs authentication.
func (s *Server) Handler() http.Handler { return s.newHTTPHandler() }

func (s *Server) newHTTPHandler() *httpHandler {
	h := &httpHandler{
		s:          s,
		mux:        http.NewServeMux(),
		streamable: server.NewStreamableHTTPServer(s.mcp, server.WithEndpointPath(PathStreamable)),
		sse: server.NewSSEServer(s.mcp,
			server.WithSSEEndpoint(PathSSE),
			server.WithMessageEndpoint(PathMessage),
			server.WithKeepAlive(true),
			server.WithSessionIDGenerator(newSSESessionID),
		),
	}
	// The wrappers follow each tools/call until its answer is out, for
	// Shutdown.
	h.mux.Handle(PathStreamable, s.trackStreamable(h.streamable))
	h.mux.Handle(PathSSE, s.trackSSEStreams(h.sse.SSEHandler()))
	h.mux.Handle(PathMessage, s.trackSSEMessages(h.sse.MessageHandler()))
	h.mux.HandleFunc(PathHealth, h.serveHealth)
	h.mux.HandleFunc(PathHealthz, h.serveHealth)
	if s.metrics != nil {
		h.mux.Handle(PathMetrics, s.metrics)
	}
	if v := s.guard.opts.OAuth; v != nil {
		// The subtree too: RFC 9728 appends the resource's path.
		h.mux.HandleFunc(PathProtectedResource, v.serveMetadata)
		h.mux.HandleFunc(PathProtectedResource+"/", v.serveMetadata)
	}
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{
			"error": fmt.Sprintf("no such endpoint %q: MCP is served at %s (streamable HTTP) and %s (SSE); health at %s", r.URL.Path, PathStreamable, PathSSE, PathHealth),
		})
	})
	h.guarded = s.guard.wrap(h.mux)
	return h
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// lineLimiter passes a newline-delimited stream through, but cuts any line
// longer than limit: it ends the line early (so the reader sees invalid
// JSON and answers with a parse error) and drops the rest of it. Without
// it one endless line would grow the stdio reader's buffer without bound.
type lineLimiter struct {
	r       *bufio.Reader
	limit   int
	n       int  // bytes of the current line passed on
	discard bool // dropping the rest of an over-long line
}

func newLineLimiter(r io.Reader, limit int) io.Reader {
	return &lineLimiter{r: bufio.NewReaderSize(r, 64<<10), limit: limit}
}

func (l *lineLimiter) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for l.discard {
		b, err := l.r.ReadByte()
		if err != nil {
			return 0, err
		}
		if b == '\n' {
			l.discard, l.n = false, 0
		}
	}
	written := 0
	for written < len(p) {
		if written > 0 && l.r.Buffered() == 0 {
			break // do not block for more once something can be returned
		}
		b, err := l.r.ReadByte()
		if err != nil {
			if written > 0 {
				return written, nil
			}
			return 0, err
		}
		if b == '\n' {
			p[written] = b
			written++
			l.n = 0
			continue
		}
		if l.n >= l.limit {
			p[written] = '\n'
			written++
			l.discard, l.n = true, 0
			return written, nil
		}
		p[written] = b
		written++
		l.n++
	}
	return written, nil
}
