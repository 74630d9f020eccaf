package mcpserver

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	sdk "github.com/modelcontextprotocol/go-sdk/mcp"
)

const testToken = "0123456789abcdef0123456789abcdef"

// guardedServer is a Server on f's runtime with opts guarding its HTTP
// transports; its log goes to the test and to the returned buffer.
func guardedServer(t *testing.T, f *fixture, opts HTTPOptions) (*Server, *lockedBuffer) {
	t.Helper()
	buf := &lockedBuffer{}
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Info, Output: io.MultiWriter(buf, testWriter{t})})
	s, err := New(Options{Runtime: f.rt, Logger: log, Clusters: []string{"c1", "c2"}, DefaultCluster: "c1", Version: "test", HTTP: opts})
	if err != nil {
		t.Fatal(err)
	}
	return s, buf
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// bearer is an http.Client that sends token on every request ("" none).
func bearer(token string) *http.Client {
	return &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if token != "" {
			r = r.Clone(r.Context())
			r.Header.Set("Authorization", "Bearer "+token)
		}
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// sdkConnect connects the official Go SDK's client over transport
// ("streamable" or "sse") with hc.
func sdkConnect(t *testing.T, base, transport string, hc *http.Client) (*sdk.ClientSession, error) {
	t.Helper()
	var tr sdk.Transport
	switch transport {
	case "streamable":
		tr = &sdk.StreamableClientTransport{Endpoint: base + PathStreamable, HTTPClient: hc, MaxRetries: -1}
	case "sse":
		tr = &sdk.SSEClientTransport{Endpoint: base + PathSSE, HTTPClient: hc}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // the SSE stream lives as long as this context
	c := sdk.NewClient(&sdk.Implementation{Name: "auth-test", Version: "1"}, nil)
	cs, err := c.Connect(ctx, tr, nil)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { cs.Close() })
	return cs, nil
}

// callPluginsList calls plugins_list over cs and checks the answer.
func callPluginsList(t *testing.T, cs *sdk.ClientSession) {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &sdk.CallToolParams{Name: "plugins_list", Arguments: map[string]any{"filter": "echo"}})
	if err != nil || res.IsError {
		t.Fatalf("plugins_list: %+v %v", res, err)
	}
	if got := res.Content[0].(*sdk.TextContent).Text; !strings.Contains(got, "1 plugins match") {
		t.Errorf("plugins_list says %q", got)
	}
}

const initializeBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

// rawRequest sends one request with the given headers and returns the
// status, the WWW-Authenticate header and the body.
func rawRequest(t *testing.T, method, url string, headers map[string]string, body string) (int, string, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	var b []byte
	if method == http.MethodGet && strings.HasSuffix(url, PathSSE) && resp.StatusCode == http.StatusOK {
		b = []byte("(stream)") // an SSE stream does not end by itself
	} else {
		b, _ = io.ReadAll(resp.Body)
	}
	return resp.StatusCode, resp.Header.Get("WWW-Authenticate"), string(b)
}

// With a bearer token, the official SDK's client gets in over streamable
// HTTP and SSE with the token, and not without it or with another; the
// raw answers are RFC 6750's.
func TestBearerTokenAuth(t *testing.T) {
	f := newFixture(t)
	s, _ := guardedServer(t, f, HTTPOptions{Token: testToken})
	base, _ := serveHTTP(t, s)

	for _, transport := range []string{"streamable", "sse"} {
		t.Run(transport, func(t *testing.T) {
			cs, err := sdkConnect(t, base, transport, bearer(testToken))
			if err != nil {
				t.Fatalf("with the token: %v", err)
			}
			callPluginsList(t, cs)
			for _, token := range []string{"", "wrong-token-wrong-token-wrong-token"} {
				if _, err := sdkConnect(t, base, transport, bearer(token)); err == nil {
					t.Errorf("token %q: connected", token)
				}
			}
		})
	}

	const realm = `Bearer realm="kubernetes-mcp-server"`
	invalid := realm + `, error="invalid_token", error_description="the bearer token is not this server's"`
	for _, tt := range []struct {
		name, method, path, auth, body string
		status                         int
		challenge                      string
	}{
		{"no token", "POST", PathStreamable, "", initializeBody, 401, realm},
		{"wrong token", "POST", PathStreamable, "Bearer nope", initializeBody, 401, invalid},
		{"token with a suffix", "POST", PathStreamable, "Bearer " + testToken + "x", initializeBody, 401, invalid},
		{"token prefix", "POST", PathStreamable, "Bearer " + testToken[:20], initializeBody, 401, invalid},
		{"basic auth is no bearer token", "POST", PathStreamable, "Basic " + testToken, initializeBody, 401, realm},
		{"token in the query is not read", "POST", PathStreamable + "?access_token=" + testToken, "", initializeBody, 401, realm},
		{"good token", "POST", PathStreamable, "Bearer " + testToken, initializeBody, 200, ""},
		{"scheme in any case", "POST", PathStreamable, "bearer " + testToken, initializeBody, 200, ""},
		{"SSE stream without token", "GET", PathSSE, "", "", 401, realm},
		{"SSE stream with token", "GET", PathSSE, "Bearer " + testToken, "", 200, ""},
		{"SSE message without token", "POST", PathMessage + "?sessionId=x", "", "{}", 401, realm},
		{"unknown path without token", "GET", "/nope", "", "", 401, realm},
		{"health without token", "GET", PathHealth, "", "", 200, ""},
		{"no metadata without OAuth", "GET", PathProtectedResource, "", "", 401, realm},
	} {
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{}
			if tt.auth != "" {
				headers["Authorization"] = tt.auth
			}
			status, challenge, body := rawRequest(t, tt.method, base+tt.path, headers, tt.body)
			if status != tt.status || challenge != tt.challenge {
				t.Errorf("%d, WWW-Authenticate %q, %s\nwant %d, %q", status, challenge, body, tt.status, tt.challenge)
			}
		})
	}
}

