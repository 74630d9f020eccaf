package wasm_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// TestParallelRuns: runs of one module on one backend at once each get
// their own argv, output and /tmp.
func TestParallelRuns(t *testing.T) {
	t.Parallel()
	b := newBackend(t, wasm.Config{})
	plugin := hostileGuest(t)
	const n = 8
	results := make([]run, 2*n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			results[i] = runGuest(t, b, plugin, sandbox.Spec{Args: []string{"hello", fmt.Sprintf("worker-%d", i)}})
		})
		wg.Go(func() {
			results[n+i] = runGuest(t, b, plugin, sandbox.Spec{Args: []string{"put", "/tmp/mine", fmt.Sprintf("worker-%d", i)}})
		})
	}
	wg.Wait()
	for i := range n {
		r := results[i]
		mustExit(t, r, 0)
		if want := fmt.Sprintf(`argv=["kubectl-hostile" "hello" "worker-%d"]`, i); !strings.Contains(r.stdout, want+"\n") || strings.Count(r.stdout, "worker-") != 1 {
			t.Errorf("run %d: want only %s: %s", i, want, r)
		}
		mustExit(t, results[n+i], 0)
	}
	if c, _ := compiles(b); c != 1 {
		t.Errorf("%d compiles for %d runs of one module", c, 2*n)
	}
}

// TestClose: Close while a guest runs lets Run return (the guest's call
// ending ends it, if Close does not), returns itself, and a Run or a
// Prepare after it is a clear error.
func TestClose(t *testing.T) {
	t.Parallel()
	b, err := wasm.New(context.Background(), wasm.Config{CacheDir: sharedCache, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	plugin := hostileGuest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	running := make(chan run, 1)
	looping := &signalWriter{first: make(chan struct{})}
	go func() {
		res, err := b.Run(ctx, sandbox.Spec{Plugin: plugin, Args: []string{"loop"}, Stdout: looping})
		running <- run{res: res, err: err}
	}()
	select {
	case <-looping.first: // the guest printed "looping"
	case r := <-running:
		t.Fatalf("the guest did not get to its loop: %s", r)
	case <-time.After(30 * time.Second):
		t.Fatal("the guest did not get to its loop")
	}
	closed := make(chan error, 1)
	go func() { closed <- b.Close() }()

	// Close ends the guest itself: its call's context never ends.
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not end the running guest")
	}
	select {
	case r := <-running:
		if r.err != nil || r.res.ExitCode == 0 {
			t.Errorf("want the running guest stopped: %s", r)
		}
		t.Logf("the running guest ended: %s", r)
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after Close")
	}
	assertStateEmpty(t, b, "")

	_, err = b.Run(context.Background(), sandbox.Spec{Plugin: plugin, Args: []string{"hello"}})
	if err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Run after Close: want an error saying the sandbox is closed, got %v", err)
	}
	if err := b.Prepare(context.Background(), plugin); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("Prepare after Close: want an error saying the sandbox is closed, got %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("a second Close: %v", err)
	}
}

// signalWriter closes first on the first write to it.
type signalWriter struct {
	once  sync.Once
	first chan struct{}
}

func (s *signalWriter) Write(p []byte) (int, error) {
	s.once.Do(func() { close(s.first) })
	return len(p), nil
}
