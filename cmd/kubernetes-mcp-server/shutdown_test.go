package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// stopGrace is server.shutdown_grace in these tests: the short call ends
// well within it, the long ones outlast it.
const stopGrace = 4 * time.Second

// SIGTERM with calls in flight, on every transport and backend: every call
// gets its result (the one that finishes within the grace period ok, the
// two that outlast it cancelled, each saying the server is shutting down),
// a call sent meanwhile is refused at once, the process exits 0, and
// nothing is left behind: no container, task, call folder or network
// namespace, no plugin process, and one audit line per call.
func TestE2EShutdown(t *testing.T) {
	for _, backend := range backends {
		for _, transport := range []string{"stdio", "streamable", "sse"} {
			t.Run(backend+"/"+transport, func(t *testing.T) { testShutdown(t, backend, transport) })
		}
	}
}

// stopServer is one server process, as an operator runs it.
type stopServer struct {
	cmd     *exec.Cmd
	exited  chan struct{} // closed when the process has exited
	waitErr error         // its exit, once exited is closed
	log     string
}

func (p *stopServer) exitCode(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(within):
		t.Fatalf("the server still runs %s after SIGTERM", within)
	}
	if p.waitErr == nil {
		return 0
	}
	if exit, ok := p.waitErr.(*exec.ExitError); ok {
		return exit.ExitCode()
	}
	t.Fatalf("wait: %v", p.waitErr)
	return -1
}

// startStopServer starts the server; for stdio it connects over the
// process's stdin and stdout, for HTTP once /health answers.
func startStopServer(t *testing.T, e *e2eEnv, transport string) (*stopServer, *session) {
	t.Helper()
	args := []string{"--config", e.config, "--log-level", "debug"}
	port := 0
	if transport != "stdio" {
		port = freePort(t)
		args = append(args, "--port", strconv.Itoa(port))
	}
	p := &stopServer{cmd: exec.Command(binary, args...), exited: make(chan struct{}), log: filepath.Join(t.TempDir(), "server.log")}
	p.cmd.Env = e.env
	logFile, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	p.cmd.Stderr = logFile
	// Pipes of our own: Wait then waits for the process only, and never
	// closes what the client still reads.
	var toServer, fromServer *os.File
	if transport == "stdio" {
		stdinR, stdinW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		stdoutR, stdoutW, err := os.Pipe()
		if err != nil {
			t.Fatal(err)
		}
		p.cmd.Stdin, p.cmd.Stdout = stdinR, stdoutW
		defer stdinR.Close()
		defer stdoutW.Close()
		toServer, fromServer = stdinW, stdoutR
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.waitErr = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			data, _ := os.ReadFile(p.log)
			t.Logf("server log:\n%s", data)
		}
	})
	if transport == "stdio" {
		return p, connect(t, &mcp.IOTransport{Reader: fromServer, Writer: toServer})
	}
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, func() bool {
		resp, err := http.Get(base + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, "/health")
	if transport == "sse" {
		return p, connect(t, &mcp.SSEClientTransport{Endpoint: base + "/sse"})
	}
	return p, connect(t, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"})
}

type callOutcome struct {
	res *mcp.CallToolResult
	r   callResult
	err error
}

func goSleep(s *session, seconds string) <-chan callOutcome { return goCall(s, "sleeper", seconds) }

// goCall calls plugins_execute for plugin with args and delivers the
// outcome when it comes.
func goCall(s *session, plugin string, args ...string) <-chan callOutcome {
	ch := make(chan callOutcome, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		res, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "plugins_execute",
			Arguments: map[string]any{"plugin": plugin, "args": args}})
		o := callOutcome{res: res, err: err}
		if err == nil && res.StructuredContent != nil {
			data, _ := json.Marshal(res.StructuredContent)
			json.Unmarshal(data, &o.r)
		}
		ch <- o
	}()
	return ch
}

// sleeping reports whether a sleep of exactly these seconds runs (inside a
// container too: the host sees every process).
func sleeping(seconds string) bool {
	return exec.Command("pgrep", "-f", "sleep "+seconds).Run() == nil
}

