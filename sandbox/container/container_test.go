package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/containerd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

func rootfs(t testing.TB) string {
	t.Helper()
	root, err := images.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(root, "hack", "build-image.sh")).Output()
	if err != nil {
		t.Fatalf("build the sandbox image: %v", err)
	}
	return strings.TrimSpace(string(out))
}

var testLimits = Limits{MemoryMiB: 128, Pids: 32, CPUMillicores: 1000, NoFile: 256, TmpMiB: 8}

func testConfig(t testing.TB, ctrd *testenv.Containerd) Config {
	t.Helper()
	return testConfigFor(t, ctrd, IsolationRunc)
}

// testConfigFor is the test configuration of an isolation tier. Each tier
// has a containerd namespace and state folder of its own, so one tier's
// sweep or leak check never sees the other's sandboxes.
func testConfigFor(t testing.TB, ctrd *testenv.Containerd, tier Isolation) Config {
	t.Helper()
	cfg := Config{
		Address:   ctrd.Address,
		Namespace: ctrd.Namespace,
		Runtime:   "io.containerd.runc.v2",
		Rootfs:    rootfs(t),
		StateDir:  filepath.Join(ctrd.State, "..", "kmcp-state"),
		User:      65534,
		Limits:    testLimits,
		Sweep:     true,
		Isolation: tier,
	}
	if tier == IsolationGVisor {
		cfg.Namespace += "-gvisor"
		cfg.StateDir += "-gvisor"
		cfg.RunscBinary = testenv.Runsc(t)
	}
	return cfg
}

// tiers are the isolation tiers the tests of promises both keep run under.
var tiers = []Isolation{IsolationRunc, IsolationGVisor}

// newTierBackend is a backend of an isolation tier on ctrd.
func newTierBackend(t testing.TB, ctrd *testenv.Containerd, tier Isolation) *Backend {
	t.Helper()
	return newBackendFrom(t, testConfigFor(t, ctrd, tier))
}

func newBackend(t testing.TB, ctrd *testenv.Containerd) *Backend {
	t.Helper()
	return newBackendFrom(t, testConfig(t, ctrd))
}

func newBackendFrom(t testing.TB, cfg Config) *Backend {
	t.Helper()
	b, err := New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// plugin writes a fixture plugin on the host, as a root-owned file.
func plugin(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubectl-fixture")
	if err := os.WriteFile(path, []byte("#!/bin/bash\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

type run struct {
	res            sandbox.Result
	stdout, stderr string
	err            error
}

func runPlugin(t testing.TB, b *Backend, ctx context.Context, spec sandbox.Spec) run {
	t.Helper()
	var out, errOut bytes.Buffer
	spec.Stdout, spec.Stderr = &out, &errOut
	if spec.ID == "" {
		spec.ID = "test"
	}
	res, err := b.Run(ctx, spec)
	return run{res, out.String(), errOut.String(), err}
}

// Under each tier the plugin runs as uid/gid 65534 with no capabilities,
// no_new_privs and containerd's default seccomp profile enforced (it
// refuses personality(ADDR_NO_RANDOMIZE), which both kernels would
// otherwise answer), its open-files limit, argv unchanged and a minimal
// environment; gVisor's kernel is the one that answers under gvisor.
func TestIdentityAndPrivileges(t *testing.T) {
	ctrd := testenv.TestContainerd(t)
	release, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		t.Fatal(err)
	}
	hostKernel := "kernel=" + strings.TrimSpace(string(release)) + "\n"
	for _, tc := range []struct {
		tier       Isolation
		want, lack []string
	}{
		// gVisor's /proc/self/status has no NoNewPrivs line: prctl says it.
		// Its kernel calls itself 4.4.0.
		{IsolationRunc, []string{"NoNewPrivs:\t1", hostKernel}, nil},
		{IsolationGVisor, []string{"kernel=4.4.0\n"}, []string{hostKernel}},
	} {
		t.Run(string(tc.tier), func(t *testing.T) {
			b := newTierBackend(t, ctrd, tc.tier)
			r := runPlugin(t, b, context.Background(), sandbox.Spec{
				Plugin: plugin(t, `id -u; id -g; id -G; grep -E '^(CapEff|CapPrm|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status
perl -e 'print "nnp=", syscall(157, 39, 0, 0, 0, 0), "\n"; print syscall(135, 0x0040000) == -1 ? "personality: $!\n" : "personality allowed\n"'
echo "nofile=$(ulimit -n)"; echo "kernel=$(uname -r)"; echo "args:$*"; env | sort; hostname; exit 7`),
				Args: []string{"a b", "$(id)"},
				Env:  []string{"LANG=C.UTF-8"},
			})
			if r.err != nil {
				t.Fatal(r.err)
			}
			for _, want := range append([]string{"65534\n65534\n65534\n", "CapEff:\t0000000000000000", "CapPrm:\t0000000000000000",
				"CapBnd:\t0000000000000000", "Seccomp:\t2", "nnp=1", "personality: Operation not permitted", "nofile=256",
				"args:a b $(id)", "HOME=/tmp", "KUBECONFIG=/dev/null", "sandbox\n"}, tc.want...) {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("output lacks %q:\n%s", want, r.stdout)
				}
			}
			for _, lack := range tc.lack {
				if strings.Contains(r.stdout, lack) {
					t.Errorf("output has %q:\n%s", lack, r.stdout)
				}
			}
			if r.res.ExitCode != 7 {
				t.Errorf("exit code %d, want 7", r.res.ExitCode)
			}
			if strings.Contains(r.stdout, "CONTAINERD") || len(strings.Split(strings.TrimSpace(r.stdout), "\n")) > 24 {
				t.Errorf("the environment has more than it should:\n%s", r.stdout)
			}
		})
	}
}

// A hostile plugin can read no host file, write nowhere but /tmp, and
// reach nothing on the network.
func TestHostilePluginIsContained(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testHostilePluginIsContained(t, tier) })
	}
}

