package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/containerd"
	tasksapi "github.com/containerd/containerd/api/services/tasks/v1"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/snapshots"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/internal/netns"
)

// After 200 calls, timeouts and cancellations among them, nothing of ours
// is left: no container, task or snapshot in containerd, no network
// namespace, mount, cgroup or call folder.
func TestNoLeaksAfter200Calls(t *testing.T) {
	testNoLeaksAfterCalls(t, IsolationRunc, 200)
}

// The same under gVisor, in a batch of 60 calls: nothing of runsc's either
// (its state files, its cgroups).
func TestGVisorNoLeaksAfter60Calls(t *testing.T) {
	testNoLeaksAfterCalls(t, IsolationGVisor, 60)
}

func testNoLeaksAfterCalls(t *testing.T, tier Isolation, calls int) {
	ctrd := testenv.TestContainerd(t)
	clusters := testenv.TestClusters(t)
	b := newTierBackend(t, ctrd, tier)
	quick, slow := plugin(t, `echo ok`), plugin(t, `trap '' TERM; sleep 30`)
	access := accessTo(t, clusters.All[0])

	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	work := make(chan int)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				ctx, cancel := context.WithCancel(context.Background())
				spec := sandbox.Spec{ID: fmt.Sprintf("leak-%d", i), Plugin: quick}
				if i%2 == 0 {
					spec.Cluster = access
				}
				kind := "ok"
				switch {
				case i%10 == 3: // a timeout
					ctx, cancel = context.WithTimeout(context.Background(), 300*time.Millisecond)
					spec.Plugin, kind = slow, "timeout"
				case i%10 == 7: // a cancellation
					spec.Plugin, kind = slow, "cancelled"
					time.AfterFunc(200*time.Millisecond, cancel)
				}
				r := runPlugin(t, b, ctx, spec)
				cancel()
				mu.Lock()
				switch {
				case r.err != nil:
					outcomes["error: "+r.err.Error()]++
				case kind == "ok" && r.res.ExitCode == 0 && r.stdout == "ok\n", kind != "ok" && r.res.Stopped:
					outcomes[kind]++
				default:
					outcomes[fmt.Sprintf("unexpected %s: %+v %q", kind, r.res, r.stdout)]++
				}
				mu.Unlock()
			}
		}()
	}
	for i := range calls {
		work <- i
	}
	close(work)
	wg.Wait()
	if tenth := calls / 10; outcomes["ok"] != calls-2*tenth || outcomes["timeout"] != tenth || outcomes["cancelled"] != tenth {
		t.Errorf("outcomes: %v", outcomes)
	}
	assertNothingLeft(t, b)
}

func assertNothingLeft(t *testing.T, b *Backend) {
	t.Helper()
	b.Quiesce()
	ctx := context.Background()
	if cs, err := b.client.Containers(ctx); err != nil || len(cs) != 0 {
		t.Errorf("containers left: %d (%v)", len(cs), err)
	}
	if tasks, err := b.client.TaskService().List(ctx, &tasksapi.ListTasksRequest{}); err != nil || len(tasks.Tasks) != 0 {
		t.Errorf("tasks left: %v (%v)", tasks, err)
	}
	snapshotCount := 0
	b.client.SnapshotService("overlayfs").Walk(ctx, func(context.Context, snapshots.Info) error { snapshotCount++; return nil })
	if snapshotCount != 0 {
		t.Errorf("snapshots left: %d", snapshotCount)
	}
	for _, dir := range []string{"netns", "calls"} {
		if entries, _ := os.ReadDir(filepath.Join(b.cfg.StateDir, dir)); len(entries) != 0 {
			t.Errorf("%s left in %s: %d", dir, b.cfg.StateDir, len(entries))
		}
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	state, _ := filepath.Abs(b.cfg.StateDir)
	if strings.Contains(string(mounts), state) {
		t.Errorf("mounts left under %s", state)
	}
	// runsc's own state files, under the shim's default root: what its
	// delete removes (runc's is checked through containerd's tasks).
	if entries, _ := os.ReadDir(filepath.Join("/run/containerd/runc", b.cfg.Namespace)); b.cfg.Isolation.gvisor() && len(entries) != 0 {
		t.Errorf("runtime state left in /run/containerd/runc/%s: %d entries", b.cfg.Namespace, len(entries))
	}
	for _, controller := range []string{"pids", "memory", "cpu", "devices", "freezer"} {
		entries, _ := os.ReadDir(filepath.Join("/sys/fs/cgroup", controller, b.cfg.Namespace))
		for _, e := range entries {
			if e.IsDir() && strings.HasPrefix(e.Name(), "kmcp-") {
				t.Errorf("cgroup left: %s/%s/%s", controller, b.cfg.Namespace, e.Name())
			}
		}
	}
}

// containerd stopped while a call runs: the call fails with a clear error,
// the backend survives, and once containerd is back the next call works
// and what the failed call left is removed.
func TestContainerdStoppedDuringACall(t *testing.T) {
	ctrd := testenv.NewContainerd(t)
	b := newBackend(t, ctrd)
	done := make(chan run)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		done <- runPlugin(t, b, ctx, sandbox.Spec{Plugin: plugin(t, `sleep 5`)})
	}()
	time.Sleep(time.Second)
	ctrd.Kill()
	var r run
	select {
	case r = <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the call did not end within 20s of containerd going away")
	}
	if r.err == nil || !strings.Contains(r.err.Error(), "sandbox") {
		t.Errorf("call while containerd went away: %v %+v", r.err, r.res)
	}
	t.Logf("the call ended with: %v", r.err)

	if err := ctrd.Start(); err != nil {
		t.Fatal(err)
	}
	var next run
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if next = runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: plugin(t, `echo back`)}); next.err == nil {
			break
		}
	}
	if next.err != nil || next.stdout != "back\n" {
		t.Fatalf("after containerd came back: %v %+v %q", next.err, next.res, next.stdout)
	}
	// The next call retries the removal the failed one could not do.
	runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: plugin(t, `true`)})
	assertNothingLeft(t, b)
}

