package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// kubectl fixtures reach the cluster only through the call's gateway.
func init() {
	fixtures["kubectl-kdelete"] = `kubectl delete pod "$1" -n "$2" --wait=false`
	fixtures["kubectl-kget"] = `kubectl get "$@" -o name`
	fixtures["kubectl-kwatch"] = `timeout "$1" kubectl get pods -n "$2" --watch -o name; true`
}

func createPod(t *testing.T, e *env, name string) *kubernetes.Clientset {
	t.Helper()
	client, err := kubernetes.NewForConfig(e.clusters.All[0].REST)
	if err != nil {
		t.Fatal(err)
	}
	pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}}}
	if _, err := client.CoreV1().Pods(e.clusters.All[0].Namespace).Create(context.Background(), pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	return client
}

// auditLines reads the audit file's lines of one call.
func auditLines(t *testing.T, path, callID string) (requests []gateway.Record, call map[string]any) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	for scanner.Scan() {
		var line map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &line); err != nil {
			t.Fatalf("audit line %q: %v", scanner.Text(), err)
		}
		if line["call_id"] != callID {
			continue
		}
		switch line["type"] {
		case "request":
			var rec gateway.Record
			json.Unmarshal(scanner.Bytes(), &rec)
			requests = append(requests, rec)
		case "call":
			call = line
		}
	}
	return requests, call
}

func TestGatewayDeniesWritesByDefaultAndAudits(t *testing.T) {
	for _, backend := range []string{"container", "none"} {
		t.Run(backend, func(t *testing.T) { testGatewayDeniesWritesByDefaultAndAudits(t, backend) })
	}
}