func testHostilePluginIsContained(t *testing.T, tier Isolation) {
	ctrd := testenv.TestContainerd(t)
	clusters := testenv.TestClusters(t)
	b := newTierBackend(t, ctrd, tier)

	canary := filepath.Join(t.TempDir(), "server-config.toml")
	os.WriteFile(canary, []byte("canary-7d1f"), 0o644)
	otherKubeconfig := filepath.Join(clusters.KubeconfigDir, "beta.yaml")

	hostListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hostListener.Close()
	var accepted atomic.Int32
	go func() {
		for {
			c, err := hostListener.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			c.Close()
		}
	}()
	hostPort := hostListener.Addr().(*net.TCPAddr).Port
	beta := strings.TrimPrefix(clusters.All[1].Server, "https://")

	self := plugin(t, fmt.Sprintf(`
cat %[1]q && echo "READ %[1]s"
cat %[2]q && echo "READ %[2]s"
echo x > /escape && echo "WROTE /"
echo x > /usr/escape && echo "WROTE /usr"
echo x > "$0" && echo "WROTE plugin"
echo x > /etc/passwd && echo "WROTE passwd"
echo x > /tmp/ok && echo "WROTE tmp"
(exec 3<>/dev/tcp/127.0.0.1/%[3]d) 2>/dev/null && echo "REACHED host port"
(exec 3<>/dev/tcp/%[4]s) 2>/dev/null && echo "REACHED beta"
(exec 3<>/dev/tcp/%[4]s) 2>/dev/null && echo "REACHED beta"
sed -n '3,$s/:.*//p' /proc/net/dev | tr -d ' '
exit 0`, canary, otherKubeconfig, hostPort, strings.Replace(beta, ":", "/", 1)))
	before, _ := os.ReadFile(self)
	r := runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: self, Cluster: accessTo(t, clusters.All[0])})
	if r.err != nil {
		t.Fatal(r.err)
	}
	for _, leak := range []string{"canary-7d1f", "READ", "WROTE /", "WROTE plugin", "WROTE passwd", "REACHED", clusters.All[0].Token, clusters.All[1].Token} {
		if strings.Contains(r.stdout, leak) {
			t.Errorf("contained plugin did %q:\n%s\n%s", leak, r.stdout, r.stderr)
		}
	}
	if !strings.Contains(r.stdout, "WROTE tmp") {
		t.Errorf("the plugin could not write its /tmp:\n%s\n%s", r.stdout, r.stderr)
	}
	if strings.TrimSpace(lastLine(r.stdout)) != "lo" {
		t.Errorf("interfaces in the sandbox: %q, want only lo", lastLine(r.stdout))
	}
	if after, _ := os.ReadFile(self); !bytes.Equal(before, after) {
		t.Error("the plugin changed its own file on the host")
	}
	for _, p := range []string{"/escape", "/usr/escape"} {
		if _, err := os.Stat(filepath.Join(b.cfg.Rootfs, p)); err == nil {
			t.Errorf("%s was written into the image", p)
		}
	}
	if n := accepted.Load(); n != 0 {
		t.Errorf("the host listener accepted %d connections from the sandbox", n)
	}
	// Not even the runtime writes into the shared image (mount points included).
	for _, dir := range []string{"plugin", "run/kube"} {
		if entries, _ := os.ReadDir(filepath.Join(b.cfg.Rootfs, dir)); len(entries) != 0 {
			t.Errorf("the image's /%s has %d entries after a call", dir, len(entries))
		}
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// accessTo serves a real API gateway for the cluster, allowing every
// request, as the runtime does for a call (with its policy instead).
func accessTo(t testing.TB, c *testenv.Cluster) *sandbox.ClusterAccess {
	t.Helper()
	gw, err := gateway.New(gateway.Config{
		CallID: "test", Plugin: "test", Cluster: c.Name, Upstream: c.REST,
		Decide: func(gateway.Request) gateway.Decision { return gateway.Decision{Allowed: true, Rule: "test"} },
		Audit:  func(gateway.Record) {},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	return &sandbox.ClusterAccess{Serve: gw.Serve, Kubeconfig: gw.Kubeconfig}
}

// Through the sandbox, the real kubens and kubectl reach the target
// cluster, and only that one.
func TestKubensReachesOnlyItsCluster(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testKubensReachesOnlyItsCluster(t, tier) })
	}
}