// /health answers every probe, but names plugins, tools and clusters only
// to a request that may use the server.
func TestHealthWithoutCredentials(t *testing.T) {
	f := newFixture(t)
	s, _ := guardedServer(t, f, HTTPOptions{Token: testToken})
	base, _ := serveHTTP(t, s)
	for _, tt := range []struct {
		name, auth string
		want       map[string]any
	}{
		{"no token", "", map[string]any{"status": "ok", "auth": "bearer_token"}},
		{"wrong token", "Bearer nope", map[string]any{"status": "ok", "auth": "bearer_token"}},
	} {
		status, _, body := rawRequest(t, "GET", base+PathHealth, map[string]string{"Authorization": tt.auth}, "")
		var got map[string]any
		if err := json.Unmarshal([]byte(body), &got); err != nil || status != 200 || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("%s: %d %s, want 200 %v", tt.name, status, body, tt.want)
		}
	}
	status, _, body := rawRequest(t, "GET", base+PathHealth, map[string]string{"Authorization": "Bearer " + testToken}, "")
	var h httpHealth
	if err := json.Unmarshal([]byte(body), &h); err != nil || status != 200 || h.Auth != "bearer_token" ||
		fmt.Sprint(h.Clusters) != "[c1 c2]" || h.Tools != len(wantTools) || h.Warning != "" {
		t.Errorf("with the token: %d %s", status, body)
	}
}

