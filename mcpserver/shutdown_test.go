package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// napPlugin sleeps $1 seconds; "new*" is allowed by the fixture's policy.
const napPlugin = `#!/bin/sh
if [ "$1" = "--help" ]; then printf 'Nap a while.\n\nUsage:\n  kubectl newnap SECONDS\n'; exit 0; fi
exec /bin/sleep "$1"
`

// served is a Server on one transport, with a client connected to it.
type served struct {
	client *client.Client
	// stop ends the transport's context and waits for its Serve* to return.
	stop func() error
}

func startInProcess(t *testing.T, s *Server) served {
	return served{client: connect(t, s, mcp.LATEST_LEGACY_PROTOCOL_VERSION).Client, stop: func() error { return nil }}
}

func startStdio(t *testing.T, s *Server) served {
	t.Helper()
	clientRead, serverWrite := io.Pipe()
	serverRead, clientWrite := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.ServeStdio(ctx, serverRead, serverWrite)
		serverWrite.Close() // as the process's exit would
	}()
	t.Cleanup(func() { cancel(); clientWrite.Close() })
	c := client.NewClient(transport.NewIO(clientRead, clientWrite, io.NopCloser(strings.NewReader(""))))
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	initialize(t, c)
	return served{client: c, stop: stopper(t, cancel, done)}
}

func startHTTP(t *testing.T, s *Server, sse bool) served {
	t.Helper()
	base, stop := serveHTTP(t, s)
	var c *client.Client
	var err error
	if sse {
		c, err = client.NewSSEMCPClient(base + PathSSE)
	} else {
		c, err = client.NewStreamableHttpClient(base + PathStreamable)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	initialize(t, c)
	return served{client: c, stop: stop}
}

func initialize(t *testing.T, c *client.Client) {
	t.Helper()
	if _, err := c.Initialize(context.Background(), mcp.InitializeRequest{Params: mcp.InitializeParams{
		ProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION,
		ClientInfo:      mcp.Implementation{Name: "test", Version: "1"},
	}}); err != nil {
		t.Fatal(err)
	}
}

// stopper ends a transport's context and says how it returned. After
// Shutdown, a transport closes within teardownGrace.
func stopper(t *testing.T, cancel context.CancelFunc, done chan error) func() error {
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			t.Error("the transport did not return after its context ended")
			return nil
		}
	}
}

type outcome struct {
	res *mcp.CallToolResult
	err error
	at  time.Time
}

// goCall runs a call in the background.
func goCall(c *client.Client, tool string, args map[string]any) <-chan outcome {
	ch := make(chan outcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		res, err := c.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, Arguments: args}})
		ch <- outcome{res, err, time.Now()}
	}()
	return ch
}

// napping waits until a sleep of exactly this many seconds runs.
func napping(t *testing.T, marker string) {
	t.Helper()
	waitFor(t, "the plugin sleeping "+marker, func() bool {
		return exec.Command("pgrep", "-f", "sleep "+marker).Run() == nil
	})
}

// Shutdown on every transport: the call that finishes within the grace
// period and the two that outlast it all get their results, each saying
// the server is shutting down; a call sent meanwhile is refused at once;
// and the transport, stopped right after Shutdown returns (or even while
// it runs), cuts nothing off.
func TestShutdown(t *testing.T) {
	for _, tt := range []struct {
		name      string
		start     func(*testing.T, *Server) served
		stopEarly bool // end the transport's context while Shutdown still waits
	}{
		{"in-process", startInProcess, false},
		{"stdio", startStdio, false},
		{"stdio, stopped while draining", startStdio, true},
		{"streamable HTTP", func(t *testing.T, s *Server) served { return startHTTP(t, s, false) }, false},
		{"SSE", func(t *testing.T, s *Server) served { return startHTTP(t, s, true) }, false},
		{"SSE, stopped while draining", func(t *testing.T, s *Server) served { return startHTTP(t, s, true) }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			f.writePlugin(t, "newnap", napPlugin)
			if _, err := f.rt.Discover(context.Background()); err != nil {
				t.Fatal(err)
			}
			tr := tt.start(t, f.srv)
			testShutdown(t, f, tr, tt.stopEarly)
		})
	}
}