func testKubensReachesOnlyItsCluster(t *testing.T, tier Isolation) {
	clusters := testenv.TestClusters(t)
	b := newTierBackend(t, testenv.TestContainerd(t), tier)
	kubens, err := exec.LookPath("kubens")
	if err != nil {
		t.Fatal(err)
	}
	kubens, _ = filepath.EvalSymlinks(kubens)
	for _, target := range clusters.All {
		r := runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: kubens, Cluster: accessTo(t, target)})
		if r.err != nil || r.res.ExitCode != 0 {
			t.Fatalf("kubens on %s: %v %+v\n%s\n%s", target.Name, r.err, r.res, r.stdout, r.stderr)
		}
		for _, other := range clusters.All {
			if strings.Contains(r.stdout, other.Namespace) != (other.Name == target.Name) {
				t.Errorf("kubens on %s:\n%s", target.Name, r.stdout)
			}
		}
	}
	// The kubeconfig the plugin holds names the in-namespace forwarder.
	r := runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: plugin(t, `cat "$KUBECONFIG"`), Cluster: accessTo(t, clusters.All[0])})
	if !strings.Contains(r.stdout, "server: https://127.0.0.1:") || strings.Contains(r.stdout, clusters.All[0].Server) {
		t.Errorf("kubeconfig in the sandbox:\n%s", r.stdout)
	}
	// It holds no secret: the gateway adds the credentials.
	for _, secret := range []string{clusters.All[0].Token, "token", "password", "client-key", "exec", "auth-provider"} {
		if strings.Contains(r.stdout, secret) {
			t.Errorf("the sandbox's kubeconfig contains %q:\n%s", secret, r.stdout)
		}
	}
}

func TestLimits(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testLimitsHold(t, tier) })
	}
}