// Browsers' Origin is checked on every request: none or an allowed one
// passes, any other gets 403, on every path.
func TestOriginCheck(t *testing.T) {
	f := newFixture(t)
	def, _ := guardedServer(t, f, HTTPOptions{})
	defBase, _ := serveHTTP(t, def)
	custom, _ := guardedServer(t, f, HTTPOptions{AllowedOrigins: []string{"https://app.example", "http://tool.example:8080"}})
	customBase, _ := serveHTTP(t, custom)

	for _, tt := range []struct {
		base, origin string
		ok           bool
	}{
		{defBase, "", true},
		{defBase, "http://localhost", true},
		{defBase, "http://localhost:6274", true}, // the MCP Inspector's page
		{defBase, "http://127.0.0.1:3000", true},
		{defBase, "http://[::1]:8080", true},
		{defBase, "HTTP://LOCALHOST:1", true},
		{defBase, "https://evil.example", false},
		{defBase, "http://localhost.evil.example", false},
		{defBase, "http://127.0.0.1.nip.io", false},
		{defBase, "null", false},
		{defBase, "file://", false},
		{defBase, "http://localhost/path", false},
		{customBase, "https://app.example", true},
		{customBase, "https://app.example:443", true},
		{customBase, "http://app.example", false},
		{customBase, "http://tool.example:8080", true},
		{customBase, "http://tool.example:8081", false},
		{customBase, "http://tool.example", false},
		{customBase, "http://localhost:3000", false}, // the list replaces the default
		{customBase, "", true},
	} {
		for _, path := range []string{PathStreamable, PathSSE, PathMessage, PathHealth} {
			method, body := "POST", initializeBody
			if path == PathSSE || path == PathHealth {
				method, body = "GET", ""
			}
			headers := map[string]string{}
			if tt.origin != "" {
				headers["Origin"] = tt.origin
			}
			status, _, resp := rawRequest(t, method, tt.base+path, headers, body)
			if forbidden := status == http.StatusForbidden; forbidden == tt.ok {
				t.Errorf("%s %s Origin %q: %d %s", method, path, tt.origin, status, resp)
			}
			if !tt.ok && !strings.Contains(resp, "server.allowed_origins") {
				t.Errorf("%s Origin %q: the 403 does not name the fix: %s", path, tt.origin, resp)
			}
		}
	}
	// The SDK's client sends no Origin and gets in.
	cs, err := sdkConnect(t, defBase, "streamable", http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	callPluginsList(t, cs)
}

func TestOriginListSyntax(t *testing.T) {
	for _, tt := range []struct {
		origin string
		ok     bool
	}{
		{"https://app.example", true},
		{"http://app.example:8080", true},
		{"http://[::1]:8080", true},
		{"app.example", false},
		{"ftp://app.example", false},
		{"https://app.example/path", false},
		{"https://user@app.example", false},
		{"https://app.example?x=1", false},
		{"*", false},
		{"", false},
	} {
		err := CheckOrigins([]string{tt.origin})
		if (err == nil) != tt.ok {
			t.Errorf("%q: %v", tt.origin, err)
		}
	}
	if _, err := New(Options{Runtime: newFixture(t).rt, HTTP: HTTPOptions{AllowedOrigins: []string{"nope"}}}); err == nil {
		t.Error("New took a bad origin")
	}
}

func TestIsLoopback(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1": true, "127.1.2.3": true, "::1": true, "[::1]": true, "localhost": true, "LocalHost": true,
		"0.0.0.0": false, "::": false, "": false, "10.0.0.1": false, "192.168.1.2": false, "example.com": false,
		"localhost.example.com": false, "::ffff:10.0.0.1": false,
	} {
		if got := IsLoopback(host); got != want {
			t.Errorf("IsLoopback(%q) = %v", host, got)
		}
	}
}

// Beyond loopback, the server needs authentication or an explicit
// insecure listen.
func TestCheckExposure(t *testing.T) {
	for _, tt := range []struct {
		host string
		opts HTTPOptions
		ok   bool
	}{
		{"127.0.0.1", HTTPOptions{}, true},
		{"::1", HTTPOptions{}, true},
		{"localhost", HTTPOptions{}, true},
		{"0.0.0.0", HTTPOptions{}, false},
		{"::", HTTPOptions{}, false},
		{"", HTTPOptions{}, false},
		{"10.1.2.3", HTTPOptions{}, false},
		{"mcp.example.com", HTTPOptions{}, false},
		{"0.0.0.0", HTTPOptions{Token: testToken}, true},
		{"0.0.0.0", HTTPOptions{OAuth: &OAuthVerifier{}}, true},
		{"0.0.0.0", HTTPOptions{InsecureListen: true}, true},
		{"127.0.0.1", HTTPOptions{Token: testToken, OAuth: &OAuthVerifier{}}, false},
	} {
		err := CheckExposure(tt.host, tt.opts)
		if (err == nil) != tt.ok {
			t.Errorf("%q %+v: %v", tt.host, tt.opts, err)
		}
		if err != nil && tt.opts.authMode() == "none" && !errors.Is(err, ErrNoAuthentication) {
			t.Errorf("%q: %v is not ErrNoAuthentication", tt.host, err)
		}
	}
}

// ServeListener refuses a listener on every address without
// authentication; with InsecureListen it serves, warns in its log and says
// so in /health.
func TestServeListenerExposure(t *testing.T) {
	f := newFixture(t)
	s, _ := guardedServer(t, f, HTTPOptions{})
	ln, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	err = s.ServeListener(context.Background(), ln)
	if !errors.Is(err, ErrNoAuthentication) {
		t.Fatalf("ServeListener on %s: %v", ln.Addr(), err)
	}
	if c, err := net.Dial("tcp", ln.Addr().String()); err == nil {
		c.Close()
		t.Error("the refused listener is still open")
	}

	insecure, log := guardedServer(t, f, HTTPOptions{InsecureListen: true})
	ln, err = net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- insecure.ServeListener(ctx, ln) }()
	defer func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	}()
	base := fmt.Sprintf("http://127.0.0.1:%d", ln.Addr().(*net.TCPAddr).Port)
	var h httpHealth
	waitFor(t, "/health", func() bool {
		status, _, body := rawRequest(t, "GET", base+PathHealth, nil, "")
		return status == 200 && json.Unmarshal([]byte(body), &h) == nil
	})
	if h.Auth != "none" || !strings.Contains(h.Warning, "UNAUTHENTICATED") || fmt.Sprint(h.Clusters) != "[c1 c2]" {
		t.Errorf("/health: %+v", h)
	}
	if !strings.Contains(log.String(), "[WARN]") || !strings.Contains(log.String(), "UNAUTHENTICATED") {
		t.Errorf("no warning in the log:\n%s", log)
	}
	cs, err := sdkConnect(t, base, "streamable", http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	callPluginsList(t, cs)
}

