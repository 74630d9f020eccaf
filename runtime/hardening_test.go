package runtime

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// runRecorder wraps a real backend and records every file it runs.
type runRecorder struct {
	sandbox.Backend
	mu  sync.Mutex
	ran []string
}

func (r *runRecorder) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	r.mu.Lock()
	r.ran = append(r.ran, filepath.Base(spec.Plugin)+" "+strings.Join(spec.Args, " "))
	r.mu.Unlock()
	return r.Backend.Run(ctx, spec)
}

// Close passes on to the wrapped backend, which the runtime closes.
func (r *runRecorder) Close() error {
	if c, ok := r.Backend.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

func (r *runRecorder) runs(file string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, run := range r.ran {
		if strings.HasPrefix(run, file+" ") {
			out = append(out, run)
		}
	}
	return out
}

// Policy before any probe, with every backend: nothing of a plugin that
// policy blocks or does not allow runs, not even its --help, and it is
// listed with the reason and no parameters. Under none this means a
// blocked plugin never runs with the server's rights.
func TestNothingOfAPluginPolicyRefusesRuns(t *testing.T) {
	for _, backend := range []string{"none", "container"} {
		t.Run(backend, func(t *testing.T) {
			marker := filepath.Join(t.TempDir(), "probed")
			rec := &runRecorder{}
			rt, e := newWrappedRuntime(t, backend, `blocked_plugins = ["spy_blocked"]
read_only = true`, func(b sandbox.Backend) sandbox.Backend { rec.Backend = b; return rec })
			help := "#!/bin/sh\ntouch " + marker + "\necho 'Usage:\n  kubectl spy [flags]\n\nFlags:\n      --target string   what to spy on'\n"
			for _, name := range []string{"kubectl-spy_blocked", "kubectl-spy_delete", "kubectl-spy_allowed"} {
				os.WriteFile(filepath.Join(e.dir, name), []byte(help), 0o755)
			}
			if _, err := rt.Discover(context.Background()); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"kubectl-spy_blocked", "kubectl-spy_delete"} {
				if runs := rec.runs(name); len(runs) != 0 {
					t.Errorf("%s ran: %v", name, runs)
				}
			}
			if runs := rec.runs("kubectl-spy_allowed"); len(runs) != 1 || runs[0] != "kubectl-spy_allowed --help" {
				t.Errorf("the allowed plugin's help runs: %v", runs)
			}
			if backend == "none" {
				// Only the allowed plugin's help touched the marker.
				if _, err := os.Stat(marker); err != nil {
					t.Errorf("the allowed plugin's help did not run: %v", err)
				}
			}
			for name, reason := range map[string]string{"spy_blocked": "blocked_plugins", "spy_delete": "read_only"} {
				p, err := rt.Plugin(name)
				if err != nil {
					t.Fatal(err)
				}
				if p.Allowed || len(p.Parameters) != 0 || !strings.Contains(p.HelpWarning, reason) || !strings.Contains(p.PolicyReason, reason) {
					t.Errorf("%s: allowed %v, parameters %v, help warning %q, policy %q", name, p.Allowed, p.Parameters, p.HelpWarning, p.PolicyReason)
				}
			}
			if p, _ := rt.Plugin("spy_allowed"); len(p.Parameters) != 1 {
				t.Errorf("the allowed plugin's parameters: %+v", p.Parameters)
			}
		})
	}
}

// A plugin file rewritten in place after discovery, with its size kept and
// its mtime set back, is caught before it runs.
func TestExecuteRefusesAPluginRewrittenInPlace(t *testing.T) {
	for _, backend := range []string{"none", "container"} {
		t.Run(backend, func(t *testing.T) {
			rt, e := newRuntimeWith(t, backend, "")
			path := filepath.Join(e.dir, "kubectl-mimic")
			os.WriteFile(path, []byte("#!/bin/sh\necho good\n"), 0o755)
			rt.Discover(context.Background())
			if res, err := rt.Execute(context.Background(), Call{Plugin: "mimic"}); err != nil || res.Output != "good\n" {
				t.Fatalf("before the rewrite: %v %+v", err, res)
			}
			rewriteInPlace(t, path, "#!/bin/sh\necho evil\n")
			res, err := rt.Execute(context.Background(), Call{Plugin: "mimic"})
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "changed on disk since it was discovered") {
				t.Fatalf("after the rewrite: %v %+v", err, res)
			}
		})
	}
}

// rewriteInPlace writes content over path with the same size (pad it) and
// sets the mtime back, as an attacker hiding a change would.
func rewriteInPlace(t *testing.T, path, content string) {
	t.Helper()
	before, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(content)) > before.Size() {
		t.Fatalf("content of %d bytes does not fit %d", len(content), before.Size())
	}
	content += strings.Repeat("#", int(before.Size())-len(content))
	time.Sleep(20 * time.Millisecond) // a ctime tick apart
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(content), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(path, before.ModTime(), before.ModTime()); err != nil {
		t.Fatal(err)
	}
}