// Under both tiers the limits hold as the plugin sees them. Under gVisor
// the fork is refused by its kernel's RLIMIT_NPROC, and past the memory
// limit the whole sandbox is killed, gVisor's kernel with it.
func testLimitsHold(t *testing.T, tier Isolation) {
	b := newTierBackend(t, testenv.TestContainerd(t), tier)
	ctx := context.Background()

	// Forking stops at the pids limit: the kernel refuses the 33rd process
	// (bash then retries, so the call is ended by its time limit).
	forkCtx, cancelFork := context.WithTimeout(ctx, 5*time.Second)
	r := runPlugin(t, b, forkCtx, sandbox.Spec{Plugin: plugin(t, `for i in $(seq 100); do sleep 30 & done; wait`)})
	cancelFork()
	if r.err != nil || !strings.Contains(r.stderr, "fork: retry: Resource temporarily unavailable") {
		t.Errorf("fork loop under a limit of %d: %v %+v\n%s", testLimits.Pids, r.err, r.res, r.stderr)
	}

	// Allocating past the memory limit gets the plugin killed.
	r = runPlugin(t, b, ctx, sandbox.Spec{Plugin: plugin(t, `head -c 400M /dev/zero | tail > /dev/null; echo "survived $?"`)})
	if r.err != nil || strings.Contains(r.stdout, "survived 0") {
		t.Errorf("allocation past %d MiB: %v %+v\n%s\n%s", testLimits.MemoryMiB, r.err, r.res, r.stdout, r.stderr)
	}

	// /tmp holds tmp_mib, and /dev/shm runs nothing.
	r = runPlugin(t, b, ctx, sandbox.Spec{Plugin: plugin(t, fmt.Sprintf(`head -c %dM /dev/zero > /tmp/fill; echo "tmp $?"; stat -c %%s /tmp/fill
cp /bin/true /dev/shm/true && /dev/shm/true; echo "shm exec $?"`, testLimits.TmpMiB+1))})
	if r.err != nil || !strings.Contains(r.stderr, "No space left on device") || !strings.Contains(r.stdout, "tmp 1\n") ||
		strings.Contains(r.stdout, fmt.Sprintf("%d\n", (testLimits.TmpMiB+1)<<20)) || !strings.Contains(r.stdout, "shm exec 126") {
		t.Errorf("/tmp past %d MiB, exec from /dev/shm: %v %+v\n%s\n%s", testLimits.TmpMiB, r.err, r.res, r.stdout, r.stderr)
	}

	// A plugin that ignores SIGTERM and sleeps past its time is killed.
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	start := time.Now()
	r = runPlugin(t, b, ctx, sandbox.Spec{Plugin: plugin(t, `trap '' TERM; sleep 60`)})
	if r.err != nil || !r.res.Stopped || time.Since(start) > 5*time.Second {
		t.Errorf("sleeper: %v %+v after %s", r.err, r.res, time.Since(start))
	}
}

// Standard input reaches the plugin, and its end is the plugin's EOF.
func TestStdin(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testStdin(t, tier) })
	}
}

func testStdin(t *testing.T, tier Isolation) {
	b := newTierBackend(t, testenv.TestContainerd(t), tier)
	input := strings.Repeat("manifest line\n", 20000) // larger than a pipe's buffer
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	r := runPlugin(t, b, ctx, sandbox.Spec{Plugin: plugin(t, `wc -c`), Stdin: strings.NewReader(input)})
	if r.err != nil || r.res.Stopped || strings.TrimSpace(r.stdout) != fmt.Sprint(len(input)) {
		t.Fatalf("%v %+v: %q %q", r.err, r.res, r.stdout, r.stderr)
	}
	r = runPlugin(t, b, ctx, sandbox.Spec{Plugin: plugin(t, `cat; echo done`)})
	if r.err != nil || r.stdout != "done\n" {
		t.Fatalf("without stdin: %v %+v: %q", r.err, r.res, r.stdout)
	}
}

// The spec containerd runs is exactly the one Spec computes for `profile
// show`: one source, not two.
func TestRunUsesTheProfileSpec(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testRunUsesTheProfileSpec(t, tier) })
	}
}

