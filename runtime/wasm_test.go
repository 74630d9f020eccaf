package runtime

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// withWasmPlugin puts the hostile test guest among the runtime's plugins as
// kubectl-hostile.wasm and discovers again.
func withWasmPlugin(t *testing.T, rt *Runtime, e *env) {
	t.Helper()
	guest := testenv.WasmGuest(t, "sandbox/wasm/testdata/hostile", "hostile")
	data, err := os.ReadFile(guest)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(e.dir, "kubectl-hostile.wasm"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// A WebAssembly plugin reaches its cluster through the call's gateway, with
// the same policy and audit as a container's: reads pass, a delete is
// denied by default and audited, upgrades are refused, and the other
// cluster is out of reach.
func TestWasmPluginReachesItsClusterOnlyThroughTheGateway(t *testing.T) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	rt, e := newRuntimeWith(t, "none", `
[[plugins.rules]]
name = "exec-for-the-test"
plugins = ["hostile"]
verbs = ["get", "create"]
resources = ["pods/exec"]
`)
	rt.audit, _ = openAudit(auditFile, rt.log)
	withWasmPlugin(t, rt, e)
	alpha, beta := e.clusters.All[0], e.clusters.All[1]
	victim := "wasm-victim"
	client := createPod(t, e, victim)
	ctx := context.Background()
	get := func(path string, more ...string) *Result {
		t.Helper()
		res, err := rt.Execute(ctx, Call{Plugin: "hostile", Args: append([]string{"get", path}, more...)})
		if err != nil {
			t.Fatal(err)
		}
		if res.Sandbox != "wasm" {
			t.Fatalf("sandbox = %q, want wasm: %+v", res.Sandbox, res)
		}
		for _, token := range []string{alpha.Token, beta.Token} {
			if strings.Contains(res.Output+res.Error, token) {
				t.Errorf("a cluster token is in the guest's output")
			}
		}
		return res
	}
	only := func(res *Result) gateway.Record {
		t.Helper()
		if len(res.APIRequests) != 1 {
			t.Fatalf("api_requests = %+v, want one", res.APIRequests)
		}
		return res.APIRequests[0]
	}

	res := get("/api/v1/namespaces/" + alpha.Namespace + "/pods")
	if rec := only(res); res.Status != StatusOK || !strings.Contains(res.Output, "status 200") || !strings.Contains(res.Output, victim) ||
		rec.Decision != gateway.Allow || rec.Verb != "list" || rec.Resource != "pods" || rec.Status != 200 {
		t.Errorf("list pods: %+v", res)
	}

	res = get("/api/v1/namespaces/"+alpha.Namespace+"/pods/"+victim, "DELETE")
	if rec := only(res); !strings.Contains(res.Output, "status 403") || rec.Decision != gateway.Deny || rec.Verb != "delete" || rec.Rule != "default_deny" {
		t.Errorf("delete: %+v", res)
	}
	if _, err := client.CoreV1().Pods(alpha.Namespace).Get(ctx, victim, metav1.GetOptions{}); err != nil {
		t.Errorf("the pod is gone after a denied delete: %v", err)
	}
	lines, call := auditLines(t, auditFile, res.CallID)
	if len(lines) != 1 || lines[0].Verb != "delete" || lines[0].Decision != gateway.Deny || call == nil || call["requests_denied"] != float64(1) {
		t.Errorf("audit of the delete: %+v %v", lines, call)
	}

	res = get("/api/v1/namespaces/" + alpha.Namespace + "/secrets")
	if rec := only(res); !strings.Contains(res.Output, "status 403") || rec.Decision != gateway.Deny {
		t.Errorf("list secrets: %+v", res)
	}

	// exec is allowed by a rule, yet a guest cannot upgrade a connection.
	res = get("/api/v1/namespaces/"+alpha.Namespace+"/pods/"+victim+"/exec?command=ls&stdout=true", "GET", "upgrade")
	if rec := only(res); !strings.Contains(res.Output, "status 400") || rec.Decision != gateway.Deny || rec.Rule != gateway.RuleNoUpgrade {
		t.Errorf("exec: %+v", res)
	}

	// The gateway is alpha's only: beta's namespace does not exist there.
	res = get("/api/v1/namespaces/" + beta.Namespace)
	if rec := only(res); !strings.Contains(res.Output, "status 404") || rec.Status != 404 {
		t.Errorf("beta's namespace through alpha's gateway: %+v", res)
	}
	res, err := rt.Execute(ctx, Call{Plugin: "hostile", Cluster: "beta", Args: []string{"get", "/api/v1/namespaces/" + beta.Namespace}})
	if err != nil || !strings.Contains(res.Output, "status 200") || res.Cluster != "beta" {
		t.Errorf("beta's namespace on beta: %v %+v", err, res)
	}
	data, _ := os.ReadFile(auditFile)
	for _, token := range []string{alpha.Token, beta.Token} {
		if strings.Contains(string(data), token) {
			t.Error("a cluster token is in the audit file")
		}
	}
}

// Without a cluster a guest's requests go nowhere, and say so.
func TestWasmPluginWithoutAClusterReachesNothing(t *testing.T) {
	rt, e := newRuntimeWith(t, "none", "")
	withWasmPlugin(t, rt, e)
	none, err := clusters.Load(clusters.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rt.clusters = none
	res, err := rt.Execute(context.Background(), Call{Plugin: "hostile", Args: []string{"get", "/api/v1/pods"}})
	if err != nil {
		t.Fatal(err)
	}
	if res.Status == StatusOK || !strings.Contains(res.Output, "this call has no cluster") || len(res.APIRequests) != 0 {
		t.Errorf("a call without a cluster: %+v", res)
	}
}
