package mcpserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/client/transport"
	"github.com/mark3labs/mcp-go/mcp"
)

// connectStdio serves s over in-memory pipes with ServeStdio and connects
// mcp-go's stdio client to it. mcp-go keeps the stdio session in a package
// variable, so tests serving stdio do not run in parallel.
func connectStdio(t *testing.T, s *Server) *testClient {
	t.Helper()
	clientRead, serverWrite := io.Pipe()
	serverRead, clientWrite := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeStdio(ctx, serverRead, serverWrite) }()
	t.Cleanup(func() {
		cancel()
		clientWrite.Close()
		serverWrite.Close()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("ServeStdio: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("ServeStdio did not return after its context ended")
		}
	})
	c := client.NewClient(transport.NewIO(clientRead, clientWrite, io.NopCloser(strings.NewReader(""))))
	tc := &testClient{Client: c}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		tc.mu.Lock()
		tc.notifications = append(tc.notifications, n)
		tc.mu.Unlock()
	})
	if err := c.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Initialize(context.Background(), mcp.InitializeRequest{Params: mcp.InitializeParams{
		ProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION,
		ClientInfo:      mcp.Implementation{Name: "test", Version: "1"},
	}}); err != nil {
		t.Fatal(err)
	}
	return tc
}

func TestStdio(t *testing.T) {
	f := newFixture(t)
	c := connectStdio(t, f.srv)
	if got := names(toolsByName(t, c)); !reflect.DeepEqual(got, wantTools) {
		t.Errorf("tools %q", got)
	}
	f.writePlugin(t, "newplug", simplePlugin)
	call(t, c, "plugins_discover", nil)
	waitFor(t, "list_changed over stdio", func() bool { return c.count("notifications/tools/list_changed") == 1 })
}

