package gateway

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// recorder is the plugin-facing ResponseWriter: it notes the status and
// counts the bytes, of an upgraded connection too.
type recorder struct {
	http.ResponseWriter
	status int
	out    int64
	conn   *countingConn // set once hijacked
	// done closes the hijacked connection when it ends: httputil's proxy
	// closes only the cluster's side on cancellation and then waits for
	// the plugin's side too, which a plugin that keeps it open would hold.
	done    context.Context
	body    *countingReader // the request body, if any
	failure string          // why the gateway answered instead of the cluster
}

func (r *recorder) WriteHeader(code int) {
	// Informational responses (100 Continue, 103 Early Hints) come before
	// the real one.
	if r.status == 0 && (code < 100 || code > 199 || code == http.StatusSwitchingProtocols) {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.out += int64(n)
	return n, err
}

// Flush is for code that asserts http.Flusher; ResponseController finds
// the underlying writer's through Unwrap.
func (r *recorder) Flush() {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	http.NewResponseController(r.ResponseWriter).Flush()
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// Hijack hands over the connection, counted, for a protocol switch.
func (r *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	c, brw, err := http.NewResponseController(r.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	r.status = http.StatusSwitchingProtocols
	r.conn = &countingConn{Conn: c}
	if r.done != nil {
		context.AfterFunc(r.done, func() { c.Close() })
	}
	var rd io.Reader = r.conn
	if n := brw.Reader.Buffered(); n > 0 {
		buffered, _ := brw.Reader.Peek(n)
		rd = io.MultiReader(bytes.NewReader(bytes.Clone(buffered)), r.conn)
	}
	return r.conn, bufio.NewReadWriter(bufio.NewReader(rd), bufio.NewWriter(r.conn)), nil
}

func (r *recorder) wrote() bool { return r.status != 0 }

func (r *recorder) statusCode() int {
	if r.status == 0 {
		return http.StatusOK // what net/http sends for a handler that wrote nothing
	}
	return r.status
}

func (r *recorder) bytesOut() int64 {
	n := r.out
	if r.conn != nil {
		n += r.conn.out.Load()
	}
	return n
}

func (r *recorder) bytesIn() int64 {
	if r.conn != nil {
		return r.conn.in.Load()
	}
	return 0
}

// canHijack reports whether w, or a writer it wraps, can hand over its
// connection.
func canHijack(w http.ResponseWriter) bool {
	for {
		switch t := w.(type) {
		case http.Hijacker:
			return true
		case interface{ Unwrap() http.ResponseWriter }:
			w = t.Unwrap()
		default:
			return false
		}
	}
}

// countingConn counts the bytes of an upgraded connection.
type countingConn struct {
	net.Conn
	in, out atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.in.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.out.Add(int64(n))
	return n, err
}

// CloseWrite lets the proxy pass on the cluster's half-close.
func (c *countingConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.ErrUnsupported
}

// countingReader counts a request body and notes when it was over the limit.
type countingReader struct {
	r        io.ReadCloser
	n        atomic.Int64
	tooLarge atomic.Bool
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		c.tooLarge.Store(true)
	}
	return n, err
}

func (c *countingReader) Close() error { return c.r.Close() }