func testRunUsesTheProfileSpec(t *testing.T, tier Isolation) {
	ctrd := testenv.TestContainerd(t)
	clusters := testenv.TestClusters(t)
	b := newTierBackend(t, ctrd, tier)
	self := plugin(t, `sleep 3`)
	done := make(chan run)
	go func() {
		done <- runPlugin(t, b, context.Background(), sandbox.Spec{ID: "profile-check", Plugin: self, Args: []string{"x"},
			Env: []string{"LANG=C.UTF-8"}, Cluster: accessTo(t, clusters.All[0])})
	}()
	var running []containerd.Container
	for deadline := time.Now().Add(10 * time.Second); len(running) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		running, _ = b.client.Containers(context.Background(), fmt.Sprintf("labels.%q==%s", LabelOwner, ownerValue))
	}
	if len(running) != 1 {
		t.Fatalf("%d containers of the call", len(running))
	}
	got, err := running[0].Spec(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want, err := Spec(context.Background(), b.cfg.Namespace, b.cfg.CallFor(running[0].ID(), self, []string{"x"}, []string{"LANG=C.UTF-8"}, true))
	if err != nil {
		t.Fatal(err)
	}
	gotJSON, _ := json.MarshalIndent(got, "", " ")
	wantJSON, _ := json.MarshalIndent(want, "", " ")
	if !bytes.Equal(gotJSON, wantJSON) {
		t.Errorf("the running spec differs from the profile's:\nrunning %s\nprofile %s", gotJSON, wantJSON)
	}
	if r := <-done; r.err != nil || r.res.ExitCode != 0 {
		t.Errorf("%v %+v", r.err, r.res)
	}
}

// When the call's API gateway stops with an error, at once or while the
// plugin runs, Run says so, wrapping the cause, so the call's result does.
func TestAGatewayThatStopsFailsTheCall(t *testing.T) {
	b := newBackend(t, testenv.TestContainerd(t))
	broken := errors.New("listener broke")
	kubeconfig := func(addr string) *clientcmdapi.Config {
		c := clientcmdapi.NewConfig()
		c.Clusters["gw"] = &clientcmdapi.Cluster{Server: "https://" + addr}
		c.Contexts["gw"] = &clientcmdapi.Context{Cluster: "gw"}
		c.CurrentContext = "gw"
		return c
	}
	for _, tc := range []struct {
		name  string
		serve func(l net.Listener) error
		body  string
	}{
		{"at once", func(l net.Listener) error { l.Close(); return broken }, `echo ran`},
		{"while the plugin runs", func(l net.Listener) error {
			time.Sleep(300 * time.Millisecond)
			l.Close()
			return broken
		}, `sleep 2; echo ran`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: plugin(t, tc.body),
				Cluster: &sandbox.ClusterAccess{Serve: tc.serve, Kubeconfig: kubeconfig}})
			if !errors.Is(r.err, broken) || !strings.Contains(r.err.Error(), "the call's API gateway stopped") {
				t.Errorf("Run returned %v %+v, want the gateway's failure", r.err, r.res)
			}
			assertNothingLeft(t, b)
		})
	}
	// A gateway that returns nil once its listener is closed is no failure.
	r := runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: plugin(t, `echo ran`), Cluster: &sandbox.ClusterAccess{
		Serve: func(l net.Listener) error {
			for {
				if _, err := l.Accept(); err != nil {
					return nil
				}
			}
		},
		Kubeconfig: kubeconfig,
	}})
	if r.err != nil || r.stdout != "ran\n" {
		t.Errorf("with a gateway that stops normally: %v %+v %q", r.err, r.res, r.stdout)
	}
}

// RunTimeout counts from the plugin's start, not the sandbox's set-up, and
// kills the plugin when it passes.
func TestRunTimeoutStopsThePlugin(t *testing.T) {
	for _, tier := range tiers {
		t.Run(string(tier), func(t *testing.T) { testRunTimeoutStopsThePlugin(t, tier) })
	}
}

func testRunTimeoutStopsThePlugin(t *testing.T, tier Isolation) {
	b := newTierBackend(t, testenv.TestContainerd(t), tier)
	start := time.Now()
	r := runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: plugin(t, "trap '' TERM; echo started; sleep 30"), RunTimeout: 500 * time.Millisecond})
	if r.err != nil || !r.res.Stopped || r.res.ExitCode != -1 || r.stdout != "started\n" {
		t.Fatalf("run %+v", r)
	}
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("stopped after %s", took)
	}
}
