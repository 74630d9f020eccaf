// The deploy folder holds what runs the server somewhere else than a
// developer's machine: the container image's configuration and health
// check (image/, used by ../Dockerfile), docker-compose.yml with its
// services' configurations (compose/), and Kubernetes manifests
// (kubernetes/). It has no Go package; these tests check that each of
// those works: the image built with podman from the Dockerfile and run as
// an unprivileged, read-only container (image_test.go), the compose file,
// parsed, validated and run (compose_test.go), and the manifests
// (kubernetes_test.go). They never skip: a missing podman is a failure.
package deploy_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// mcpUser is the uid and gid the image runs as.
const mcpUser = 65532

var image struct {
	once sync.Once
	name string
	err  error
}

// builtImage builds the image with hack/build-container-image.sh (podman,
// offline, from local Debian base images; cached by content), once per
// test binary, and returns its name.
func builtImage(t *testing.T) string {
	t.Helper()
	image.once.Do(func() {
		start := time.Now()
		cmd := exec.Command(filepath.Join("..", "hack", "build-container-image.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			image.err = fmt.Errorf("hack/build-container-image.sh: %v\n%s", err, stderr.String())
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		image.name = lines[len(lines)-1]
		t.Logf("image %s ready in %s", image.name, time.Since(start).Round(100*time.Millisecond))
	})
	if image.err != nil {
		t.Fatalf("container image: %v", image.err)
	}
	return image.name
}

// podman runs podman and returns its stdout; stderr goes into the error.
func podman(args ...string) (string, error) {
	cmd := exec.Command("podman", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("podman %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

func randomToken(t *testing.T) string {
	t.Helper()
	b := make([]byte, 24)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// tokenFile writes a token file the server accepts: owned by the image's
// user, mode 0600 (it refuses one others may read).
func tokenFile(t *testing.T, dir, name, token string) string {
	t.Helper()
	file := filepath.Join(dir, name)
	if err := os.WriteFile(file, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(file, mcpUser, mcpUser); err != nil {
		t.Fatal(err)
	}
	return file
}

// container is the image running under podman.
type container struct {
	id    string
	base  string // http://127.0.0.1:PORT
	token string
}

// runImage starts the image as the README says to run it: read-only root,
// no capabilities, no new privileges, as 65532, with the writable folders
// it expects as tmpfs (owned by that user, starting with the image's
// content: the compiled plugins), the token mounted, and port 8080
// published on a free port of 127.0.0.1 (podman's CNI bridge works here).
// No --rm: a container that exits early keeps its log for the failure;
// the cleanup removes it whatever happens.
func runImage(t *testing.T, image string) *container {
	t.Helper()
	c := &container{token: randomToken(t)}
	secret := tokenFile(t, t.TempDir(), "token", c.token)
	args := []string{"run", "-d",
		// The machine's hard limits are lower than podman's defaults.
		"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024",
		"--read-only", "--cap-drop=ALL", "--security-opt", "no-new-privileges",
		"--user", fmt.Sprintf("%d:%d", mcpUser, mcpUser),
		"--tmpfs", "/tmp:rw,size=64m,mode=1777",
	}
	for _, dir := range []string{"/var/cache/kubernetes-mcp-server", "/var/lib/kubernetes-mcp-server", "/var/log/kubernetes-mcp-server"} {
		// U=true: owned by the container's user (--tmpfs has no uid=).
		args = append(args, "--mount", "type=tmpfs,destination="+dir+",tmpfs-size=512m,U=true")
	}
	args = append(args,
		"-v", secret+":/var/run/secrets/kubernetes-mcp-server/token:ro",
		"-p", "127.0.0.1::8080",
		image)
	out, err := podman(args...)
	if err != nil {
		t.Fatal(err)
	}
	c.id = strings.TrimSpace(out)
	t.Cleanup(func() {
		if t.Failed() {
			logs, _ := exec.Command("podman", "logs", c.id).CombinedOutput()
			t.Logf("container log:\n%s", logs)
		}
		if _, err := podman("rm", "-f", "-t", "5", c.id); err != nil {
			t.Errorf("remove the container: %v", err)
		}
	})
	hostPort, err := podman("port", c.id, "8080/tcp")
	if err != nil {
		t.Fatal(err)
	}
	c.base = "http://" + strings.TrimSpace(strings.Split(hostPort, "\n")[0])
	waitHealthy(t, c.id, c.base)
	return c
}

// waitHealthy waits until base answers /health with 200, failing early
// when the container stopped.
func waitHealthy(t *testing.T, id, base string) {
	t.Helper()
	// The image ships its plugins compiled; compiling them again (another
	// CPU) takes about 30 s on two cores, more on a loaded machine.
	deadline := time.Now().Add(3 * time.Minute)
	for {
		status, _, err := get(base+"/health", "")
		if err == nil && status == http.StatusOK {
			return
		}
		if running, _ := podman("inspect", "--format", "{{.State.Running}}", id); strings.TrimSpace(running) != "true" {
			t.Fatalf("the container stopped before /health answered (%v)", err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("/health does not answer 200 after 3 minutes: %d %v", status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// get fetches url with the bearer token (none when ""), returning the
// status and the body.
func get(url, token string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return resp.StatusCode, body, err
}

type health struct {
	Status      string   `json:"status"`
	Version     string   `json:"version"`
	Sandbox     string   `json:"sandbox"`
	WasmSandbox bool     `json:"wasm_sandbox"`
	Plugins     int      `json:"plugins"`
	Clusters    []string `json:"clusters"`
	Audit       string   `json:"audit"`
	Auth        string   `json:"auth"`
}

func getHealth(t *testing.T, base, token string) health {
	t.Helper()
	status, body, err := get(base+"/health", token)
	var h health
	if err == nil {
		err = json.Unmarshal(body, &h)
	}
	if err != nil || status != http.StatusOK {
		t.Fatalf("/health: %d %v\n%s", status, err, body)
	}
	return h
}

// connect opens an MCP session (streamable HTTP, the official Go SDK's
// client) with the bearer token.
func connect(t *testing.T, base, token string) *mcp.ClientSession {
	t.Helper()
	client := mcp.NewClient(&mcp.Implementation{Name: "deploy-test", Version: "1"}, nil)
	transport := &mcp.StreamableClientTransport{
		Endpoint:   base + "/mcp",
		HTTPClient: &http.Client{Transport: testenv.HeaderTransport{"Authorization": "Bearer " + token}},
	}
	cs, err := client.Connect(context.Background(), transport, nil)
	if err != nil {
		t.Fatalf("connect to %s/mcp: %v", base, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *mcp.ClientSession) map[string]bool {
	t.Helper()
	res, err := cs.ListTools(context.Background(), nil)
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, tool := range res.Tools {
		names[tool.Name] = true
	}
	return names
}

// callResult is a plugin tool result's structuredContent.
type callResult struct {
	Plugin   string `json:"plugin"`
	Output   string `json:"output"`
	Error    string `json:"error"`
	ExitCode int    `json:"exit_code"`
	Sandbox  string `json:"sandbox"`
	Status   string `json:"status"`
}

func callTool(t *testing.T, cs *mcp.ClientSession, tool string, args map[string]any) (*mcp.CallToolResult, callResult) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	var r callResult
	data, _ := json.Marshal(res.StructuredContent)
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("%s: structured content %s: %v", tool, data, err)
	}
	return res, r
}

func resultText(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func exampleManifest(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "examples", "run", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// The image, run read-only and unprivileged, answers /health (the probe's
// part without a token, the wasm sandbox with it), serves its WebAssembly
// plugins over MCP to a client with the token and to no other, and runs
// them in the wasm sandbox; its HEALTHCHECK passes, its process runs as
// 65532 with no capability, and each call is audited.
func TestImageServesWasmPluginsOverMCP(t *testing.T) {
	c := runImage(t, builtImage(t))

	t.Run("health", func(t *testing.T) {
		if h := getHealth(t, c.base, ""); h.Status != "ok" || h.Auth != "bearer_token" || h.Sandbox != "" || h.Plugins != 0 {
			t.Errorf("/health without the token tells more than a probe needs: %+v", h)
		}
		h := getHealth(t, c.base, c.token)
		// No containerd in a container: native plugins have no sandbox.
		if h.Status != "ok" || !h.WasmSandbox || h.Sandbox != "unavailable" || h.Audit != "ok" || h.Auth != "bearer_token" {
			t.Errorf("/health with the token: %+v", h)
		}
		// hack/build-container-image.sh builds with -X main.version=local.
		if h.Version != "local" {
			t.Errorf("version %q, want the build argument's \"local\"", h.Version)
		}
	})

	t.Run("plugins", func(t *testing.T) {
		cs := connect(t, c.base, c.token)
		tools := toolNames(t, cs)
		for _, name := range []string{"plugin_manifest_lint", "plugin_score", "plugin_pod_list", "plugins_list"} {
			if !tools[name] {
				t.Errorf("no tool %s in %v", name, tools)
			}
		}
		if tools["plugin_krew"] {
			t.Error("krew, a native plugin, is served as a tool")
		}
		manifest := exampleManifest(t)

		res, r := callTool(t, cs, "plugin_manifest_lint", map[string]any{"stdin": manifest})
		finding := `error: -:1: Deployment/web container "web": image "nginx:latest" uses the "latest" tag`
		if !res.IsError || r.ExitCode != 1 || r.Sandbox != "wasm" || !strings.Contains(r.Output, finding) {
			t.Errorf("plugin_manifest_lint: isError=%v %+v\n%s", res.IsError, r, resultText(res))
		}

		res, r = callTool(t, cs, "plugin_score", map[string]any{"args": []string{"score", "-"}, "stdin": manifest})
		// kube-score finds no resource limits (critical: exit 1).
		if r.Sandbox != "wasm" || r.ExitCode != 1 || !strings.Contains(r.Output, "apps/v1/Deployment web") ||
			!strings.Contains(r.Output, "Container Resources") {
			t.Errorf("plugin_score: isError=%v %+v\n%s", res.IsError, r, resultText(res))
		}
	})

	t.Run("no token, no MCP", func(t *testing.T) {
		client := mcp.NewClient(&mcp.Implementation{Name: "no-token", Version: "1"}, nil)
		if cs, err := client.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: c.base + "/mcp", MaxRetries: -1}, nil); err == nil {
			cs.Close()
			t.Error("an MCP client without the token connected")
		}
		req, _ := http.NewRequest(http.MethodPost, c.base+"/mcp", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer not-the-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("POST /mcp with a wrong token: %d, want 401", resp.StatusCode)
		}
	})

	t.Run("healthcheck", func(t *testing.T) {
		if _, err := podman("healthcheck", "run", c.id); err != nil {
			t.Errorf("the image's HEALTHCHECK fails: %v", err)
		}
		if status, err := podman("inspect", "--format", "{{.State.Health.Status}}", c.id); strings.TrimSpace(status) != "healthy" {
			t.Errorf("health status %q (%v)", status, err)
		}
	})

	t.Run("unprivileged", func(t *testing.T) {
		pid, err := podman("inspect", "--format", "{{.State.Pid}}", c.id)
		if err != nil {
			t.Fatal(err)
		}
		// The server's process as the host's kernel sees it.
		status, err := os.ReadFile(filepath.Join("/proc", strings.TrimSpace(pid), "status"))
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{
			"Uid":        fmt.Sprintf("%d\t%d\t%d\t%d", mcpUser, mcpUser, mcpUser, mcpUser),
			"Gid":        fmt.Sprintf("%d\t%d\t%d\t%d", mcpUser, mcpUser, mcpUser, mcpUser),
			"CapEff":     "0000000000000000",
			"CapPrm":     "0000000000000000",
			"CapBnd":     "0000000000000000",
			"NoNewPrivs": "1",
		}
		for _, line := range strings.Split(string(status), "\n") {
			k, v, _ := strings.Cut(line, ":")
			if w, ok := want[k]; ok {
				if v = strings.TrimSpace(v); v != w {
					t.Errorf("the server's %s is %q, want %q", k, v, w)
				}
				delete(want, k)
			}
		}
		if len(want) > 0 {
			t.Errorf("no %v in /proc/%s/status", want, strings.TrimSpace(pid))
		}
		out, err := exec.Command("podman", "exec", c.id, "/bin/bash", "-c", "echo x >/etc/kubernetes-mcp-server/probe").CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Read-only file system") {
			t.Errorf("a write to the image's root: %v %s", err, out)
		}
	})

	t.Run("audit", func(t *testing.T) {
		out, err := podman("exec", c.id, "cat", "/var/log/kubernetes-mcp-server/audit.jsonl")
		if err != nil {
			t.Fatal(err)
		}
		calls := 0
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("audit line %q: %v", line, err)
			}
			if rec["type"] == "call" {
				calls++
			}
		}
		if calls < 2 {
			t.Errorf("%d call records in the audit file, want the 2 calls:\n%s", calls, out)
		}
	})
}
