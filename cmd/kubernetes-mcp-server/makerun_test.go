package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// makeRun is hack/run.sh started as `make run` starts it, with the server
// this test binary built.
type makeRun struct {
	*testenv.Process
	log string
	// The private containerd the script reported.
	ctrdPid int
	socket  string
}

var privateContainerdLine = regexp.MustCompile(`run: private containerd: pid (\d+), socket (\S+),`)

// startMakeRun runs hack/run.sh in its own process group on port, with the
// configured containerd socket at containerd, or where nothing answers (so
// that the script starts its own whatever this machine runs) when it is "".
func startMakeRun(t *testing.T, port int, containerd string) *makeRun {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatalf("make run starts containerd, which needs root; these tests run as uid %d", os.Geteuid())
	}
	// The tests run in cmd/kubernetes-mcp-server.
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	r := &makeRun{log: filepath.Join(t.TempDir(), "make-run.log")}
	cmd := exec.Command(filepath.Join(root, "hack", "run.sh"))
	cmd.Dir = root
	if containerd == "" {
		containerd = filepath.Join(t.TempDir(), "nothing-listens.sock")
	}
	cmd.Env = append(os.Environ(),
		"KMCP_RUN_PORT="+strconv.Itoa(port),
		"KMCP_RUN_BINARY="+binary,
		"PLUGINS_CONTAINERD_ADDRESS="+containerd)
	if r.Process, err = testenv.StartProcess("hack/run.sh", r.log, cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// A test that failed half-way: SIGTERM lets the script clean up.
		r.Stop(30 * time.Second)
		if t.Failed() {
			data, _ := os.ReadFile(r.log)
			t.Logf("hack/run.sh output:\n%s", data)
		}
	})
	return r
}

func (r *makeRun) output() string {
	data, _ := os.ReadFile(r.log)
	return string(data)
}

// waitUntil polls ok until it holds or the script exits or the time is up.
func (r *makeRun) waitUntil(t *testing.T, timeout time.Duration, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
		if r.Exited() {
			t.Fatalf("hack/run.sh exited (%v) before %s", r.State(), what)
		}
	}
	t.Fatalf("no %s after %s", what, timeout)
}

// privateContainerd waits for the script to report the containerd it
// started, once it answered.
func (r *makeRun) privateContainerd(t *testing.T) {
	t.Helper()
	// On a fresh machine the script builds the sandbox image first.
	r.waitUntil(t, 10*time.Minute, "private containerd", func() bool {
		m := privateContainerdLine.FindStringSubmatch(r.output())
		if m == nil {
			return false
		}
		r.ctrdPid, _ = strconv.Atoi(m[1])
		r.socket = m[2]
		return true
	})
}

// serving waits until the server answers /health on port, and returns its
// base URL.
func (r *makeRun) serving(t *testing.T, port int) string {
	t.Helper()
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var health map[string]any
	r.waitUntil(t, 2*time.Minute, "/health", func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&health) == nil
	})
	if health["status"] != "ok" || health["sandbox"] != "container" {
		t.Errorf("/health = %v", health)
	}
	return base
}

// interrupt sends SIGINT to the script's process group, as Ctrl-C does, and
// waits for the script to exit 0.
func (r *makeRun) interrupt(t *testing.T) {
	t.Helper()
	r.Signal(syscall.SIGINT)
	select {
	case <-r.Done():
	case <-time.After(60 * time.Second):
		t.Fatal("hack/run.sh still runs 60s after SIGINT")
	}
	if code := r.State().ExitCode(); code != 0 {
		t.Errorf("hack/run.sh exited %d after SIGINT, want 0", code)
	}
}

// assertContainerdGone checks that the private containerd, its shims and
// its folder are gone.
func (r *makeRun) assertContainerdGone(t *testing.T) {
	t.Helper()
	if testenv.ProcessAlive(r.ctrdPid) {
		t.Errorf("the private containerd (pid %d) still runs", r.ctrdPid)
	}
	if _, err := os.Stat(r.socket); !os.IsNotExist(err) {
		t.Errorf("the private containerd's socket %s is still there (%v)", r.socket, err)
	}
	if _, err := os.Stat(filepath.Dir(r.socket)); !os.IsNotExist(err) {
		t.Errorf("the private containerd's folder %s is still there (%v)", filepath.Dir(r.socket), err)
	}
	if out, err := exec.Command("pgrep", "-af", "containerd-shim.*"+regexp.QuoteMeta(r.socket)).Output(); err == nil {
		t.Errorf("shims of the private containerd still run:\n%s", out)
	}
}

