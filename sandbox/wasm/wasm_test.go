package wasm_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// sharedCache is the compilation cache folder every backend of the test
// binary shares (but the disk-cache test's), so that the hostile guest,
// some 15 MB of Go, is compiled cold at most once per machine.
var sharedCache = func() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = os.TempDir()
	}
	return filepath.Join(dir, "kubernetes-mcp-server", "wasm-test-cache")
}()

var (
	warmOnce sync.Once
	warmErr  error
)

// hostileGuest builds testdata/hostile for wasip1 once per test binary, as
// kubectl-hostile.wasm, and compiles it once into the shared cache, so
// that tests running in parallel do not all compile it cold at once.
func hostileGuest(t testing.TB) string {
	t.Helper()
	plugin := testenv.WasmGuest(t, "sandbox/wasm/testdata/hostile", "hostile")
	warmOnce.Do(func() {
		b, err := wasm.New(context.Background(), wasm.Config{CacheDir: sharedCache})
		if err != nil {
			warmErr = err
			return
		}
		defer b.Close()
		warmErr = b.Prepare(context.Background(), plugin)
	})
	if warmErr != nil {
		t.Fatalf("compile the hostile guest: %v", warmErr)
	}
	return plugin
}

// hung holds the backends a test saw hang in Run: closing one would wait
// for ever.
var hung sync.Map

// newBackend starts a backend with the shared compilation cache and a
// StateDir of the test's own, unless cfg sets them, and closes it when the
// test ends.
func newBackend(t testing.TB, cfg wasm.Config) *wasm.Backend {
	t.Helper()
	if cfg.CacheDir == "" {
		cfg.CacheDir = sharedCache
	}
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	b, err := wasm.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if _, ok := hung.Load(b); ok {
			return
		}
		if err := b.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
		assertStateEmpty(t, b, "")
	})
	return b
}

type run struct {
	res            sandbox.Result
	err            error
	stdout, stderr string
	took           time.Duration
}

func (r run) String() string {
	return fmt.Sprintf("result %+v, error %v, took %s\nstdout:\n%s\nstderr:\n%s", r.res, r.err, r.took, clip(r.stdout), clip(r.stderr))
}

func clip(s string) string {
	if len(s) > 2000 {
		return s[:1000] + fmt.Sprintf("\n[... %d bytes ...]\n", len(s)-2000) + s[len(s)-1000:]
	}
	return s
}

// runGuest runs plugin with a generous deadline; see runCtx.
func runGuest(t testing.TB, b *wasm.Backend, plugin string, spec sandbox.Spec) run {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	return runCtx(t, ctx, b, plugin, spec, 70*time.Second)
}

// runCtx runs plugin under ctx, fails the test if Run has not returned
// within bound (a hang: the backend is then left unclosed), and checks
// that the call left nothing in the backend's StateDir, however it ended.
func runCtx(t testing.TB, ctx context.Context, b *wasm.Backend, plugin string, spec sandbox.Spec, bound time.Duration) run {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if spec.Stdout == nil {
		spec.Stdout = &stdout
	}
	if spec.Stderr == nil {
		spec.Stderr = &stderr
	}
	spec.Plugin = plugin
	// A call id of the run's own names its folder, kmcp-wasm-ID-RANDOM,
	// so that runs in parallel on one backend can each check their own.
	spec.ID = fmt.Sprintf("%s-%d", spec.ID, runs.Add(1))
	done := make(chan run, 1)
	start := time.Now()
	go func() {
		res, err := b.Run(ctx, spec)
		done <- run{res: res, err: err, took: time.Since(start)}
	}()
	var r run
	select {
	case r = <-done:
	case <-time.After(bound):
		hung.Store(b, true)
		t.Fatalf("Run of %q did not return within %s", spec.Args, bound)
	}
	// Output is read only once Run has returned: the guest writes to it.
	r.stdout, r.stderr = stdout.String(), stderr.String()
	assertStateEmpty(t, b, "kmcp-wasm-"+spec.ID+"-")
	return r
}

var runs atomic.Int64

