package kubernetes

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
)

// newBackend is a kubernetes backend on the test node.
func newBackend(t testing.TB, warm int) (*Backend, *testenv.KubeNode) {
	t.Helper()
	return newBackendLogging(t, warm, hclog.Debug)
}

// newBackendLogging is newBackend logging from level up to the test's log.
func newBackendLogging(t testing.TB, warm int, level hclog.Level) (*Backend, *testenv.KubeNode) {
	t.Helper()
	node := testenv.TestKubeNode(t)
	// An instance of its own: backends that run at once do not count each
	// other's Pods as leftovers.
	instance := fmt.Sprintf("test-%d", instances.Add(1))
	b, err := New(context.Background(), Config{
		REST: rest.CopyConfig(node.Config), Namespace: node.Namespace, Image: node.SandboxImage, PullPolicy: corev1.PullNever,
		NodeName: node.NodeName, User: 65534, GatewayListen: node.GatewayIP, GatewayHost: node.GatewayIP, WarmPool: warm, Instance: instance,
		Limits: container.Limits{MemoryMiB: 128, CPUMillicores: 500, TmpMiB: 16, Pids: 128, NoFile: 1024},
		Logger: hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: level, Output: testWriter{t}}),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		b.Close()
		assertNothingLeft(t, node, instance)
	})
	return b, node
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

var instances atomic.Int64

// assertNothingLeft fails when a Pod or NetworkPolicy of instance is left.
func assertNothingLeft(t testing.TB, node *testenv.KubeNode, instance string) {
	t.Helper()
	client := kubernetes.NewForConfigOrDie(node.Config)
	sel := metav1.ListOptions{LabelSelector: LabelManagedBy + "=" + managedBy + "," + LabelInstance + "=" + instance}
	pods, err := client.CoreV1().Pods(node.Namespace).List(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	policies, err := client.NetworkingV1().NetworkPolicies(node.Namespace).List(context.Background(), sel)
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items)+len(policies.Items) > 0 {
		t.Errorf("left behind: %d pods, %d network policies", len(pods.Items), len(policies.Items))
	}
}