// A newcomer's `make run`: the example plugins are served, and calls run in
// containers of a containerd the script started; SIGINT (Ctrl-C) stops the
// server and that containerd, and the script exits 0.
func TestMakeRunServesASandboxedExamplePlugin(t *testing.T) {
	port := freePort(t)
	r := startMakeRun(t, port, "")
	r.privateContainerd(t)
	if !testenv.ProcessAlive(r.ctrdPid) {
		t.Fatalf("the private containerd (pid %d) does not run", r.ctrdPid)
	}
	if _, err := os.Stat(r.socket); err != nil {
		t.Fatalf("the private containerd's socket: %v", err)
	}
	base := r.serving(t, port)
	for _, want := range []string{"http://127.0.0.1:" + strconv.Itoa(port) + "/mcp", "plugin_manifest_lint", "plugin_image_list"} {
		if !strings.Contains(r.output(), want) {
			t.Errorf("make run does not print %s", want)
		}
	}

	s := connect(t, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"})
	all := tools(t, s)
	for _, name := range []string{"plugins_list", "plugins_execute", "plugin_manifest_lint", "plugin_image_list"} {
		if all[name] == nil {
			t.Errorf("no tool %s", name)
		}
	}
	if lint := all["plugin_manifest_lint"]; lint != nil {
		// Discovery read the plugin's --help in the sandbox.
		schema, _ := json.Marshal(lint.InputSchema)
		for _, prop := range []string{`"fail-on"`, `"skip"`, `"output"`, `"stdin"`} {
			if !strings.Contains(string(schema), prop) {
				t.Errorf("plugin_manifest_lint's input schema has no %s: %s", prop, schema)
			}
		}
	}

	// The manifest the README's example call sends.
	data, err := os.ReadFile(filepath.Join("..", "..", "examples", "run", "deployment.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	manifest := string(data)
	ctx := context.Background()
	res, cr := call(t, s, ctx, "plugin_manifest_lint", map[string]any{"stdin": manifest})
	finding := `error: -:1: Deployment/web container "web": image "nginx:latest" uses the "latest" tag`
	if !res.IsError || cr.ExitCode != 1 || cr.Status != "failed" || !strings.Contains(cr.Output, finding) {
		t.Errorf("manifest-lint: isError=%v %+v\n%s", res.IsError, cr, text(res))
	}
	if cr.Sandbox != "container" {
		t.Errorf("manifest-lint ran in sandbox %q, want container", cr.Sandbox)
	}
	res, cr = call(t, s, ctx, "plugin_manifest_lint", map[string]any{"stdin": manifest, "skip": []string{"image-tag"}})
	if res.IsError || cr.ExitCode != 0 || cr.Sandbox != "container" || !strings.Contains(cr.Output, "1 workload(s) checked: 0 error(s), 2 warning(s)") {
		t.Errorf("manifest-lint --skip image-tag: isError=%v %+v\n%s", res.IsError, cr, text(res))
	}
	res, cr = call(t, s, ctx, "plugin_image_list", map[string]any{"stdin": manifest})
	if res.IsError || cr.Output != "nginx:latest\n" || cr.Sandbox != "container" {
		t.Errorf("image-list: isError=%v %+v\n%s", res.IsError, cr, text(res))
	}
	s.Close()

	// The README's call, with the MCP Inspector's CLI.
	inspector := filepath.Join(npmCache(t), "node_modules", ".bin", "mcp-inspector")
	out, err := exec.Command(inspector, "--cli", base+"/mcp", "--transport", "http", "--method", "tools/call",
		"--tool-name", "plugin_manifest_lint", "--tool-arg", "stdin="+manifest).CombinedOutput()
	var inspected struct {
		IsError           bool       `json:"isError"`
		StructuredContent callResult `json:"structuredContent"`
	}
	if err != nil || json.Unmarshal(out, &inspected) != nil || !inspected.IsError ||
		inspected.StructuredContent.Sandbox != "container" || !strings.Contains(inspected.StructuredContent.Output, finding) {
		t.Errorf("the inspector's tools/call: %v\n%s", err, out)
	}

	// A second make run, whose configured socket answers (the first one's
	// containerd, standing in for the machine's), uses that containerd and
	// leaves it running when it stops.
	port2 := freePort(t)
	r2 := startMakeRun(t, port2, r.socket)
	base2 := r2.serving(t, port2)
	if out := r2.output(); !strings.Contains(out, "run: containerd: the one answering on "+r.socket) || privateContainerdLine.MatchString(out) {
		t.Errorf("the second make run did not use the containerd that answers:\n%s", out)
	}
	s2 := connect(t, &mcp.StreamableClientTransport{Endpoint: base2 + "/mcp"})
	res, cr = call(t, s2, ctx, "plugin_image_list", map[string]any{"stdin": manifest})
	if res.IsError || cr.Output != "nginx:latest\n" || cr.Sandbox != "container" {
		t.Errorf("image-list on the second make run: isError=%v %+v\n%s", res.IsError, cr, text(res))
	}
	s2.Close()
	r2.interrupt(t)
	if !testenv.ProcessAlive(r.ctrdPid) {
		t.Error("the second make run stopped a containerd it did not start")
	}

	// Ctrl-C.
	r.interrupt(t)
	r.assertContainerdGone(t)
	if !strings.Contains(r.output(), "run: stopped the private containerd") {
		t.Error("make run does not say it stopped its containerd")
	}
}

// When the server cannot start (here: its port is taken), the script stops
// the containerd it started and fails.
func TestMakeRunStopsContainerdWhenTheServerFails(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	r := startMakeRun(t, taken.Addr().(*net.TCPAddr).Port, "")
	r.privateContainerd(t)
	select {
	case <-r.Done():
	case <-time.After(2 * time.Minute):
		t.Fatal("hack/run.sh still runs 2 minutes after its server could not listen")
	}
	if r.State().ExitCode() == 0 {
		t.Error("hack/run.sh exited 0 though its server could not start")
	}
	r.assertContainerdGone(t)
}