// A server that crashed leaves containers, a network namespace, a call
// folder and cgroups; the next backend to start removes them.
func TestStartupSweepsLeftovers(t *testing.T) {
	ctrd := testenv.NewContainerd(t)
	first := newBackend(t, ctrd)
	// A crash mid-call: the container and task exist, the server is gone.
	call := first.cfg.CallFor("kmcp-crashed", plugin(t, "sleep 60"), nil, nil, false)
	if err := os.MkdirAll(call.LaunchDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeLaunch(call); err != nil {
		t.Fatal(err)
	}
	spec, err := Spec(context.Background(), first.cfg.Namespace, call)
	if err != nil {
		t.Fatal(err)
	}
	c, err := first.client.NewContainer(context.Background(), "kmcp-crashed", containerd.WithSpec(spec),
		containerd.WithContainerLabels(map[string]string{LabelOwner: ownerValue}),
		containerd.WithRuntime(first.cfg.Runtime, nil))
	if err != nil {
		t.Fatal(err)
	}
	task, err := c.NewTask(context.Background(), cio.NullIO)
	if err != nil {
		t.Fatal(err)
	}
	if err := task.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ns, err := netns.New(filepath.Join(first.cfg.StateDir, "netns"), "kmcp-crashed")
	if err != nil {
		t.Fatal(err)
	}
	_ = ns // never closed: the crash
	os.MkdirAll(filepath.Join(first.cfg.StateDir, "calls", "kmcp-crashed"), 0o711)
	// A sandbox whose runtime died with its containerd: containerd forgot
	// it, its cgroups stay.
	for _, controller := range []string{"pids", "memory", "cpu", "devices", "freezer"} {
		if err := os.MkdirAll(filepath.Join("/sys/fs/cgroup", controller, first.cfg.Namespace, "kmcp-forgotten"), 0o755); err != nil {
			t.Fatal(err)
		}
	}

	second := newBackend(t, ctrd)
	assertNothingLeft(t, second)
}

// A backend made without Sweep, as the commands run beside a server make
// theirs, leaves the server's live sandboxes alone.
func TestOnlyTheServerSweeps(t *testing.T) {
	ctrd := testenv.NewContainerd(t)
	server := newBackend(t, ctrd)
	done := make(chan run)
	go func() {
		done <- runPlugin(t, server, context.Background(), sandbox.Spec{Plugin: plugin(t, `sleep 2; echo survived`)})
	}()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if cs, _ := server.client.Containers(context.Background()); len(cs) == 1 {
			break
		}
	}
	cfg := server.cfg
	cfg.Sweep = false
	command, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	command.Close()
	if r := <-done; r.err != nil || r.stdout != "survived\n" {
		t.Fatalf("the server's call after a command started beside it: %v %+v %q", r.err, r.res, r.stdout)
	}
}