func testShutdown(t *testing.T, f *fixture, tr served, stopEarly bool) {
	const grace = 2 * time.Second
	v := newResultValidator(t)
	// Unique durations tell the naps from every other process.
	n := time.Now().UnixNano() % 1000000
	short, long1, long2 := fmt.Sprintf("1.5%06d", n), fmt.Sprintf("60.1%06d", n), fmt.Sprintf("60.2%06d", n)
	calls := map[string]<-chan outcome{}
	for _, d := range []string{short, long1, long2} {
		calls[d] = goCall(tr.client, "plugins_execute", map[string]any{"plugin": "newnap", "args": []any{d}})
	}
	for _, d := range []string{short, long1, long2} {
		napping(t, d)
	}

	start := time.Now()
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		shut <- f.srv.Shutdown(ctx, grace)
	}()
	waitFor(t, "Shutdown to begin", f.srv.stopping.Load)
	var stopped chan error
	if stopEarly {
		stopped = make(chan error, 1)
		go func() { stopped <- tr.stop() }()
	}

	// A call sent now is refused at once, in words; so is discovery. (One
	// sent as Shutdown begins may still be taken, and then waits for a
	// call slot.)
	var refused *mcp.CallToolResult
	var took time.Duration
	waitFor(t, "a call refused as the server shuts down", func() bool {
		sent := time.Now()
		res, err := tr.client.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{
			Name: "plugins_execute", Arguments: map[string]any{"plugin": "echo", "args": []any{"late"}}}})
		if err != nil {
			t.Fatalf("a call during the shutdown: %v", err)
		}
		refused, took = res, time.Since(sent)
		return strings.Contains(text(res), "refused before it ran")
	})
	r := v.check(t, "refused while shutting down", refused)
	if !refused.IsError || r.Status != statusRefused || r.CallID != "" || !strings.Contains(r.Message, "shutting down") {
		t.Errorf("a call during the shutdown: isError %v, %+v", refused.IsError, r)
	}
	if took > time.Second {
		t.Errorf("the refusal took %s", took)
	}
	if res := call(t, &testClient{Client: tr.client}, "plugins_discover", nil); !res.IsError || !strings.Contains(text(res), "shutting down") {
		t.Errorf("plugins_discover during the shutdown: %s", text(res))
	}

	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took < grace || took > grace+5*time.Second {
		t.Errorf("Shutdown took %s with a grace period of %s", took, grace)
	}
	if pending, running := f.srv.calls.counts(); pending != 0 || running != 0 {
		t.Errorf("after Shutdown: %d calls unanswered, %d handlers running", pending, running)
	}
	if stopped == nil {
		stopStart := time.Now()
		stopped = make(chan error, 1)
		stopped <- tr.stop()
		if d := time.Since(stopStart); d > time.Second {
			t.Errorf("the transport took %s to stop after Shutdown", d)
		}
	}
	if err := <-stopped; err != nil {
		t.Errorf("the transport returned %v", err)
	}

	// Every answer was out before the transport stopped.
	ids := map[string]bool{}
	for _, d := range []string{short, long1, long2} {
		var o outcome
		select {
		case o = <-calls[d]:
		case <-time.After(5 * time.Second):
			t.Fatalf("the call sleeping %s got no result", d)
		}
		if o.err != nil {
			t.Fatalf("the call sleeping %s: %v", d, o.err)
		}
		r := v.check(t, "sleep "+d, o.res)
		ids[r.CallID] = true
		want := runtime.StatusCancelled
		if d == short {
			want = runtime.StatusOK
		}
		if r.Status != want || !strings.Contains(r.Message, "shutting down") || r.CallID == "" {
			t.Errorf("the call sleeping %s: status %q, want %q, saying the server is shutting down: %+v", d, r.Status, want, r)
		}
		if !strings.Contains(text(o.res), "shutting down") {
			t.Errorf("the call sleeping %s: its text does not say the server is shutting down:\n%s", d, text(o.res))
		}
	}
	if len(ids) != 3 {
		t.Errorf("call ids %v", ids)
	}
	for _, d := range []string{short, long1, long2} {
		if exec.Command("pgrep", "-f", "sleep "+d).Run() == nil {
			t.Errorf("the plugin sleeping %s still runs", d)
		}
	}
}

