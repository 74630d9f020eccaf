package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// benchAllowed lets every bench plugin run, so each gets a tool.
const benchAllowed = `allowed_plugins = ["bench*"]`

// BenchmarkToolsList1000 lists the tools of the server binary serving
// 1,000 plugin tools (BenchmarkDiscovery1000's plugins, all allowed), with
// the MCP SDK's client as the end-to-end tests use it, over stdio and over
// streamable HTTP. Each iteration lists five times on each transport.
//
// The client's transport reads the server's answers ahead of the SDK, as
// fast as they come: stdio-p50-ms and the others are the time from the
// request until the answer's last byte arrived, the server's work and the
// wire's. The SDK's decoding of a thousand schemas (a client's cost, which
// no server can change) comes on top: stdio-sdk-p50-ms and http-sdk-p50-ms
// are the whole ListTools. bytes-per-tool is the answer's size over stdio
// per tool. The goal is at most 15 ms and 1.5 KB a tool.
func BenchmarkToolsList1000(b *testing.B) {
	s := newBenchSetup(b, benchAllowed)
	stdio := s.serveStdio(b)
	defer stdio.close(b)
	web := s.serveHTTP(b)
	defer web.close(b)

	ctx := context.Background()
	type listing struct {
		arrived, sdk time.Duration // until the last byte arrived; until ListTools returned
		tools        int
		bytes        int64
	}
	list := func(srv *benchServer) listing {
		before := srv.read.total()
		start := time.Now()
		res, err := srv.ListTools(ctx, nil)
		sdk := time.Since(start)
		if err != nil {
			b.Fatalf("tools/list: %v", err)
		}
		return listing{srv.read.last().Sub(start), sdk, len(res.Tools), srv.read.total() - before}
	}
	var first listing
	for range 2 { // warm both servers and clients
		first = list(stdio)
		list(web)
	}
	if first.tools != 1004 {
		b.Fatalf("tools/list answers %d tools, want 1,000 plugin tools and 4 management tools", first.tools)
	}

	var stdioTimes, httpTimes, stdioSDK, httpSDK []time.Duration
	b.ResetTimer()
	for range b.N {
		for range 5 {
			l := list(stdio)
			stdioTimes, stdioSDK = append(stdioTimes, l.arrived), append(stdioSDK, l.sdk)
			l = list(web)
			httpTimes, httpSDK = append(httpTimes, l.arrived), append(httpSDK, l.sdk)
		}
	}
	b.StopTimer()
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	perTool := float64(first.bytes) / float64(first.tools)
	b.ReportMetric(ms(median(stdioTimes)), "stdio-p50-ms")
	b.ReportMetric(ms(percentile(stdioTimes, 95)), "stdio-p95-ms")
	b.ReportMetric(ms(median(httpTimes)), "http-p50-ms")
	b.ReportMetric(ms(percentile(httpTimes, 95)), "http-p95-ms")
	b.ReportMetric(ms(median(stdioSDK)), "stdio-sdk-p50-ms")
	b.ReportMetric(ms(median(httpSDK)), "http-sdk-p50-ms")
	b.ReportMetric(perTool, "bytes-per-tool")
	b.ReportMetric(float64(first.tools), "tools")
	fmt.Printf("tools/list of %d tools (%d bytes, %.0f a tool; goal <= 15 ms and 1.5 KB a tool), %d lists per transport:\n"+
		"  stdio            (MCP %s)  answered: p50 %7.2f ms  p95 %7.2f ms; with the SDK's decoding: p50 %7.2f ms\n"+
		"  streamable HTTP  (MCP %s)  answered: p50 %7.2f ms  p95 %7.2f ms; with the SDK's decoding: p50 %7.2f ms\n",
		first.tools, first.bytes, perTool, len(stdioTimes),
		stdio.InitializeResult().ProtocolVersion, ms(median(stdioTimes)), ms(percentile(stdioTimes, 95)), ms(median(stdioSDK)),
		web.InitializeResult().ProtocolVersion, ms(median(httpTimes)), ms(percentile(httpTimes, 95)), ms(median(httpSDK)))
}

// benchServer is a running server binary and a client session with it.
type benchServer struct {
	*mcp.ClientSession
	cmd *exec.Cmd
	// read is what the server sent the client.
	read *arrivals
}