// ownSandbox gives the server a containerd namespace and state folder of
// its own, so that what is left afterwards is its own.
func ownSandbox(t *testing.T, e *e2eEnv) (namespace, stateDir string) {
	t.Helper()
	data, err := os.ReadFile(e.config)
	if err != nil {
		t.Fatal(err)
	}
	namespace = fmt.Sprintf("kmcp-stop-%d", time.Now().UnixNano()%1000000000)
	cfg := string(data)
	for old, new := range map[string]string{
		`containerd_namespace = "kmcp-e2e"`: fmt.Sprintf("containerd_namespace = %q", namespace),
		`kmcp-e2e-state"`:                   namespace + `-state"`,
	} {
		if strings.Count(cfg, old) != 1 {
			t.Fatalf("the e2e configuration does not hold %s once:\n%s", old, cfg)
		}
		cfg = strings.Replace(cfg, old, new, 1)
	}
	if err := os.WriteFile(e.config, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	ctrd := testenv.TestContainerd(t)
	stateDir = filepath.Clean(filepath.Join(ctrd.State, "..", namespace+"-state"))
	t.Cleanup(func() {
		os.RemoveAll(stateDir)
		exec.Command("ctr", "--address", ctrd.Address, "namespaces", "remove", namespace).Run()
	})
	return namespace, stateDir
}

func testShutdown(t *testing.T, backend, transport string) {
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	e := newE2E(t, backend, fmt.Sprintf("\n[server]\nshutdown_grace = %q\n\n[audit]\nfile = %q\n", stopGrace.String(), audit))
	var namespace, stateDir string
	if backend == "container" {
		namespace, stateDir = ownSandbox(t, e)
	}
	p, s := startStopServer(t, e, transport)

	// Unique durations tell these sleeps from every other process.
	n := time.Now().UnixNano() % 1000000
	short, long1, long2 := fmt.Sprintf("2.%06d", n), fmt.Sprintf("120.%06d", n), fmt.Sprintf("121.%06d", n)
	calls := map[string]<-chan callOutcome{}
	for _, d := range []string{short, long1, long2} {
		calls[d] = goSleep(s, d)
	}
	for _, d := range []string{short, long1, long2} {
		waitFor(t, func() bool { return sleeping(d) }, "the sleeper sleeping "+d)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	// A call sent now is refused at once and says why. (One the server
	// took before it saw the signal runs, and is audited.)
	// The calls go out every 100 ms, each on its own: one the server took
	// before the signal may wait for a slot and run, and must not hold
	// back the next.
	type lateCall struct {
		res  *mcp.CallToolResult
		r    callResult
		took time.Duration
		err  error
	}
	answers := make(chan lateCall, 64)
	sendLate := func() {
		sent := time.Now()
		res, err := s.CallTool(context.Background(), &mcp.CallToolParams{Name: "plugins_execute", Arguments: map[string]any{"plugin": "echo", "args": []string{"late"}}})
		var r callResult
		if err == nil && res.StructuredContent != nil {
			data, _ := json.Marshal(res.StructuredContent)
			json.Unmarshal(data, &r)
		}
		answers <- lateCall{res, r, time.Since(sent), err}
	}
	late := map[string]bool{}
	refused, sent, got := false, 0, 0
	take := func(a lateCall) {
		got++
		switch {
		case a.err != nil:
			t.Errorf("a call during the shutdown: %v", a.err)
		case a.r.Status == "refused":
			refused = true
			if !a.res.IsError || a.r.CallID != "" || !strings.Contains(a.r.Message, "shutting down") || !strings.Contains(text(a.res), "shutting down") {
				t.Errorf("the refusal of a call during the shutdown: isError %v, %+v\n%s", a.res.IsError, a.r, text(a.res))
			}
			if a.took > time.Second {
				t.Errorf("the refusal took %s", a.took)
			}
		case a.r.CallID != "":
			late[a.r.CallID] = true
		default:
			t.Errorf("a call during the shutdown: %+v\n%s", a.r, text(a.res))
		}
	}
	for deadline := time.Now().Add(stopGrace); !refused && time.Now().Before(deadline); {
		go sendLate()
		sent++
		for wait := time.After(100 * time.Millisecond); ; {
			select {
			case a := <-answers:
				take(a)
				continue
			case <-wait:
			}
			break
		}
	}
	if !refused {
		t.Errorf("no call sent after SIGTERM was refused within the grace period")
	}
	for ; got < sent; take(<-answers) {
	}

	// Every call in flight gets its result, before the server is gone.
	ids := shutdownResults(t, calls, short, []string{short, long1, long2}, backend, "sleeper")
	if len(ids) != 3 {
		t.Errorf("call ids: %v", ids)
	}

	if code := p.exitCode(t, stopGrace+60*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}
	// Once it is gone, a call fails instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.CallTool(ctx, &mcp.CallToolParams{Name: "plugins_list"}); err == nil || ctx.Err() != nil {
		t.Errorf("a call after the server exited: %v (context: %v), want a prompt error", err, ctx.Err())
	}

	// Nothing is left behind.
	for _, d := range []string{short, long1, long2} {
		if sleeping(d) {
			t.Errorf("the sleeper sleeping %s still runs", d)
		}
	}
	if backend == "container" {
		ctrd := testenv.TestContainerd(t)
		for _, what := range []string{"containers", "tasks"} {
			out, err := exec.Command("ctr", "--address", ctrd.Address, "-n", namespace, what, "ls", "-q").CombinedOutput()
			if err != nil || strings.TrimSpace(string(out)) != "" {
				t.Errorf("containerd %s left in %s: %v %s", what, namespace, err, out)
			}
		}
		for _, dir := range []string{"calls", "netns"} {
			entries, err := os.ReadDir(filepath.Join(stateDir, dir))
			if err != nil && !os.IsNotExist(err) {
				t.Error(err)
			}
			for _, entry := range entries {
				t.Errorf("%s left in the sandbox state folder: %s", dir, entry.Name())
			}
		}
		mounts, err := os.ReadFile("/proc/self/mountinfo")
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(mounts), "\n") {
			if strings.Contains(line, stateDir+"/") {
				t.Errorf("a mount left in the sandbox state folder: %s", line)
			}
		}
	}

	// One audit line per call that ran, each a JSON object.
	f, err := os.Open(audit)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	audited := map[string]int{}
	lines := bufio.NewScanner(f)
	lines.Buffer(make([]byte, 1<<20), 1<<20)
	for lines.Scan() {
		var line struct {
			Type   string `json:"type"`
			CallID string `json:"call_id"`
			Status string `json:"status"`
		}
		if err := json.Unmarshal(lines.Bytes(), &line); err != nil {
			t.Errorf("audit line is not JSON: %v: %s", err, lines.Text())
			continue
		}
		if line.Type != "call" {
			continue
		}
		audited[line.CallID]++
		switch r, inFlight := ids[line.CallID]; {
		case inFlight && line.Status != r.Status:
			t.Errorf("audit of call %s: status %q, its result %q", line.CallID, line.Status, r.Status)
		case !inFlight && !late[line.CallID]:
			t.Errorf("audit of a call nobody made: %s", lines.Text())
		}
	}
	if err := lines.Err(); err != nil {
		t.Fatal(err)
	}
	for id := range ids {
		if audited[id] != 1 {
			t.Errorf("call %s has %d audit lines, want 1", id, audited[id])
		}
	}
}