// A tool handler that is no runtime call (here a test tool that waits for
// its context) is cancelled once the grace period is over, and its answer
// still goes out before Shutdown returns.
func TestShutdownCancelsOtherHandlers(t *testing.T) {
	f := newFixture(t)
	tr := startStdio(t, f.srv)
	started := make(chan struct{})
	f.srv.MCPServer().AddTool(mcp.NewTool("test_wait"), func(ctx context.Context, _ mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		close(started)
		<-ctx.Done()
		return mcp.NewToolResultError("ended: " + context.Cause(ctx).Error()), nil
	})
	ch := goCall(tr.client, "test_wait", nil)
	<-started
	start := time.Now()
	if err := f.srv.Shutdown(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < time.Second || d > 4*time.Second {
		t.Errorf("Shutdown took %s", d)
	}
	if err := tr.stop(); err != nil {
		t.Error(err)
	}
	o := <-ch
	if o.err != nil || !strings.Contains(text(o.res), "ended: the server is shutting down") {
		t.Errorf("test_wait: %v %v", o.res, o.err)
	}
}

// Shutdown without anything in flight returns at once, and so does the
// transport after it.
func TestShutdownIdle(t *testing.T) {
	f := newFixture(t)
	tr := startHTTP(t, f.srv, true)
	start := time.Now()
	if err := f.srv.Shutdown(context.Background(), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := tr.stop(); err != nil {
		t.Error(err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("an idle shutdown took %s", d)
	}
}

// Shutdown ends with ctx when an answer cannot be handed over.
func TestShutdownContext(t *testing.T) {
	f := newFixture(t)
	f.srv.calls.add(keyStdio + "1") // read, never answered
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := f.srv.Shutdown(ctx, time.Second); err == nil || !strings.Contains(err.Error(), "1 tool calls unanswered") {
		t.Errorf("Shutdown: %v", err)
	}
}

// The stdio taps: a tools/call counts from the line that carries it until
// the line that answers it, whatever the writes' boundaries.
func TestStdioTaps(t *testing.T) {
	f := newFixture(t)
	in := io.MultiReader(strings.NewReader(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}`+"\n"),
		strings.NewReader(`{"jsonrpc":"2.0","id":"a","method":"tools/list"}`+"\n"+`{"jsonrpc":"2.0","method":"notifications/cancelled"}`+"\n"),
		strings.NewReader(`{"jsonrpc":"2.0","id":"x\u003c","method":"tools/call"}`+"\n"+`{"jsonrpc":"2.0","id":9,"method":"tools/call"}`))
	if _, err := io.Copy(io.Discard, f.srv.newStdinTap(in)); err != nil {
		t.Fatal(err)
	}
	if pending, _ := f.srv.calls.counts(); pending != 2 {
		t.Fatalf("%d pending, want 2 (id 7 and \"x<\"; the last line has no newline)", pending)
	}
	var out bytes.Buffer
	w := f.srv.newStdoutTap(&out)
	for _, chunk := range []string{
		`{"jsonrpc":"2.0","method":"notifications/progress","params":{}}` + "\n",
		`{"jsonrpc":"2.0","id":7,"method":"ping"}` + "\n", // a request of the server's, not an answer
		`{"jsonrpc":"2.0","id":7,"res`, `ult":{}}` + "\n",
	} {
		w.Write([]byte(chunk))
	}
	if pending, _ := f.srv.calls.counts(); pending != 1 {
		t.Fatalf("%d pending after the answer to 7, want 1", pending)
	}
	w.Write([]byte(`{"jsonrpc":"2.0","id":"x\u003c","error":{"code":1,"message":"m"}}` + "\n"))
	if pending, _ := f.srv.calls.counts(); pending != 0 {
		t.Fatalf("%d pending after every answer", pending)
	}
	if !strings.HasSuffix(out.String(), "\n") || strings.Count(out.String(), "\n") != 4 {
		t.Errorf("the tap changed what was written: %q", out.String())
	}
}

// Handlers are counted one by one, however many run at once.
func TestInflightHandlers(t *testing.T) {
	f := newInflight()
	var runs []*handlerRun
	cancelled := 0
	for range 3 {
		runs = append(runs, f.begin(func(error) { cancelled++ }))
	}
	if _, running := f.counts(); running != 3 {
		t.Fatalf("%d running, want 3", running)
	}
	f.end(runs[0])
	if _, running := f.counts(); running != 2 {
		t.Fatalf("%d running after one ended, want 2", running)
	}
	f.cancelHandlers(errShuttingDown)
	if cancelled != 2 {
		t.Errorf("%d cancelled, want 2", cancelled)
	}
}

// Once Shutdown has begun, /health says so with a 503, so a readiness probe
// or load balancer sends no more calls to a server that refuses them.
func TestHealthSaysShuttingDown(t *testing.T) {
	f := newFixture(t)
	base, stop := serveHTTP(t, f.srv)
	health := func() (int, Health) {
		resp, err := http.Get(base + PathHealth)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var h Health
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, h
	}
	if code, h := health(); code != http.StatusOK || h.Status != "ok" {
		t.Fatalf("before shutdown: %d %+v", code, h)
	}
	if err := f.srv.Shutdown(context.Background(), time.Second); err != nil {
		t.Fatal(err)
	}
	if code, h := health(); code != http.StatusServiceUnavailable || h.Status != "shutting_down" {
		t.Errorf("during shutdown: %d %+v", code, h)
	}
	stop()
}
