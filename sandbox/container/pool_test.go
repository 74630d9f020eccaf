package container

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// newPoolBackend is a tier's backend with a warm pool of size, in a
// containerd namespace and state folder of its own.
func newPoolBackend(t *testing.T, tier Isolation, size int) *Backend {
	t.Helper()
	cfg := testConfigFor(t, testenv.TestContainerd(t), tier)
	cfg.Namespace += "-pool"
	cfg.StateDir += "-pool"
	cfg.WarmPool = size
	return newBackendFrom(t, cfg)
}

// A warm call runs exactly as a cold one: argv, environment, stdin,
// output, exit code and the cluster; the pool refills after each call.
func TestWarmCallsRunAsColdOnes(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testWarmCallsRunAsColdOnes(t, tier) })
	}
}

func testWarmCallsRunAsColdOnes(t *testing.T, tier Isolation) {
	b := newPoolBackend(t, tier, 2)
	cluster := testenv.TestClusters(t).All[0]
	self := plugin(t, `printf '%s|' "$0" "$@"; echo "LANG=$LANG KUBECONFIG=$KUBECONFIG"; cat; kubectl get ns `+cluster.Namespace+` -o name; exit 3`)
	want := "/plugin/kubectl-fixture|a b|$(id)|LANG=C.UTF-8 KUBECONFIG=/run/kube/config\nfrom stdin\nnamespace/" + cluster.Namespace + "\n"
	for i := range 4 {
		r := runPlugin(t, b, context.Background(), sandbox.Spec{KeepWarm: true, Plugin: self, Args: []string{"a b", "$(id)"}, Env: []string{"LANG=C.UTF-8"},
			Stdin: strings.NewReader("from stdin\n"), Cluster: accessTo(t, cluster)})
		if r.err != nil || r.res.ExitCode != 3 || r.stdout != want {
			t.Fatalf("call %d: %v %+v\nstdout %q\nstderr %q", i, r.err, r.res, r.stdout, r.stderr)
		}
		if r.res.Warm != (i > 0) {
			t.Errorf("call %d: warm %v", i, r.res.Warm)
		}
		b.Quiesce()
		if n := b.Warm(); n != 2 {
			t.Fatalf("after call %d: %d warm containers, want 2", i, n)
		}
	}
	// Without stdin or a cluster: another pool, the same promises.
	bare := plugin(t, `cat; echo "KUBECONFIG=$KUBECONFIG"`)
	for i := range 2 {
		b.Quiesce()
		r := runPlugin(t, b, context.Background(), sandbox.Spec{KeepWarm: true, Plugin: bare})
		if r.err != nil || r.res.ExitCode != 0 || r.stdout != "KUBECONFIG=/dev/null\n" || r.res.Warm != (i > 0) {
			t.Fatalf("call %d without stdin: %v %+v %q", i, r.err, r.res, r.stdout)
		}
	}
	b.pool.Close()
	assertNothingLeft(t, b)
}

// A warm container serves one call and goes: nothing one call leaves in
// its container (a file, a process) is there for the next.
func TestWarmContainersServeOneCall(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testWarmContainersServeOneCall(t, tier) })
	}
}

func testWarmContainersServeOneCall(t *testing.T, tier Isolation) {
	b := newPoolBackend(t, tier, 1)
	self := plugin(t, `echo "files: $(ls /tmp)"; echo "processes: $(cat /proc/[0-9]*/comm | sort | tr '\n' ' ')"; touch /tmp/left-by-$1; (setsid sleep 300 &) ; echo started`)
	for i, name := range []string{"first", "second", "third"} {
		b.Quiesce()
		r := runPlugin(t, b, context.Background(), sandbox.Spec{KeepWarm: true, Plugin: self, Args: []string{name}})
		if r.err != nil || r.res.ExitCode != 0 {
			t.Fatalf("call %d: %v %+v %q %q", i, r.err, r.res, r.stdout, r.stderr)
		}
		lines := strings.Split(r.stdout, "\n")
		if lines[0] != "files: " || !strings.HasPrefix(lines[1], "processes: ") || !strings.Contains(lines[1], "kubectl-fixture") || strings.Contains(lines[1], "sleep") || r.res.Warm != (i > 0) {
			t.Errorf("call %d found what an earlier call left (warm %v):\n%s", i, r.res.Warm, r.stdout)
		}
	}
	b.pool.Close()
	assertNothingLeft(t, b)
}

// A plugin file replaced after its warm container was made runs as it is
// now: the stale container is removed, the call takes the cold path.
func TestAReplacedPluginIsNotRunFromTheWarmPool(t *testing.T) {
	b := newPoolBackend(t, IsolationRunc, 1)
	self := plugin(t, `echo old`)
	if r := runPlugin(t, b, context.Background(), sandbox.Spec{KeepWarm: true, Plugin: self}); r.stdout != "old\n" {
		t.Fatalf("%+v", r)
	}
	b.Quiesce()
	tmp := filepath.Join(filepath.Dir(self), "new")
	if err := os.WriteFile(tmp, []byte("#!/bin/bash\necho new\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, self); err != nil {
		t.Fatal(err)
	}
	r := runPlugin(t, b, context.Background(), sandbox.Spec{KeepWarm: true, Plugin: self})
	if r.err != nil || r.stdout != "new\n" || r.res.Warm {
		t.Fatalf("after the file changed: %v %+v %q", r.err, r.res, r.stdout)
	}
	b.pool.Close()
	assertNothingLeft(t, b)
}

// More calls at once than the pool holds: the rest take the cold path,
// none fails.
func TestAnEmptyPoolFallsBackToTheColdPath(t *testing.T) {
	b := newPoolBackend(t, IsolationRunc, 1)
	self := plugin(t, `sleep 0.2; echo "ran $1"`)
	runPlugin(t, b, context.Background(), sandbox.Spec{KeepWarm: true, Plugin: self, Args: []string{"warm-up"}})
	b.Quiesce()
	var wg sync.WaitGroup
	var mu sync.Mutex
	warm := 0
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := runPlugin(t, b, context.Background(), sandbox.Spec{KeepWarm: true, Plugin: self, Args: []string{string(rune('a' + i))}})
			if r.err != nil || r.stdout != "ran "+string(rune('a'+i))+"\n" {
				t.Errorf("call %d: %v %+v %q", i, r.err, r.res, r.stdout)
			}
			mu.Lock()
			if r.res.Warm {
				warm++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	if warm != 1 {
		t.Errorf("%d of 6 calls were warm, want the pool's 1", warm)
	}
	b.pool.Close()
	assertNothingLeft(t, b)
}
