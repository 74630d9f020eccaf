package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// httpConfig is a configuration that serves no plugins and asks no
// containerd: only the HTTP front end matters here.
const httpConfig = "[plugins]\nplugin_paths = []\nauto_discovery = false\n[sandbox]\nbackend = \"wasm\"\n"

const authToken = "e2e-token-0123456789abcdef0123456789"

func tokenFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// runBounded is run with a deadline: a server that is not refused would
// serve until killed.
func runBounded(t *testing.T, env []string, args ...string) (stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "XDG_CACHE_HOME=" + t.TempDir()}, env...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("still serving after 30s:\n%s", errb.String())
	}
	if exit, ok := err.(*exec.ExitError); ok {
		code = exit.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return errb.String(), code
}

// Serving HTTP beyond loopback without authentication is refused at
// start-up with a message that names every fix; so is a token file that
// is no secret, and an OAuth issuer that cannot be reached.
func TestHTTPBeyondLoopbackNeedsAuth(t *testing.T) {
	fixes := []string{"--auth-token-file", "server.auth_token_file", "PLUGINS_AUTH_TOKEN_FILE", "server.oauth_issuer", "server.oauth_resource", "--insecure-listen"}
	for _, tt := range []struct {
		name, file string
		env, args  []string
		want       []string
	}{
		{"every IPv4 address", httpConfig, nil, []string{"--bind-address", "0.0.0.0"},
			append([]string{"refusing to serve on 0.0.0.0", "needs authentication"}, fixes...)},
		{"every address from the file", httpConfig + "[server]\nbind_address = \"::\"\n", nil, nil,
			append([]string{"refusing to serve on ::"}, fixes...)},
		{"every address, bind address empty", httpConfig, nil, []string{"--bind-address", ""},
			append([]string{"refusing to serve on every address"}, fixes...)},
		{"a token file others may read", httpConfig, nil, []string{"--bind-address", "0.0.0.0", "--auth-token-file", tokenFile(t, authToken, 0o644)},
			[]string{"server.auth_token_file", "mode 0644", "chmod 600"}},
		{"an empty token file", httpConfig, []string{"PLUGINS_AUTH_TOKEN_FILE=" + tokenFile(t, "\n", 0o600)}, []string{"--bind-address", "0.0.0.0"},
			[]string{"server.auth_token_file", "is empty"}},
		{"a token file on loopback too", httpConfig, nil, []string{"--auth-token-file", filepath.Join(t.TempDir(), "missing")},
			[]string{"server.auth_token_file", "no such file"}},
		{"an issuer that does not answer", httpConfig + "[server]\noauth_issuer = \"http://127.0.0.1:1\"\noauth_resource = \"https://mcp.example/mcp\"\n", nil, []string{"--bind-address", "0.0.0.0"},
			[]string{"server.oauth_issuer", "no usable metadata"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--config", writeFile(t, tt.file), "--port", strconv.Itoa(freePort(t))}, tt.args...)
			stderr, code := runBounded(t, tt.env, args...)
			if code != 1 {
				t.Errorf("exit %d", code)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("does not say %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "MCP server listening") {
				t.Errorf("listened:\n%s", stderr)
			}
		})
	}
}

// The HTTP keys that need no file or network fail config show as they
// fail serving, naming the key.
func TestConfigShowChecksHTTPKeys(t *testing.T) {
	for _, tt := range []struct {
		name, file string
		want       []string
	}{
		{"an origin with a path", "[server]\nallowed_origins = [\"https://app.example/ui\"]\n",
			[]string{"config.toml:2", "server.allowed_origins", "without user, path"}},
		{"an origin without a scheme", "[server]\nallowed_origins = [\"app.example\"]\n",
			[]string{"server.allowed_origins", "want http://host[:port]"}},
		{"an issuer without a resource", "[server]\noauth_issuer = \"https://issuer.example\"\n",
			[]string{"server.oauth_issuer and server.oauth_resource go together"}},
		{"a token and OAuth", "[server]\nauth_token_file = \"/x\"\noauth_issuer = \"https://issuer.example\"\noauth_resource = \"https://mcp.example/mcp\"\n",
			[]string{"exclude each other"}},
		{"OAuth details without an issuer", "[server]\noauth_scopes = [\"mcp\"]\n",
			[]string{"need server.oauth_issuer"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			file := writeFile(t, tt.file)
			_, showErr, showCode := run(t, nil, "config", "show", "--config", file)
			serveErr, serveCode := runBounded(t, nil, "--config", file, "--port", strconv.Itoa(freePort(t)))
			if showCode == 0 || serveCode == 0 {
				t.Fatalf("config show exited %d, serving %d; want both to fail", showCode, serveCode)
			}
			for _, w := range tt.want {
				if !strings.Contains(showErr, w) || !strings.Contains(serveErr, w) {
					t.Errorf("config show or serving does not say %q:\n%s\n%s", w, showErr, serveErr)
				}
			}
		})
	}
}

// startHTTP starts the binary serving HTTP with args, waits for /health
// on loopback and returns its base URL and its log so far.
func startHTTP(t *testing.T, env []string, args ...string) (base string, log func() string) {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(binary, append([]string{"--config", writeFile(t, httpConfig), "--port", strconv.Itoa(port)}, args...)...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(), "XDG_CACHE_HOME=" + t.TempDir()}, env...)
	buf := &syncBuffer{}
	cmd.Stderr = buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v\n%s", err, buf)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("still running 20s after SIGTERM")
		}
		if t.Failed() {
			t.Logf("server log:\n%s", buf)
		}
	})
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, "/health")
	return base, buf.String
}

