package escape

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

func TestMain(m *testing.M) {
	// The leak checks count wasm call folders in the temporary folder.
	code := testenv.RunWithPrivateTemp(m)
	if err := writeReport(os.Getenv("KMCP_SECURITY_REPORT")); err != nil {
		fmt.Fprintln(os.Stderr, "security report:", err)
		code = 1
	}
	os.Exit(code)
}

// A tier is one isolation a plugin can run under.
type tier struct {
	name    string // in the report
	backend string // testenv.SandboxTOML's backend
	native  bool   // runs the linux build (else the wasip1 build)
	pod     bool   // runs as a Pod of the test node, not a container of the host's containerd
}

var tiers = []tier{
	{name: "runc", backend: "container", native: true},
	{name: "gvisor", backend: "gvisor", native: true},
	{name: "wasm", backend: "wasm"},
	{name: "kubernetes", backend: "kubernetes", native: true, pod: true},
}

// Host-side things the cases aim at, shared by every tier.
type targets struct {
	clusters      *testenv.Clusters
	canary        string // a host file no plugin may read
	canaryContent string
	tcp4, tcp6    string // host loopback listeners, outside every sandbox
	abstract      string // an abstract unix socket of the host's network namespace
	unixPath      string // a unix socket file on the host
	accepted      atomic.Int32
	sleeper       *exec.Cmd // a host process no plugin may signal
	secretValue   string    // data of the secret escape-canary in alpha's namespace
	kube          *kubernetes.Clientset
}

var (
	targetsOnce sync.Once
	shared      *targets
)

// Names the cases use in the cluster alpha.
const (
	victimPod    = "escape-victim"
	canarySecret = "escape-canary"
	lieConfigMap = "escape-lie"
)

func hostTargets(t *testing.T) *targets {
	t.Helper()
	targetsOnce.Do(func() { shared = newTargets(t) })
	if shared == nil {
		t.Fatal("the suite's host targets could not be set up")
	}
	return shared
}

func newTargets(t *testing.T) *targets {
	tg := &targets{clusters: testenv.TestClusters(t)}
	dir, err := os.MkdirTemp("", "kmcp-escape-")
	if err != nil {
		t.Fatal(err)
	}
	tg.canary = filepath.Join(dir, "server-secret.txt")
	tg.canaryContent = "canary-" + randomHex(8)
	os.WriteFile(tg.canary, []byte(tg.canaryContent), 0o644) // readable by anyone on the host
	listen := func(network, addr string) net.Listener {
		ln, err := net.Listen(network, addr)
		if err != nil {
			t.Fatalf("listen %s %s: %v", network, addr, err)
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				tg.accepted.Add(1)
				c.Close()
			}
		}()
		return ln
	}
	tg.tcp4 = listen("tcp4", "127.0.0.1:0").Addr().String()
	tg.tcp6 = listen("tcp6", "[::1]:0").Addr().String()
	tg.abstract = "@kmcp-escape-" + randomHex(4)
	listen("unix", tg.abstract)
	tg.unixPath = filepath.Join(dir, "host.sock")
	listen("unix", tg.unixPath)
	tg.sleeper = exec.Command("sleep", "3600")
	if err := tg.sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	alpha := tg.clusters.All[0]
	tg.kube = kubernetes.NewForConfigOrDie(alpha.REST)
	ctx := context.Background()
	tg.secretValue = "secret-" + randomHex(8)
	for _, create := range []func() error{
		func() error {
			_, err := tg.kube.CoreV1().Secrets(alpha.Namespace).Create(ctx, &corev1.Secret{
				ObjectMeta: metav1.ObjectMeta{Name: canarySecret},
				StringData: map[string]string{"password": tg.secretValue},
			}, metav1.CreateOptions{})
			return err
		},
		func() error {
			_, err := tg.kube.CoreV1().Pods(alpha.Namespace).Create(ctx, &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: victimPod},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			}, metav1.CreateOptions{})
			return err
		},
	} {
		if err := create(); err != nil && !strings.Contains(err.Error(), "already exists") {
			t.Fatal(err)
		}
	}
	return tg
}

// A harness is one tier's runtime, composed as the server composes it,
// with the hostile plugin and a configuration an operator might write.
type harness struct {
	tier       tier
	rt         *runtime.Runtime
	tg         *targets
	dir        string // the plugin folder
	pluginFile string
	builtFile  string // what pluginFile was copied from
	configFile string
	auditFile  string
	stateDir   string
	namespace  string // the containerd namespace of its containers
	instance   string // the kubernetes tier's instance label, on its Pods
	marker     string // in the argv of every process a case leaves behind
}