// plugin writes a script plugin and returns its spec, with its sha256.
func plugin(t testing.TB, body string) sandbox.Spec {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kubectl-fixture")
	if err := os.WriteFile(path, []byte("#!/bin/bash\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	sum, err := discovery.FileSHA256(path)
	if err != nil {
		t.Fatal(err)
	}
	return sandbox.Spec{ID: "20261202T120000-" + t.Name()[len(t.Name())-4:], Plugin: path, SHA256: sum}
}

func run(t *testing.T, b *Backend, ctx context.Context, spec sandbox.Spec) (sandbox.Result, string, string) {
	t.Helper()
	stdout, stderr := sandbox.NewLimitedBuffer(1<<20), sandbox.NewLimitedBuffer(1<<20)
	spec.Stdout, spec.Stderr = stdout, stderr
	res, err := b.Run(ctx, spec)
	if err != nil {
		t.Fatalf("run: %v (stderr %q)", err, stderr.String())
	}
	return res, stdout.String(), stderr.String()
}

// TestAPluginRunsInAPodOfItsOwn: argv travels as a list, stdin reaches the
// plugin, stdout, stderr and the exit code come back, the plugin runs as
// 65534 with nothing of the server's environment, and its Pod and
// NetworkPolicy are gone once Run returns.
func TestAPluginRunsInAPodOfItsOwn(t *testing.T) {
	b, _ := newBackend(t, 0)
	t.Setenv("SERVER_SECRET", "must-not-leak")
	spec := plugin(t, `printf '%s|' "$@"; echo; cat; id -u; id -g; env | sort; echo to-stderr >&2; exit 7`)
	spec.Args = []string{"$(touch /tmp/pwned)", "a b", ";ls", ""}
	spec.Env = []string{"ONLY=this"}
	spec.Stdin = strings.NewReader("from stdin\n")
	res, out, errOut := run(t, b, context.Background(), spec)
	if res.ExitCode != 7 || res.Stopped || res.Warm {
		t.Errorf("result %+v", res)
	}
	for _, want := range []string{"$(touch /tmp/pwned)|a b|;ls||\n", "from stdin\n65534\n65534\n", "ONLY=this", "HOME=/tmp", "KUBECONFIG=/dev/null"} {
		if !strings.Contains(out, want) {
			t.Errorf("stdout lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "SERVER_SECRET") || strings.Contains(out, "KUBERNETES_SERVICE") {
		t.Errorf("the server's or the cluster's environment reached the plugin:\n%s", out)
	}
	if errOut != "to-stderr\n" {
		t.Errorf("stderr %q", errOut)
	}
}

// TestAPluginThatChangedDoesNotRun: bytes that do not have the sha256
// discovery verified are refused inside the Pod, before they run.
func TestAPluginThatChangedDoesNotRun(t *testing.T) {
	b, _ := newBackend(t, 0)
	spec := plugin(t, `echo ran`)
	spec.SHA256 = strings.Repeat("0", 64)
	res, out, errOut := run(t, b, context.Background(), spec)
	if res.ExitCode != 127 || strings.Contains(out, "ran") || !strings.Contains(errOut, "sha256") || !strings.Contains(errOut, "does not run") {
		t.Errorf("result %+v, stdout %q, stderr %q", res, out, errOut)
	}
}

// TestACancelledOrTimedOutCallDeletesItsPodAtOnce: the plugin and
// everything it started end with the Pod, at once.
func TestACancelledOrTimedOutCallDeletesItsPodAtOnce(t *testing.T) {
	b, _ := newBackend(t, 0)
	spec := plugin(t, `(sleep 300 &); echo started; sleep 300`)
	spec.RunTimeout = 2 * time.Second
	start := time.Now()
	res, out, _ := run(t, b, context.Background(), spec)
	if !res.Stopped || res.ExitCode != -1 || out != "started\n" {
		t.Errorf("timeout: %+v, stdout %q", res, out)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("a 2 s run timeout took %s", d)
	}

	ctx, cancel := context.WithCancel(context.Background())
	spec.RunTimeout = 0
	w := &notifyWriter{seen: make(chan struct{})}
	spec.Stdout = w
	go func() {
		<-w.seen
		cancel()
	}()
	res, err := b.Run(ctx, spec)
	if err != nil || !res.Stopped {
		t.Errorf("cancelled: %+v %v", res, err)
	}
}

type notifyWriter struct {
	seen chan struct{}
	once bool
}

func (w *notifyWriter) Write(p []byte) (int, error) {
	if !w.once {
		w.once = true
		close(w.seen)
	}
	return len(p), nil
}

// TestThePodReachesItsClusterThroughItsGatewayOnly: kubectl in the Pod
// reads the target cluster through the call's gateway, with the
// capability its kubeconfig carries, a delete is denied and audited, and
// a port of the host that is not its gateway.
func TestThePodReachesItsClusterThroughItsGatewayOnly(t *testing.T) {
	b, node := newBackend(t, 0)
	alpha := testenv.TestClusters(t).All[0]
	var mu sync.Mutex
	var records []gateway.Record
	gw, err := gateway.New(gateway.Config{CallID: "c1", Plugin: "kubectl-fixture", Cluster: alpha.Name, Upstream: rest.CopyConfig(alpha.REST),
		Decide: func(r gateway.Request) gateway.Decision {
			return gateway.Decision{Allowed: r.Verb == "list" || r.Verb == "get", Rule: "test", Reason: "read only"}
		},
		Audit: func(r gateway.Record) {
			mu.Lock()
			records = append(records, r)
			mu.Unlock()
		}, Capability: "capability-of-c1"})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	spec := plugin(t, `kubectl get namespaces -o name; kubectl delete namespace `+alpha.Namespace+` 2>&1; grep -c token $KUBECONFIG
		exec 3<>/dev/tcp/`+node.GatewayIP+`/1 && echo reached-port-1`)
	spec.Cluster = &sandbox.ClusterAccess{Serve: gw.Serve, Handler: gw.Handler(), Kubeconfig: gw.Kubeconfig}

	res, out, errOut := run(t, b, context.Background(), spec)
	t.Logf("stdout %s\nstderr %s", out, errOut)
	if !strings.Contains(out, "namespace/"+alpha.Namespace) || !strings.Contains(out, "Forbidden") || strings.Contains(out, "reached-port-1") {
		t.Errorf("result %+v:\n%s", res, out)
	}
	var denied bool
	mu.Lock()
	defer mu.Unlock()
	for _, r := range records {
		denied = denied || r.Verb == "delete" && r.Decision == gateway.Deny
	}
	if !denied {
		t.Errorf("the delete was not denied and audited: %+v", records)
	}
}

// TestAWarmPodServesOneCallWithoutWaitingForTheKubelet: after a call the
// pool makes a Pod with the plugin loaded; the next call takes it, and
// Close deletes what is left.
func TestAWarmPodServesOneCallWithoutWaitingForTheKubelet(t *testing.T) {
	b, _ := newBackend(t, 1)
	spec := plugin(t, `echo "$@"; cat`)
	spec.KeepWarm = true
	spec.Args = []string{"first"}
	if res, out, _ := run(t, b, context.Background(), spec); res.Warm || res.ExitCode != 0 || out != "first\n" {
		t.Fatalf("first call: %+v %q", res, out)
	}
	b.Settle()
	if b.Warm() != 1 {
		t.Fatalf("%d warm pods after the first call, want 1", b.Warm())
	}
	spec.Args = []string{"second"}
	spec.Stdin = strings.NewReader("stdin too\n")
	start := time.Now()
	res, out, _ := run(t, b, context.Background(), spec)
	if !res.Warm || res.ExitCode != 0 || out != "second\nstdin too\n" {
		t.Errorf("warm call: %+v %q", res, out)
	}
	t.Logf("warm call took %s", time.Since(start))
	b.Settle()
}