// A loopback server without authentication has no warning; one with a
// token on loopback requires it all the same.
func TestLoopbackHealth(t *testing.T) {
	f := newFixture(t)
	s, log := guardedServer(t, f, HTTPOptions{})
	base, _ := serveHTTP(t, s)
	var h httpHealth
	status, _, body := rawRequest(t, "GET", base+PathHealth, nil, "")
	if err := json.Unmarshal([]byte(body), &h); err != nil || status != 200 || h.Auth != "none" || h.Warning != "" || h.Tools != len(wantTools) {
		t.Errorf("/health: %d %s", status, body)
	}
	if strings.Contains(log.String(), "UNAUTHENTICATED") {
		t.Errorf("a loopback server warns:\n%s", log)
	}
}

func TestReadTokenFile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name, content string
		mode          os.FileMode
		token         string
		warn, err     string
	}{
		{"plain", testToken, 0o600, testToken, "", ""},
		{"trailing newline", testToken + "\n", 0o400, testToken, "", ""},
		{"group may read", testToken, 0o640, testToken, "its group may read it", ""},
		{"others may read", testToken, 0o644, "", "", "chmod 600"},
		{"group may write", testToken, 0o660, "", "", "chmod 600"},
		{"empty", "", 0o600, "", "", "is empty"},
		{"only a newline", "\n", 0o600, "", "", "is empty"},
		{"short", "abc", 0o600, "", "", "fewer than 16"},
		{"two lines", testToken + "\n" + testToken, 0o600, "", "", "one token only"},
		{"too big", strings.Repeat("x", 70<<10), 0o600, "", "", "over 64 KiB"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tt.content), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(path, tt.mode); err != nil {
				t.Fatal(err)
			}
			token, warn, err := ReadTokenFile(path)
			if token != tt.token || !strings.Contains(warn, tt.warn) || (tt.warn == "") != (warn == "") {
				t.Errorf("token %q, warning %q, error %v", token, warn, err)
			}
			if (tt.err == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.err)) {
				t.Errorf("error %v, want one saying %q", err, tt.err)
			}
		})
	}
	for _, path := range []string{filepath.Join(dir, "missing"), dir} {
		if _, _, err := ReadTokenFile(path); err == nil {
			t.Errorf("%s: no error", path)
		}
	}
}

// A request body that does not arrive in time is cut off; a stream lives
// on long past that time, and the calls on it are answered.
func TestHTTPBounds(t *testing.T) {
	f := newFixture(t)
	s, _ := guardedServer(t, f, HTTPOptions{})
	s.bodyReadTimeout = 300 * time.Millisecond
	base, _ := serveHTTP(t, s)
	addr := strings.TrimPrefix(base, "http://")

	// A slow body: the headers, half the body, then nothing.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "POST /mcp HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: %d\r\n\r\n%s",
		addr, len(initializeBody), initializeBody[:len(initializeBody)/2])
	start := time.Now()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode < 400 {
			t.Errorf("a body that never came got %s", resp.Status)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("the slow body was cut off after %s", d)
	}

	// Headers over the bound get 431.
	status, _, _ := rawRequest(t, "GET", base+PathHealth, map[string]string{"X-Big": strings.Repeat("x", maxHeaderBytes+8<<10)}, "")
	if status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("oversized headers: %d", status)
	}

	// Streams outlive the body bound: SSE and streamable sessions opened
	// now still answer after several times it.
	var sessions []*sdk.ClientSession
	for _, transport := range []string{"sse", "streamable"} {
		cs, err := sdkConnect(t, base, transport, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		sessions = append(sessions, cs)
	}
	time.Sleep(4 * s.bodyReadTimeout)
	for _, cs := range sessions {
		callPluginsList(t, cs)
	}
	// A call that runs longer than the body bound is answered too.
	res, err := sessions[1].CallTool(context.Background(), &sdk.CallToolParams{Name: "plugin_sleepy", Arguments: map[string]any{"args": []string{"1"}}})
	if err != nil || res.IsError {
		t.Errorf("a call longer than the body bound: %+v %v", res, err)
	}
}
