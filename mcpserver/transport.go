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
)

// maxMessageBytes bounds one JSON-RPC message on every transport. The
// largest legitimate message is a call with a few arguments of at most
// maxValueBytes each; this leaves room for a call whose too-long argument
// deserves a clear tool error rather than a transport one.
const maxMessageBytes = 8 << 20

// shutdownGrace is how long in-flight HTTP requests get to finish once the
// server is told to stop; then their connections, and with them their
// plugin runs, are ended.
const shutdownGrace = 10 * time.Second

// ServeStdio serves MCP over in and out (newline-delimited JSON-RPC) until
// ctx ends or in reaches its end. Calls still running then are cancelled.
//
// mcp-go keeps stdio's session in a package variable: serve one stdio
// connection per process at a time.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	stdio := server.NewStdioServer(s.mcp)
	stdio.SetErrorLogger(s.log.Named("stdio").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Warn}))
	s.log.Debug("serving MCP over stdio", "tools", len(s.Tools()))
	err := stdio.Listen(ctx, newLineLimiter(in, maxMessageBytes), out)
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
// on port 0, to learn the port from ln.Addr()). It closes ln.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	h := s.newHTTPHandler()
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          s.log.Named("http").StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	s.log.Info("serving MCP over HTTP", "address", ln.Addr().String(),
		"streamable_http", PathStreamable, "sse", PathSSE, "health", PathHealth, "tools", len(s.Tools()))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve HTTP on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.log.Info("shutting down HTTP", "grace", shutdownGrace)
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	// Long-lived streams (SSE, streamable GET) never finish by themselves:
	// end them first so Shutdown only waits for requests in flight.
	h.sse.CloseSessions()
	_ = h.streamable.Shutdown(shutdownCtx) // no http.Server of its own: this closes its sessions
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		s.log.Warn("requests still running after the grace period were cut off", "error", err)
		_ = srv.Close()
	}
	<-errc // http.ErrServerClosed
	return nil
}

// httpHandler routes the HTTP transports and the health endpoints.
type httpHandler struct {
	mux        *http.ServeMux
	streamable *server.StreamableHTTPServer
	sse        *server.SSEServer
}

func (h *httpHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Body != nil {
		r.Body = http.MaxBytesReader(w, r.Body, maxMessageBytes)
	}
	h.mux.ServeHTTP(w, r)
}

// Handler returns the HTTP handler ServeHTTP serves, to mount elsewhere.
func (s *Server) Handler() http.Handler { return s.newHTTPHandler() }

func (s *Server) newHTTPHandler() *httpHandler {
	h := &httpHandler{
		mux:        http.NewServeMux(),
		streamable: server.NewStreamableHTTPServer(s.mcp, server.WithEndpointPath(PathStreamable)),
		sse: server.NewSSEServer(s.mcp,
			server.WithSSEEndpoint(PathSSE),
			server.WithMessageEndpoint(PathMessage),
			server.WithKeepAlive(true),
		),
	}
	h.mux.Handle(PathStreamable, h.streamable)
	h.mux.Handle(PathSSE, h.sse.SSEHandler())
	h.mux.Handle(PathMessage, h.sse.MessageHandler())
	h.mux.HandleFunc(PathHealth, s.serveHealth)
	h.mux.HandleFunc(PathHealthz, s.serveHealth)
	h.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusNotFound, map[string]any{
			"error": fmt.Sprintf("no such endpoint %q: MCP is served at %s (streamable HTTP) and %s (SSE); health at %s", r.URL.Path, PathStreamable, PathSSE, PathHealth),
		})
	})
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