// serveStdio starts the server on stdio and connects to it.
func (s *benchSetup) serveStdio(b *testing.B) *benchServer {
	b.Helper()
	cmd := exec.Command(binary, "--config", s.config, "--log-level", "error")
	cmd.Env = s.env
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	srv := &benchServer{cmd: cmd, read: &arrivals{}}
	transport := &mcp.IOTransport{Reader: newReadAhead(stdout, srv.read), Writer: stdin}
	// The first start runs 1,000 helps before it answers.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	srv.ClientSession, err = mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(ctx, transport, nil)
	if err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		b.Fatalf("connect over stdio: %v", err)
	}
	return srv
}

// serveHTTP starts the server on streamable HTTP and connects to it.
func (s *benchSetup) serveHTTP(b *testing.B) *benchServer {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	cmd := exec.Command(binary, "--config", s.config, "--log-level", "error", "--port", strconv.Itoa(port))
	cmd.Env = s.env
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	srv := &benchServer{cmd: cmd, read: &arrivals{}}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(20 * time.Millisecond) {
		resp, err := http.Get(base + "/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			srv.close(b)
			b.Fatalf("no /health on port %d after 2 minutes: %v", port, err)
		}
	}
	client := &http.Client{Transport: readAheadTransport{http.DefaultTransport, srv.read}}
	transport := &mcp.StreamableClientTransport{Endpoint: base + "/mcp", HTTPClient: client}
	srv.ClientSession, err = mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil).Connect(context.Background(), transport, nil)
	if err != nil {
		srv.close(b)
		b.Fatalf("connect over streamable HTTP: %v", err)
	}
	return srv
}

// close ends the session and the server: stdio servers end with their
// input, HTTP servers on SIGTERM.
func (srv *benchServer) close(b *testing.B) {
	b.Helper()
	if srv.ClientSession != nil {
		srv.ClientSession.Close()
	}
	srv.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- srv.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		srv.cmd.Process.Kill()
		<-done
		b.Errorf("server %d did not end within 30 s of SIGTERM", srv.cmd.Process.Pid)
	}
}

// arrivals follows what a server sent a client: how many bytes, and when
// the latest arrived.
type arrivals struct {
	mu     sync.Mutex
	bytes  int64
	latest time.Time
}

func (a *arrivals) add(n int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.bytes += int64(n)
	a.latest = time.Now()
}

func (a *arrivals) total() int64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.bytes
}

func (a *arrivals) last() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.latest
}

// readAhead reads r as fast as the server writes, into memory, noting each
// arrival; the client reads from memory at its own pace. So the time an
// answer arrived is not the client's decoding time.
type readAhead struct {
	r    io.ReadCloser
	mu   sync.Mutex
	more *sync.Cond
	buf  []byte
	err  error
}

func newReadAhead(r io.ReadCloser, seen *arrivals) *readAhead {
	ra := &readAhead{r: r}
	ra.more = sync.NewCond(&ra.mu)
	go func() {
		chunk := make([]byte, 256<<10)
		for {
			n, err := r.Read(chunk)
			if n > 0 {
				seen.add(n)
			}
			ra.mu.Lock()
			ra.buf = append(ra.buf, chunk[:n]...)
			ra.err = err
			ra.more.Broadcast()
			ra.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return ra
}

func (ra *readAhead) Read(p []byte) (int, error) {
	ra.mu.Lock()
	defer ra.mu.Unlock()
	for len(ra.buf) == 0 && ra.err == nil {
		ra.more.Wait()
	}
	if len(ra.buf) == 0 {
		return 0, ra.err
	}
	n := copy(p, ra.buf)
	ra.buf = ra.buf[n:]
	return n, nil
}

func (ra *readAhead) Close() error { return ra.r.Close() }

// readAheadTransport reads the answers to POSTs ahead of the client (not
// the standalone stream of a GET, which carries no answer).
type readAheadTransport struct {
	next http.RoundTripper
	seen *arrivals
}

func (t readAheadTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err == nil && req.Method == http.MethodPost {
		resp.Body = newReadAhead(resp.Body, t.seen)
	}
	return resp, err
}