// A pinned plugin runs only bytes that match its pin when it runs: the
// runtime hashes a copy of the file for the call and runs that copy, so a
// change after the check cannot reach the sandbox, and a file that no
// longer matches is refused.
func TestPinnedPluginRunsOnlyTheBytesThatMatchThePin(t *testing.T) {
	script := "#!/bin/sh\nsleep 1\ncat \"$0\"\n"
	sum := sha256.Sum256([]byte(script))
	pin := "sha256:" + hex.EncodeToString(sum[:])
	for _, backend := range []string{"none", "container"} {
		t.Run(backend, func(t *testing.T) {
			rt, e := newRuntimeWith(t, backend, fmt.Sprintf("[plugins.pins]\nselfcat = %q\n", pin))
			path := filepath.Join(e.dir, "kubectl-selfcat")
			os.WriteFile(path, []byte(script), 0o755)
			rt.Discover(context.Background())
			before, _ := filepath.Glob(filepath.Join(os.TempDir(), "kmcp-pinned-*"))

			// The file changes while the plugin runs: what runs is what was checked.
			done := make(chan struct{})
			go func() {
				defer close(done)
				time.Sleep(300 * time.Millisecond)
				data, _ := os.ReadFile(path)
				os.WriteFile(path+".orig", data, 0o600)
				f, _ := os.OpenFile(path, os.O_WRONLY, 0)
				f.WriteAt([]byte("#!/bin/sh\necho evil; exit\n"), 0)
				f.Close()
			}()
			res, err := rt.Execute(context.Background(), Call{Plugin: "selfcat"})
			<-done
			if err != nil || res.Status != StatusOK || res.Output != script {
				t.Fatalf("pinned call: %v %+v", err, res)
			}
			after, _ := filepath.Glob(filepath.Join(os.TempDir(), "kmcp-pinned-*"))
			if len(after) > len(before) {
				t.Errorf("the call's checked copy was left behind: %v", after)
			}

			// The content no longer matches the pin: the check made when it
			// would run refuses it, whatever discovery saw.
			plugin, err := rt.discovery.Get("selfcat")
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := rt.checkPin(plugin, ""); !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "pinned to "+pin) {
				t.Errorf("a file that no longer matches its pin: %v", err)
			}
		})
	}
}

// Shutdown refuses new calls at once, lets calls in flight finish within
// the grace period (their results say the server is shutting down),
// cancels the rest, and returns once every result is out and audited.
func TestShutdownDrainsThenCancels(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	rt, _ := newRuntime(t, fmt.Sprintf("[audit]\nfile = %q\n[server]\nshutdown_grace = \"1500ms\"\n", auditFile))
	results := make(chan *Result, 2)
	for _, secs := range []string{"0.5", "30"} {
		go func() {
			res, err := rt.Execute(context.Background(), Call{Plugin: "nap", Args: []string{secs}})
			if err != nil {
				t.Errorf("nap %s: %v", secs, err)
			}
			results <- res
		}()
	}
	for rt.slots.sem.TryAcquire(2) { // until both hold a slot
		rt.slots.sem.Release(2)
		time.Sleep(5 * time.Millisecond)
	}
	shutdown := make(chan error, 1)
	start := time.Now()
	go func() { shutdown <- rt.Shutdown(context.Background(), 1500*time.Millisecond) }()
	for !rt.isShuttingDown() {
		time.Sleep(time.Millisecond)
	}
	if _, err := rt.Execute(context.Background(), Call{Plugin: "echo"}); !errors.Is(err, ErrShuttingDown) || !errors.Is(err, ErrRefused) {
		t.Errorf("a call during shutdown: %v", err)
	}
	if err := <-shutdown; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("Shutdown took %s", took)
	}
	byStatus := map[Status]*Result{}
	for range 2 {
		res := <-results
		byStatus[res.Status] = res
	}
	if ok := byStatus[StatusOK]; ok == nil || ok.Output != "woke\n" || !strings.Contains(ok.Message, "shutting down") {
		t.Errorf("the call that finished in the grace period: %+v", ok)
	}
	if cut := byStatus[StatusCancelled]; cut == nil || !strings.Contains(cut.Message, "server is shutting down") || !strings.Contains(cut.Message, "shutdown_grace") {
		t.Errorf("the call that outlasted the grace period: %+v", cut)
	}
	if err := rt.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(auditFile)
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if rec["type"] == "call" {
			calls++
		}
	}
	if calls != 2 {
		t.Errorf("%d call records in the audit file, want 2:\n%s", calls, data)
	}
}