// assertStateEmpty checks that no call's folder whose name starts with
// prefix is left in b's StateDir.
func assertStateEmpty(t testing.TB, b *wasm.Backend, prefix string) {
	t.Helper()
	entries, err := os.ReadDir(b.Config().StateDir)
	if err != nil {
		t.Fatalf("read StateDir: %v", err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("StateDir keeps %s after the run", e.Name())
		}
	}
}

// mustExit checks that a run ended by itself with code, without error.
func mustExit(t testing.TB, r run, code int) {
	t.Helper()
	if r.err != nil || r.res.Stopped || r.res.ExitCode != code {
		t.Fatalf("want exit code %d, got %s", code, r)
	}
}

// assertServes checks that b still runs a guest normally.
func assertServes(t testing.TB, b *wasm.Backend) {
	t.Helper()
	r := runGuest(t, b, hostileGuest(t), sandbox.Spec{ID: "after", Args: []string{"hello", "still-here"}})
	mustExit(t, r, 0)
	if !strings.Contains(r.stdout, `"still-here"`) {
		t.Fatalf("the backend no longer serves a normal run: %s", r)
	}
}

// cluster is a ClusterAccess whose in-process gateway is h.
func cluster(h http.Handler) *sandbox.ClusterAccess {
	return &sandbox.ClusterAccess{
		Handler: h,
		Kubeconfig: func(addr string) *clientcmdapi.Config {
			c := clientcmdapi.NewConfig()
			c.Clusters["gateway"] = &clientcmdapi.Cluster{Server: addr}
			c.AuthInfos["none"] = &clientcmdapi.AuthInfo{}
			c.Contexts["gateway"] = &clientcmdapi.Context{Cluster: "gateway", AuthInfo: "none"}
			c.CurrentContext = "gateway"
			return c
		},
	}
}

func TestHello(t *testing.T) {
	t.Parallel()
	b := newBackend(t, wasm.Config{})
	r := runGuest(t, b, hostileGuest(t), sandbox.Spec{ID: "c1", Args: []string{"hello", "a b", "--x=1"}, Env: []string{"LANG=C.UTF-8"}})
	if r.err != nil || r.res.ExitCode != 0 {
		t.Fatalf("run: %v %+v\n%s\n%s", r.err, r.res, r.stdout, r.stderr)
	}
	t.Log(r.stdout)
	for _, want := range []string{`argv=["kubectl-hostile" "hello" "a b" "--x=1"]`, `"HOME=/tmp"`, `"LANG=C.UTF-8"`} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stdout lacks %s:\n%s", want, r.stdout)
		}
	}
}

// TestEnvironment checks that a guest gets the profile's environment and
// nothing of the server's.
func TestEnvironment(t *testing.T) {
	t.Setenv("KMCP_SERVER_SECRET", "server-only")
	b := newBackend(t, wasm.Config{})
	plugin := hostileGuest(t)
	for _, tc := range []struct {
		name    string
		cluster *sandbox.ClusterAccess
		want    string
	}{
		{"no cluster", nil, `env=["HOME=/tmp" "TMPDIR=/tmp" "LANG=C"]`},
		{"cluster", cluster(http.NotFoundHandler()), `env=["HOME=/tmp" "TMPDIR=/tmp" "KUBECONFIG=/run/kube/config" "LANG=C"]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runGuest(t, b, plugin, sandbox.Spec{Args: []string{"hello"}, Env: []string{"LANG=C"}, Cluster: tc.cluster})
			mustExit(t, r, 0)
			if !strings.Contains(r.stdout, tc.want+"\n") || strings.Contains(r.stdout, "server-only") {
				t.Fatalf("want %s, got %s", tc.want, r)
			}
		})
	}
}

func TestStdin(t *testing.T) {
	t.Parallel()
	b := newBackend(t, wasm.Config{})
	r := runGuest(t, b, hostileGuest(t), sandbox.Spec{Args: []string{"stdin"}, Stdin: strings.NewReader("abc")})
	mustExit(t, r, 0)
	if r.stdout != "read 3 bytes: ABC" {
		t.Fatalf("stdout: %s", r)
	}
	r = runGuest(t, b, hostileGuest(t), sandbox.Spec{Args: []string{"stdin"}})
	mustExit(t, r, 0)
	if r.stdout != "read 0 bytes: " {
		t.Fatalf("a nil Stdin is not empty: %s", r)
	}
}