// SIGTERM with WebAssembly calls in flight, on every transport: the guest
// that finishes within the grace period gets ok, the two that outlast it
// are stopped and get cancelled, each result says the server is shutting
// down, a call sent meanwhile is refused, the process exits 0, every call
// has one audit line with its result's status, and no guest folder is
// left.
func TestE2EShutdownWithWasmCallsInFlight(t *testing.T) {
	// One compilation cache for the three servers, filled before the first
	// starts: compiling the guest cold on a loaded machine can take longer
	// than a server start may.
	cache := t.TempDir()
	for _, transport := range []string{"stdio", "streamable", "sse"} {
		t.Run(transport, func(t *testing.T) { testShutdownWasm(t, transport, cache) })
	}
}

func testShutdownWasm(t *testing.T, transport, cache string) {
	audit := filepath.Join(t.TempDir(), "audit.jsonl")
	e := newE2E(t, "none", fmt.Sprintf("\n[server]\nshutdown_grace = %q\n\n[audit]\nfile = %q\n", stopGrace.String(), audit))
	copyFile(t, testenv.WasmGuest(t, "cmd/kubernetes-mcp-server/testdata/wasmsleeper", "newsleep"), filepath.Join(e.dir, "kubectl-newsleep.wasm"), 0o644)
	// Guests' folders go here, so that what is left is this server's.
	tmp := t.TempDir()
	e.env = append(e.env, "TMPDIR="+tmp, "XDG_CACHE_HOME="+cache) // the last of a name wins
	// Discovery compiles the guest into the cache, untimed.
	list := exec.Command(binary, "--config", e.config, "plugins", "list")
	list.Env = e.env
	if out, err := list.CombinedOutput(); err != nil || !strings.Contains(string(out), "newsleep") {
		t.Fatalf("plugins list: %v\n%s", err, out)
	}
	p, s := startStopServer(t, e, transport)

	n := time.Now().UnixNano() % 1000000
	short, long1, long2 := fmt.Sprintf("2.%06d", n), fmt.Sprintf("120.%06d", n), fmt.Sprintf("121.%06d", n)
	calls := map[string]<-chan callOutcome{}
	for _, d := range []string{short, long1, long2} {
		calls[d] = goCall(s, "newsleep", d)
	}
	// Each guest asks its gateway for a namespace named after it: the
	// server's log shows it once the guest runs.
	for _, d := range []string{short, long1, long2} {
		marker := "sleep-" + strings.ReplaceAll(d, ".", "-")
		waitFor(t, func() bool {
			data, _ := os.ReadFile(p.log)
			return strings.Contains(string(data), marker)
		}, "the guest sleeping "+d)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}

	late := map[string]bool{}
	refused := false
	for deadline := time.Now().Add(stopGrace); !refused && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		res, r := call(t, s, context.Background(), "plugins_execute", map[string]any{"plugin": "newsleep", "args": []string{"0"}})
		switch {
		case r.Status == "refused":
			refused = true
			if !res.IsError || !strings.Contains(r.Message, "shutting down") {
				t.Errorf("the refusal of a call during the shutdown: %+v\n%s", r, text(res))
			}
		case r.CallID != "":
			late[r.CallID] = true
		default:
			t.Fatalf("a call during the shutdown: %+v\n%s", r, text(res))
		}
	}
	if !refused {
		t.Errorf("no call sent after SIGTERM was refused within the grace period")
	}

	ids := shutdownResults(t, calls, short, []string{short, long1, long2}, "wasm", "guest")
	if code := p.exitCode(t, stopGrace+60*time.Second); code != 0 {
		t.Errorf("exit code %d after SIGTERM, want 0", code)
	}

	entries, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, entry := range entries {
		if strings.HasPrefix(entry.Name(), "kmcp-wasm-") {
			t.Errorf("a guest's folder is left: %s", entry.Name())
		}
	}

	data, err := os.ReadFile(audit)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		t.Errorf("the audit file does not end with a whole line: %q", data)
	}
	audited := map[string]int{}
	for _, raw := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		var fields map[string]any
		if err := json.Unmarshal([]byte(raw), &fields); err != nil {
			t.Errorf("audit line is not JSON: %v: %s", err, raw)
			continue
		}
		if fields["type"] != "call" {
			continue
		}
		var line struct {
			CallID string `json:"call_id"`
			Status string `json:"status"`
		}
		json.Unmarshal([]byte(raw), &line)
		audited[line.CallID]++
		switch r, inFlight := ids[line.CallID]; {
		case inFlight && line.Status != r.Status:
			t.Errorf("audit of call %s: status %q, its result %q", line.CallID, line.Status, r.Status)
		case !inFlight && !late[line.CallID]:
			t.Errorf("audit of a call nobody made: %s", raw)
		}
	}
	for id := range ids {
		if audited[id] != 1 {
			t.Errorf("call %s has %d audit lines, want 1", id, audited[id])
		}
	}
}