type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func getJSON(t *testing.T, url string, headers map[string]string) (int, map[string]any) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	json.Unmarshal(body, &m)
	return resp.StatusCode, m
}

// --insecure-listen serves beyond loopback without authentication, and
// says so loudly: in the log at start-up and in /health.
func TestInsecureListenWarns(t *testing.T) {
	base, log := startHTTP(t, nil, "--bind-address", "0.0.0.0", "--insecure-listen")
	_, health := getJSON(t, base+"/health", nil)
	if health["auth"] != "none" || !strings.Contains(fmt.Sprint(health["warning"]), "UNAUTHENTICATED") {
		t.Errorf("/health = %v", health)
	}
	if l := log(); !strings.Contains(l, "[WARN]") || !strings.Contains(l, "UNAUTHENTICATED and listens beyond loopback") {
		t.Errorf("no warning in the log:\n%s", l)
	}
	s := connect(t, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"})
	if tools(t, s)["plugins_list"] == nil {
		t.Error("no plugins_list")
	}
}

// With a token file (here from the environment), the binary serves every
// address; the official SDK's client gets in with the token only, /health
// tells a probe its status and nothing more, and a foreign Origin is 403.
func TestTokenAuthThroughTheBinary(t *testing.T) {
	file := tokenFile(t, authToken+"\n", 0o600)
	base, log := startHTTP(t, []string{"PLUGINS_AUTH_TOKEN_FILE=" + file}, "--bind-address", "0.0.0.0")
	if strings.Contains(log(), "UNAUTHENTICATED") {
		t.Errorf("warns though a token is required:\n%s", log())
	}
	withToken := &http.Client{Transport: testenv.HeaderTransport{"Authorization": "Bearer " + authToken}}
	for name, transport := range map[string]mcp.Transport{
		"streamable": &mcp.StreamableClientTransport{Endpoint: base + "/mcp", HTTPClient: withToken},
		"sse":        &mcp.SSEClientTransport{Endpoint: base + "/sse", HTTPClient: withToken},
	} {
		t.Run(name, func(t *testing.T) {
			s := connect(t, transport)
			if tools(t, s)["plugins_list"] == nil {
				t.Error("no plugins_list")
			}
		})
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "no-token", Version: "1"}, nil)
	if cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: base + "/mcp", MaxRetries: -1}, nil); err == nil {
		cs.Close()
		t.Error("connected without the token")
	}

	for _, tt := range []struct {
		name    string
		headers map[string]string
		status  int
		want    string
	}{
		{"health without token", nil, 200, "map[auth:bearer_token status:ok]"},
		{"health with token", map[string]string{"Authorization": "Bearer " + authToken}, 200, "auth:bearer_token"},
		{"foreign origin", map[string]string{"Origin": "https://evil.example", "Authorization": "Bearer " + authToken}, 403, "server.allowed_origins"},
	} {
		status, m := getJSON(t, base+"/health", tt.headers)
		if status != tt.status || !strings.Contains(fmt.Sprint(m), tt.want) {
			t.Errorf("%s: %d %v, want %d and %q", tt.name, status, m, tt.status, tt.want)
		}
	}
}