// Malformed JSON-RPC on stdio gets error responses, and the server serves on.
func TestStdioMalformed(t *testing.T) {
	f := newFixture(t)
	clientRead, serverWrite := io.Pipe()
	serverRead, clientWrite := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	go func() { served <- f.srv.ServeStdio(ctx, serverRead, serverWrite) }()
	lines := bufio.NewScanner(clientRead)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	responses := make(chan map[string]any, 16)
	go func() {
		for lines.Scan() {
			var m map[string]any
			if err := json.Unmarshal(lines.Bytes(), &m); err != nil {
				m = map[string]any{"unparsable": lines.Text()}
			}
			responses <- m
		}
		close(responses)
	}()
	send := func(s string) {
		t.Helper()
		if _, err := io.WriteString(clientWrite, s+"\n"); err != nil {
			t.Fatal(err)
		}
	}
	next := func() map[string]any {
		t.Helper()
		select {
		case m := <-responses:
			return m
		case <-time.After(10 * time.Second):
			t.Fatal("no response")
			return nil
		}
	}
	errorCode := func(m map[string]any) float64 {
		e, _ := m["error"].(map[string]any)
		code, _ := e["code"].(float64)
		return code
	}

	for _, tt := range []struct {
		line string
		code float64
	}{
		{"this is not json", mcp.PARSE_ERROR},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/list"`, mcp.PARSE_ERROR},
		{`{}`, mcp.INVALID_REQUEST},
		{`{"jsonrpc":"1.0","id":2,"method":"tools/list"}`, mcp.INVALID_REQUEST},
		{`{"jsonrpc":"2.0","id":3,"method":"no/such/method"}`, mcp.METHOD_NOT_FOUND},
		{`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}`, mcp.INVALID_PARAMS},
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":"x"}`, mcp.INVALID_REQUEST},
		// One line longer than any message may be: cut, answered, forgotten.
		{`{"jsonrpc":"2.0","id":6,"method":"tools/call","params":{"name":"plugins_list","arguments":{"filter":"` + strings.Repeat("x", maxMessageBytes) + `"}}}`, mcp.PARSE_ERROR},
	} {
		send(tt.line)
		m := next()
		if errorCode(m) != tt.code {
			t.Errorf("%.60s: response %v, want error code %v", tt.line, m, tt.code)
		}
	}
	send(`{"jsonrpc":"2.0","id":10,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	if m := next(); m["result"] == nil {
		t.Fatalf("initialize after bad input: %v", m)
	}
	send(`{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	send(`{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"plugins_list","arguments":{"filter":"echo"}}}`)
	m := next()
	result, _ := m["result"].(map[string]any)
	if result == nil || result["isError"] == true || result["structuredContent"] == nil {
		t.Fatalf("plugins_list after bad input: %v", m)
	}
	clientWrite.Close() // end of input: ServeStdio returns
	select {
	case err := <-served:
		if err != nil {
			t.Errorf("ServeStdio at end of input: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Error("ServeStdio did not return at the end of its input")
	}
}

func TestLineLimiter(t *testing.T) {
	in := "short\n" + strings.Repeat("x", 25) + "\nafter\n" + strings.Repeat("y", 10)
	got, err := io.ReadAll(newLineLimiter(strings.NewReader(in), 10))
	if err != nil {
		t.Fatal(err)
	}
	want := "short\n" + strings.Repeat("x", 10) + "\nafter\n" + strings.Repeat("y", 10)
	if string(got) != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// serveHTTP serves f.srv on a real listener on 127.0.0.1:0.
func serveHTTP(t *testing.T, s *Server) (base string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(ctx, ln) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-served:
			return err
		case <-time.After(15 * time.Second):
			t.Error("ServeListener did not return after its context ended")
			return nil
		}
	}
	t.Cleanup(func() { stop() })
	return "http://" + ln.Addr().String(), stop
}

func TestHTTP(t *testing.T) {
	f := newFixture(t)
	base, stop := serveHTTP(t, f.srv)

	for _, path := range []string{"/health", "/healthz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		var h Health
		err = json.NewDecoder(resp.Body).Decode(&h)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %v", path, resp.StatusCode, err)
		}
		want := Health{Status: "ok", Version: "test", Plugins: 8, Tools: 10, Sandbox: "none", WasmSandbox: true, Clusters: []string{"c1", "c2"}, DefaultCluster: "c1"}
		if !reflect.DeepEqual(h, want) {
			t.Errorf("%s: %+v\nwant %+v", path, h, want)
		}
	}
	for _, tt := range []struct {
		method, path, contentType, body string
		status                          int
	}{
		{"POST", "/health", "", "", http.StatusMethodNotAllowed},
		{"GET", "/nope", "", "", http.StatusNotFound},
		{"POST", "/mcp", "application/json", "{not json", http.StatusBadRequest},
		{"POST", "/mcp", "text/plain", "{}", http.StatusBadRequest},
		{"POST", "/mcp", "application/json", strings.Repeat(" ", maxMessageBytes+1) + "{}", http.StatusBadRequest},
		{"POST", "/message?sessionId=nope", "application/json", "{}", http.StatusBadRequest},
		{"POST", "/message", "application/json", "{", http.StatusBadRequest},
	} {
		req, _ := http.NewRequest(tt.method, base+tt.path, bytes.NewBufferString(tt.body))
		if tt.contentType != "" {
			req.Header.Set("Content-Type", tt.contentType)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tt.method, tt.path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.status {
			t.Errorf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, body, tt.status)
		}
	}

	ctx := context.Background()
	initialize := mcp.InitializeRequest{Params: mcp.InitializeParams{
		ProtocolVersion: mcp.LATEST_LEGACY_PROTOCOL_VERSION,
		ClientInfo:      mcp.Implementation{Name: "test", Version: "1"},
	}}

	// Streamable HTTP.
	sh, err := client.NewStreamableHttpClient(base + PathStreamable)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	if err := sh.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sh.Initialize(ctx, initialize); err != nil {
		t.Fatal(err)
	}
	res, err := sh.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil || len(res.Tools) != len(wantTools) {
		t.Fatalf("streamable HTTP tools/list: %v %v", res, err)
	}
	out, err := sh.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "plugins_list", Arguments: map[string]any{"filter": "echo"}}})
	if err != nil || out.IsError || !strings.Contains(text(out), "1 plugins match") {
		t.Fatalf("streamable HTTP plugins_list: %v %v", out, err)
	}

	// SSE, left connected: shutting down must not wait for it.
	sse, err := client.NewSSEMCPClient(base + PathSSE)
	if err != nil {
		t.Fatal(err)
	}
	defer sse.Close()
	if err := sse.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := sse.Initialize(ctx, initialize); err != nil {
		t.Fatal(err)
	}
	res, err = sse.ListTools(ctx, mcp.ListToolsRequest{})
	if err != nil || len(res.Tools) != len(wantTools) {
		t.Fatalf("SSE tools/list: %v %v", res, err)
	}
	out, err = sse.CallTool(ctx, mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "plugins_info", Arguments: map[string]any{"plugin": "a/b"}}})
	if err != nil || !out.IsError {
		t.Fatalf("SSE plugins_info: %v %v", out, err)
	}

	start := time.Now()
	if err := stop(); err != nil {
		t.Errorf("ServeListener: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("shutdown took %s", d)
	}
	if _, err := http.Get(base + "/health"); err == nil {
		t.Error("still serving after shutdown")
	}
}

func TestServeHTTPBadAddress(t *testing.T) {
	f := newFixture(t)
	if err := f.srv.ServeHTTP(context.Background(), "256.0.0.1:99999"); err == nil {
		t.Error("no error for a bad address")
	}
}