func testGatewayDeniesWritesByDefaultAndAudits(t *testing.T, backend string) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	rt, e := newRuntimeWith(t, backend, "")
	rt.audit, _ = openAudit(auditFile, rt.log)
	alpha := e.clusters.All[0]
	victim := "victim-" + backend
	client := createPod(t, e, victim)
	ctx := context.Background()

	res, err := rt.Execute(ctx, Call{Plugin: "kdelete", Args: []string{victim, alpha.Namespace}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != StatusFailed || !strings.Contains(res.Error, "Forbidden") || !strings.Contains(res.Error, "default_deny") {
		t.Errorf("delete by default: %+v", res)
	}
	if _, err := client.CoreV1().Pods(alpha.Namespace).Get(ctx, victim, metav1.GetOptions{}); err != nil {
		t.Errorf("the pod is gone after a denied delete: %v", err)
	}
	var denied *gateway.Record
	for i, r := range res.APIRequests {
		if r.Verb == "delete" {
			denied = &res.APIRequests[i]
		}
	}
	if denied == nil || denied.Decision != gateway.Deny || denied.Status != 403 || denied.Resource != "pods" ||
		denied.Namespace != alpha.Namespace || denied.Name != victim || denied.Rule != "default_deny" || res.Sandbox != backend {
		t.Errorf("api_requests: %+v", res.APIRequests)
	}
	// Audit lines match the requests one to one, then one line closes the call.
	lines, call := auditLines(t, auditFile, res.CallID)
	if len(lines) != len(res.APIRequests) {
		t.Errorf("%d audit lines for %d requests", len(lines), len(res.APIRequests))
	}
	for i := range min(len(lines), len(res.APIRequests)) {
		if lines[i].Verb != res.APIRequests[i].Verb || lines[i].Decision != res.APIRequests[i].Decision || lines[i].Path != res.APIRequests[i].Path {
			t.Errorf("audit line %d %+v, request %+v", i, lines[i], res.APIRequests[i])
		}
	}
	if call == nil || call["requests_denied"] != float64(1) || call["plugin"] != "kdelete" || call["cluster"] != "alpha" {
		t.Errorf("call audit line: %v", call)
	}

	// Secrets are not readable by default; the cluster's own objects are.
	res, _ = rt.Execute(ctx, Call{Plugin: "kget", Args: []string{"secrets", "-n", alpha.Namespace}})
	if res.Status != StatusFailed || !strings.Contains(res.Error, "Forbidden") {
		t.Errorf("get secrets: %+v", res)
	}
	res, _ = rt.Execute(ctx, Call{Plugin: "kget", Args: []string{"pods", "-n", alpha.Namespace}})
	if res.Status != StatusOK || !strings.Contains(res.Output, "pod/"+victim) {
		t.Errorf("get pods: %+v", res)
	}
	// The gateway reaches its own cluster only: beta's namespace is not on alpha.
	res, _ = rt.Execute(ctx, Call{Plugin: "kget", Args: []string{"namespace", e.clusters.All[1].Namespace}})
	if res.Status != StatusFailed || !strings.Contains(res.Error, "NotFound") && !strings.Contains(res.Error, "not found") {
		t.Errorf("beta's namespace through alpha's gateway: %+v", res)
	}
	for _, token := range []string{alpha.Token, e.clusters.All[1].Token} {
		data, _ := os.ReadFile(auditFile)
		if strings.Contains(string(data), token) {
			t.Error("a cluster token is in the audit file")
		}
	}
}

func TestGatewayAllowsUnderARule(t *testing.T) {
	for _, backend := range []string{"container", "none"} {
		t.Run(backend, func(t *testing.T) { testGatewayAllowsUnderARule(t, backend) })
	}
}

func testGatewayAllowsUnderARule(t *testing.T, backend string) {
	rt, e := newRuntimeWith(t, backend, `
[[plugins.rules]]
name = "cleanup"
plugins = ["kdelete"]
clusters = ["alpha"]
verbs = ["delete"]
resources = ["pods"]
namespaces = ["only-*"]
`)
	alpha := e.clusters.All[0]
	doomed := "doomed-" + backend
	client := createPod(t, e, doomed)
	res, err := rt.Execute(context.Background(), Call{Plugin: "kdelete", Args: []string{doomed, alpha.Namespace}})
	if err != nil || res.Status != StatusOK {
		t.Fatalf("delete under a rule: %v %+v", err, res)
	}
	var rule string
	for _, r := range res.APIRequests {
		if r.Verb == "delete" {
			rule = r.Rule
		}
	}
	if rule != "cleanup" {
		t.Errorf("the delete was allowed by %q, want cleanup: %+v", rule, res.APIRequests)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := client.CoreV1().Pods(alpha.Namespace).Get(context.Background(), doomed, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the pod is still there: %v", err)
		}
	}
}

// A watch streams through the gateway while the plugin runs.
func TestGatewayStreamsAWatch(t *testing.T) {
	for _, backend := range []string{"container", "none"} {
		t.Run(backend, func(t *testing.T) { testGatewayStreamsAWatch(t, backend) })
	}
}

func testGatewayStreamsAWatch(t *testing.T, backend string) {
	rt, e := newRuntimeWith(t, backend, "")
	alpha := e.clusters.All[0]
	go func() {
		time.Sleep(1500 * time.Millisecond)
		createPod(t, e, "late-arrival-"+backend)
	}()
	res, err := rt.Execute(context.Background(), Call{Plugin: "kwatch", Args: []string{"4", alpha.Namespace}})
	if err != nil || !strings.Contains(res.Output, "pod/late-arrival-"+backend) {
		t.Fatalf("watch: %v %+v", err, res)
	}
	var watched bool
	for _, r := range res.APIRequests {
		watched = watched || r.Verb == "watch" && r.Decision == gateway.Allow
	}
	if !watched {
		t.Errorf("no audited watch in %+v", res.APIRequests)
	}
}

// The real stern reads the cluster without following: its requests (pods
// listed and watched in the namespace) pass the gateway and are audited.
func TestSternThroughTheGateway(t *testing.T) {
	rt, e := newRuntime(t, "")
	alpha := e.clusters.All[0]
	os.Symlink(filepath.Join(testenv.RealPlugins(t), "kubectl-stern"), filepath.Join(e.dir, "kubectl-stern"))
	rt.Discover(context.Background())
	res, err := rt.Execute(context.Background(), Call{Plugin: "stern", Args: []string{"--no-follow", "-n", alpha.Namespace, "."}})
	if err != nil || res.Status != StatusOK {
		t.Fatalf("stern: %v %+v", err, res)
	}
	var listed bool
	for _, r := range res.APIRequests {
		if r.Resource == "pods" && r.Namespace == alpha.Namespace && (r.Verb == "list" || r.Verb == "watch") && r.Decision == gateway.Allow {
			listed = true
		}
	}
	if !listed {
		t.Errorf("stern's requests: %+v", res.APIRequests)
	}
}
