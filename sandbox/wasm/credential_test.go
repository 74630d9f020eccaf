package wasm_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// A guest that talks to a real cluster through the real gateway never holds
// the cluster's credential: not in its output, not anywhere in its memory
// when it ends, although the cluster's answer is there.
func TestNoCredentialInGuestMemory(t *testing.T) {
	alpha := testenv.TestClusters(t).All[0]
	pol, err := policy.New(policy.Rules{AllowAny: true})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(gateway.Config{
		CallID: "mem", Plugin: "hostile", Cluster: alpha.Name, Upstream: alpha.REST,
		Decide: func(r gateway.Request) gateway.Decision { return pol.DecideRequest("hostile", alpha.Name, r) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()

	plugin := hostileGuest(t) // warms the shared compilation cache
	b, err := wasm.New(context.Background(), wasm.Config{CacheDir: sharedCache})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	var mu sync.Mutex
	var memories [][]byte
	wasm.SetMemoryInspector(b, func(mem []byte) {
		mu.Lock()
		memories = append(memories, bytes.Clone(mem))
		mu.Unlock()
	})

	secrets := map[string][]byte{"token": []byte(alpha.Token)}
	if len(alpha.REST.KeyData) > 0 {
		secrets["client key"] = alpha.REST.KeyData
	}
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := b.Run(ctx, sandbox.Spec{
		ID: "mem", Plugin: plugin, Args: []string{"get", "/api/v1/namespaces/" + alpha.Namespace},
		Cluster: &sandbox.ClusterAccess{Serve: gw.Serve, Handler: gw.Handler(), Kubeconfig: gw.Kubeconfig},
		Stdout:  &stdout, Stderr: &stderr,
	})
	if err != nil || res.ExitCode != 0 || !strings.Contains(stdout.String(), "status 200") {
		t.Fatalf("run: %v %+v\n%s\n%s", err, res, stdout.String(), stderr.String())
	}
	mu.Lock()
	defer mu.Unlock()
	if len(memories) != 1 {
		t.Fatalf("%d memories inspected, want 1", len(memories))
	}
	mem := memories[0]
	// The inspection sees what the guest got: the namespace's uid is in there.
	if !bytes.Contains(mem, []byte(`"name":"`+alpha.Namespace+`"`)) {
		t.Fatal("the guest's memory does not hold the response; the inspection would prove nothing")
	}
	for what, secret := range secrets {
		if bytes.Contains(mem, secret) || strings.Contains(stdout.String()+stderr.String(), string(secret)) {
			t.Errorf("the cluster's %s is in the guest's memory or output", what)
		}
	}
}