// shutdownResults waits for the result of each call in flight at SIGTERM
// (keyed by its sleep, in durations): the short one must end ok, the
// others cancelled, each saying the server is shutting down, all run by
// sandbox. It returns them by call id.
func shutdownResults(t *testing.T, calls map[string]<-chan callOutcome, short string, durations []string, sandbox, what string) map[string]callResult {
	t.Helper()
	ids := map[string]callResult{}
	for _, d := range durations {
		var o callOutcome
		select {
		case o = <-calls[d]:
		case <-time.After(stopGrace + 30*time.Second):
			t.Fatalf("no result for the %s sleeping %s", what, d)
		}
		if o.err != nil {
			t.Fatalf("the %s sleeping %s: %v", what, d, o.err)
		}
		want, isError := "cancelled", true
		if d == short {
			want, isError = "ok", false
		}
		if o.r.Status != want || o.res.IsError != isError || o.r.CallID == "" || o.r.Sandbox != sandbox ||
			!strings.Contains(o.r.Message, "shutting down") || !strings.Contains(text(o.res), "shutting down") {
			t.Errorf("the %s sleeping %s: isError %v, %+v, want status %s saying the server is shutting down\n%s", what, d, o.res.IsError, o.r, want, text(o.res))
		}
		if d == short && !strings.Contains(o.r.Output, "end ") {
			t.Errorf("the short %s did not finish: %q", what, o.r.Output)
		}
		ids[o.r.CallID] = o.r
	}
	return ids
}
