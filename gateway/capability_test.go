package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// TestACapabilityOpensTheGatewayAndNothingElse: a gateway with a
// capability serves on its listener only the requests that carry it (the
// kubeconfig it writes does); one without it, or with another call's, is
// refused 401, audited, and never reaches the cluster; the capability is
// not what the cluster sees; in process, Handler asks for none.
func TestACapabilityOpensTheGatewayAndNothingElse(t *testing.T) {
	alpha := testenv.TestClusters(t).All[0]
	audit := newAuditLog()
	g, err := New(Config{CallID: "call-" + t.Name(), Plugin: "kubectl-test", Cluster: alpha.Name, Upstream: rest.CopyConfig(alpha.REST),
		Decide: allowAll, Audit: audit.add, Logger: testLogger(t), Capability: "the-calls-own-capability"})
	if err != nil {
		t.Fatal(err)
	}
	s := serveGateway(t, g, audit)
	ctx := context.Background()

	cfg, err := clientcmd.NewDefaultClientConfig(*g.Kubeconfig(s.addr), nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.BearerToken != "the-calls-own-capability" {
		t.Fatalf("the kubeconfig's token is %q, want the capability", cfg.BearerToken)
	}
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().Namespaces().Get(ctx, alpha.Namespace, metav1.GetOptions{}); err != nil {
		t.Fatalf("with the capability: %v", err)
	}
	if rec := audit.wait(t, 1)[0]; rec.Decision != Allow || rec.Status != http.StatusOK {
		t.Errorf("with the capability: record %+v", rec)
	}

	for name, token := range map[string]string{"without a token": "", "with another call's": "another-calls-capability"} {
		other := rest.CopyConfig(cfg)
		other.BearerToken = token
		_, err := kubernetes.NewForConfigOrDie(other).CoreV1().Namespaces().Get(ctx, alpha.Namespace, metav1.GetOptions{})
		if !apierrors.IsUnauthorized(err) || !strings.Contains(err.Error(), "capability") {
			t.Errorf("%s: %v, want 401 saying the capability is missing", name, err)
		}
		recs := audit.wait(t, 1)
		if rec := recs[len(recs)-1]; rec.Decision != Deny || rec.Rule != RuleCapability || rec.Status != http.StatusUnauthorized {
			t.Errorf("%s: record %+v", name, rec)
		}
	}

	// In process, the plugin has no network to share: no capability.
	rec := httptest.NewRecorder()
	g.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/api/v1/namespaces/"+alpha.Namespace, nil))
	if rec.Code != http.StatusOK {
		t.Errorf("in process: %d %s", rec.Code, rec.Body)
	}
}