// hostilePlugin builds the suite's plugin for linux or wasip1, once per
// test binary, into a folder of its own.
func hostilePlugin(t *testing.T, native bool) string {
	t.Helper()
	if !native {
		return testenv.WasmGuest(t, "internal/escape/hostile", "hostile")
	}
	nativeOnce.Do(func() {
		root, err := images.RepoRoot()
		if err != nil {
			nativeErr = err
			return
		}
		dir, err := os.MkdirTemp("", "kmcp-hostile-")
		if err != nil {
			nativeErr = err
			return
		}
		nativePath = filepath.Join(dir, "kubectl-hostile")
		cmd := exec.Command("go", "build", "-trimpath", "-o", nativePath, "./internal/escape/hostile")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off")
		if out, err := cmd.CombinedOutput(); err != nil {
			nativeErr = fmt.Errorf("build the hostile plugin: %v\n%s", err, out)
		}
	})
	if nativeErr != nil {
		t.Fatal(nativeErr)
	}
	return nativePath
}

var (
	nativeOnce sync.Once
	nativePath string
	nativeErr  error
)

// executionTimeout ends the cases that never end by themselves; the
// slowest case that ends (searching every file for a token) must finish
// well within it on a loaded machine.
const executionTimeout = 20 * time.Second

func newHarness(t *testing.T, tr tier, tg *targets, extraTOML string) *harness {
	t.Helper()
	return newHarnessWith(t, tr, tg, extraTOML, executionTimeout, "")
}

// newHarnessWith is newHarness with the calls' time limit, and a suffix
// for its containerd namespace when two harnesses of a tier run at once.
func newHarnessWith(t *testing.T, tr tier, tg *targets, extraTOML string, timeout time.Duration, suffix string) *harness {
	t.Helper()
	h := &harness{tier: tr, tg: tg, marker: "kmcp-escape-marker-" + tr.name + "-" + randomHex(4), namespace: "kmcp-escape-" + tr.name + suffix}
	dir := t.TempDir()
	h.dir = dir
	built := hostilePlugin(t, tr.native)
	h.pluginFile, h.builtFile = filepath.Join(dir, filepath.Base(built)), built
	copyFile(t, built, h.pluginFile)
	h.auditFile = filepath.Join(t.TempDir(), "audit.jsonl")
	h.configFile = filepath.Join(t.TempDir(), "config.toml")
	toml := fmt.Sprintf(`
[plugins]
plugin_paths = [%q]
allow_any_plugin = true
auto_discovery = false
execution_timeout = %q
max_concurrent = 4
max_output = 65536
%s
[[plugins.rules]]
name = "configmaps-in-alpha"
plugins = ["hostile"]
verbs = ["create"]
resources = ["configmaps"]
namespaces = [%q]

[clusters]
kubeconfig_dir = %q
default_cluster = "alpha"

[audit]
file = %q
%s`, dir, timeout.String(), extraTOML, tg.clusters.All[0].Namespace, tg.clusters.KubeconfigDir, h.auditFile,
		testenv.SandboxTOML(t, tr.backend, h.namespace))
	os.WriteFile(h.configFile, []byte(toml), 0o600)
	cfg, err := config.Load(config.Options{File: h.configFile, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatalf("%s: %v", tr.name, err)
	}
	h.stateDir, h.instance = cfg.Sandbox.StateDir, cfg.Sandbox.KubernetesInstance
	reg, err := clusters.Load(clusters.Options{KubeconfigDir: cfg.Clusters.KubeconfigDir, DefaultCluster: cfg.Clusters.DefaultCluster})
	if err != nil {
		t.Fatal(err)
	}
	// Composed as the server is (Server: its warm pool, its sweep), so the
	// cases hold on the warm path too.
	parts, err := compose.Build(context.Background(), cfg, compose.Env{PathEnv: dir, KrewRoot: t.TempDir(), Server: true}, nil)
	if err != nil {
		t.Fatalf("%s: %v", tr.name, err)
	}
	h.rt, err = runtime.New(cfg, runtime.Options{Policy: parts.Policy, Backends: parts.Backends, Dirs: parts.Dirs, Container: parts.Container, Wasm: parts.Wasm, Clusters: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.rt.Close() })
	if _, err := h.rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	if p, err := h.rt.Plugin("hostile"); err != nil || !p.Allowed {
		t.Fatalf("%s: the hostile plugin is not served: %v %+v %v", tr.name, err, p, h.rt.Warnings())
	}
	return h
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o755); err != nil {
		t.Fatal(err)
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	f, _ := os.Open("/dev/urandom")
	defer f.Close()
	f.Read(b)
	return hex.EncodeToString(b)
}

func sha256Hex(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// hostProcessesWith lists the host's processes whose argv holds s.
func hostProcessesWith(s string) []string {
	var out []string
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		b, err := os.ReadFile(filepath.Join(p, "cmdline"))
		if err == nil && strings.Contains(string(b), s) {
			state, _ := os.ReadFile(filepath.Join(p, "stat"))
			out = append(out, filepath.Base(p)+" "+strings.ReplaceAll(string(b), "\x00", " ")+" ["+string(state)+"]")
		}
	}
	return out
}
