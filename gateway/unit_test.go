package gateway

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// newInProcess is a gateway used through Handler, never served.
func newInProcess(t *testing.T, upstream *rest.Config, decide Decider) (*Gateway, *auditLog) {
	t.Helper()
	audit := newAuditLog()
	g, err := New(Config{CallID: "c1", Plugin: "p", Cluster: "test", Upstream: upstream, Decide: decide, Audit: audit.add, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	return g, audit
}

// nowhere is an upstream that does not answer: a port that refuses.
func nowhere(t *testing.T) *rest.Config {
	addr := testenv.RefusedAddr(t)
	return &rest.Config{Host: "https://" + addr, BearerToken: "secret-token", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
}

func TestRequestParsing(t *testing.T) {
	for _, tc := range []struct {
		method, target string
		want           Request
	}{
		{"GET", "/version", Request{Path: "/version", Verb: "get"}},
		{"GET", "/api", Request{Path: "/api", Verb: "get"}},
		{"GET", "/apis/apps", Request{Path: "/apis/apps", Verb: "get"}},
		{"POST", "/healthz", Request{Path: "/healthz", Verb: "post"}},
		{"GET", "/api/v1/namespaces", resourceRequest("/api/v1/namespaces", "list", "", "v1", "namespaces", "", "", "")},
		{"GET", "/api/v1/namespaces/ns1", resourceRequest("/api/v1/namespaces/ns1", "get", "", "v1", "namespaces", "", "ns1", "ns1")},
		{"GET", "/api/v1/namespaces/ns1/pods", resourceRequest("/api/v1/namespaces/ns1/pods", "list", "", "v1", "pods", "", "ns1", "")},
		{"GET", "/api/v1/namespaces/ns1/pods?watch=true", resourceRequest("/api/v1/namespaces/ns1/pods", "watch", "", "v1", "pods", "", "ns1", "")},
		{"GET", "/api/v1/namespaces/ns1/pods?watch=1&fieldSelector=metadata.name%3Dp", resourceRequest("/api/v1/namespaces/ns1/pods", "watch", "", "v1", "pods", "", "ns1", "p")},
		{"GET", "/api/v1/watch/namespaces/ns1/pods/p", resourceRequest("/api/v1/watch/namespaces/ns1/pods/p", "watch", "", "v1", "pods", "", "ns1", "p")},
		{"DELETE", "/api/v1/namespaces/ns1/pods/p", resourceRequest("/api/v1/namespaces/ns1/pods/p", "delete", "", "v1", "pods", "", "ns1", "p")},
		{"DELETE", "/api/v1/namespaces/ns1/pods", resourceRequest("/api/v1/namespaces/ns1/pods", "deletecollection", "", "v1", "pods", "", "ns1", "")},
		{"POST", "/api/v1/namespaces/ns1/pods/p/exec?command=sh", resourceRequest("/api/v1/namespaces/ns1/pods/p/exec", "create", "", "v1", "pods", "exec", "ns1", "p")},
		{"GET", "/api/v1/namespaces/ns1/pods/p/log", resourceRequest("/api/v1/namespaces/ns1/pods/p/log", "get", "", "v1", "pods", "log", "ns1", "p")},
		{"PATCH", "/apis/apps/v1/namespaces/ns1/deployments/d/scale", resourceRequest("/apis/apps/v1/namespaces/ns1/deployments/d/scale", "patch", "apps", "v1", "deployments", "scale", "ns1", "d")},
		{"PUT", "/api/v1/namespaces/ns1/finalize", resourceRequest("/api/v1/namespaces/ns1/finalize", "update", "", "v1", "namespaces", "finalize", "ns1", "ns1")},
		{"POST", "/apis/rbac.authorization.k8s.io/v1/clusterroles", resourceRequest("/apis/rbac.authorization.k8s.io/v1/clusterroles", "create", "rbac.authorization.k8s.io", "v1", "clusterroles", "", "", "")},
		{"GET", "/api/v1/nodes/n1/proxy/metrics", resourceRequest("/api/v1/nodes/n1/proxy/metrics", "get", "", "v1", "nodes", "proxy", "", "n1")},
	} {
		t.Run(tc.method+" "+tc.target, func(t *testing.T) {
			seen := &seenRequests{}
			g, audit := newInProcess(t, nowhere(t), seen.wrap(func(Request) Decision { return Decision{Reason: "parse only", Rule: "test.deny"} }))
			w := httptest.NewRecorder()
			g.Handler().ServeHTTP(w, httptest.NewRequest(tc.method, tc.target, nil))
			if w.Code != http.StatusForbidden {
				t.Errorf("status %d: %s", w.Code, w.Body)
			}
			got := seen.take()
			if len(got) != 1 || got[0] != tc.want {
				t.Errorf("Decider saw %+v\nwant %+v", got, tc.want)
			}
			rec := audit.wait(t, 1)[0]
			w2 := tc.want
			if rec.Verb != w2.Verb || rec.APIGroup != w2.APIGroup || rec.APIVersion != w2.APIVersion || rec.Resource != w2.Resource ||
				rec.Subresource != w2.Subresource || rec.Namespace != w2.Namespace || rec.Name != w2.Name || rec.Path != w2.Path ||
				rec.Decision != Deny || rec.Status != 403 || rec.Rule != "test.deny" || rec.Reason != "parse only" || rec.Method != tc.method {
				t.Errorf("audit record %+v", rec)
			}
		})
	}
}

func TestGatewayAnswersItself(t *testing.T) {
	// A body over the limit may be partly streamed upstream, but the
	// cluster must never receive it whole.
	upstreamBody := make(chan int64, 10)
	fake := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n, err := io.Copy(io.Discard, r.Body); err == nil {
			upstreamBody <- n
		}
		w.Write([]byte(`{}`))
	}))
	t.Cleanup(fake.Close)
	fakeREST := &rest.Config{Host: fake.URL, TLSClientConfig: rest.TLSClientConfig{Insecure: true}}
	big := bytes.Repeat([]byte("x"), MaxBodyBytes+1)

	for _, tc := range []struct {
		name     string
		upstream *rest.Config
		req      func() *http.Request
		status   int
		reason   metav1.StatusReason
		message  string
		decision string
		rule     string
	}{
		{
			name: "cluster does not answer", upstream: nowhere(t),
			req:    func() *http.Request { return httptest.NewRequest("GET", "/api/v1/namespaces", nil) },
			status: 502, reason: metav1.StatusReasonServiceUnavailable, message: `cluster "test" did not answer`,
			decision: Allow, rule: "test.allow_all",
		},
		{
			name: "body too large, with length", upstream: fakeREST,
			req: func() *http.Request {
				return httptest.NewRequest("POST", "/api/v1/namespaces/a/configmaps", bytes.NewReader(big))
			},
			status: 413, reason: metav1.StatusReasonRequestEntityTooLarge, message: "8 MiB",
			decision: Deny, rule: RuleTooLarge,
		},
		{
			name: "body too large, chunked", upstream: fakeREST,
			req: func() *http.Request {
				r := httptest.NewRequest("POST", "/api/v1/namespaces/a/configmaps", io.MultiReader(bytes.NewReader(big)))
				r.ContentLength = -1
				return r
			},
			status: 413, reason: metav1.StatusReasonRequestEntityTooLarge, message: "8 MiB",
			decision: Allow, rule: "test.allow_all",
		},
		{
			name: "dot-dot path", upstream: fakeREST,
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/api/v1/namespaces/a/pods", nil)
				r.URL.Path = "/api/v1/namespaces/a/../../namespaces/b/secrets"
				return r
			},
			status: 400, reason: metav1.StatusReasonBadRequest, message: "canonical",
			decision: Deny, rule: RuleBadRequest,
		},
		{
			name: "escaped dot-dot path", upstream: fakeREST,
			req: func() *http.Request {
				return httptest.NewRequest("GET", "/api/v1/namespaces/a/pods/..%2F..%2Fsecrets", nil)
			},
			status: 400, reason: metav1.StatusReasonBadRequest, message: "canonical",
			decision: Deny, rule: RuleBadRequest,
		},
		{
			name: "empty segment", upstream: fakeREST,
			req:    func() *http.Request { return httptest.NewRequest("GET", "/api/v1//namespaces", nil) },
			status: 400, reason: metav1.StatusReasonBadRequest, message: "canonical",
			decision: Deny, rule: RuleBadRequest,
		},
		{
			name: "headers too large", upstream: fakeREST,
			req: func() *http.Request {
				r := httptest.NewRequest("GET", "/api/v1/namespaces", nil)
				r.Header.Set("X-Big", strings.Repeat("y", MaxHeaderBytes))
				return r
			},
			status: 431, reason: metav1.StatusReasonBadRequest, message: "headers",
			decision: Deny, rule: RuleTooLarge,
		},
		{
			name: "upgrade without a hijackable connection", upstream: fakeREST,
			req: func() *http.Request {
				r := httptest.NewRequest("POST", "/api/v1/namespaces/a/pods/p/exec", nil)
				r.Header = spdyHeaders()
				return r
			},
			status: 400, reason: metav1.StatusReasonBadRequest, message: "cannot be upgraded",
			decision: Deny, rule: RuleNoUpgrade,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, audit := newInProcess(t, tc.upstream, allowAll)
			w := httptest.NewRecorder()
			g.Handler().ServeHTTP(w, tc.req())
			var st metav1.Status
			if err := json.Unmarshal(w.Body.Bytes(), &st); err != nil {
				t.Fatalf("%v: %s", err, w.Body)
			}
			if w.Code != tc.status || st.Code != int32(tc.status) || st.Kind != "Status" || st.Reason != tc.reason || !strings.Contains(st.Message, tc.message) {
				t.Errorf("status %d: %s", w.Code, w.Body)
			}
			if strings.Contains(w.Body.String(), "secret-token") {
				t.Errorf("the answer holds the token: %s", w.Body)
			}
			rec := audit.wait(t, 1)[0]
			if rec.Status != tc.status || rec.Decision != tc.decision || rec.Rule != tc.rule || rec.Reason == "" {
				t.Errorf("audit record %+v", rec)
			}
		})
	}
	select {
	case n := <-upstreamBody:
		t.Errorf("the cluster got a whole request with a %d byte body", n)
	default:
	}
}

func TestPanickingDeciderFailsClosed(t *testing.T) {
	g, audit := newInProcess(t, nowhere(t), func(Request) Decision { panic("policy bug") })
	w := httptest.NewRecorder()
	g.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/api/v1/namespaces", nil))
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "policy bug") {
		t.Errorf("status %d: %s", w.Code, w.Body)
	}
	if rec := audit.wait(t, 1)[0]; rec.Decision != Deny || rec.Rule != RuleInternalError || rec.Status != 500 || !strings.Contains(rec.Reason, "policy bug") {
		t.Errorf("audit record %+v", rec)
	}
}

func TestClosedGatewayRefuses(t *testing.T) {
	g, audit := newInProcess(t, nowhere(t), allowAll)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	w := httptest.NewRecorder()
	g.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/version", nil))
	if w.Code != http.StatusServiceUnavailable {
		t.Errorf("status %d", w.Code)
	}
	if rec := audit.wait(t, 1)[0]; rec.Rule != RuleClosed || rec.Status != 503 {
		t.Errorf("audit record %+v", rec)
	}
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	if err := g.Serve(l); err != nil {
		t.Errorf("Serve after Close: %v", err)
	}
	if err := g.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCertificates(t *testing.T) {
	g, _ := newInProcess(t, nowhere(t), allowAll)
	block, _ := pem.Decode(g.CAPEM())
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.IsCA || ca.NotAfter.Sub(ca.NotBefore) > 62*time.Minute || ca.NotAfter.Before(time.Now().Add(55*time.Minute)) {
		t.Errorf("CA %v valid %v to %v", ca.IsCA, ca.NotBefore, ca.NotAfter)
	}
	leaf := g.TLSConfig().Certificates[0].Leaf
	pub, ok := leaf.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("serving key %T", leaf.PublicKey)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, name := range []string{"127.0.0.1", "localhost", ServerName} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "kubernetes.default.svc"}); err == nil {
		t.Error("serving certificate is valid for kubernetes.default.svc")
	}
	other, _ := newInProcess(t, nowhere(t), allowAll)
	if bytes.Equal(other.CAPEM(), g.CAPEM()) {
		t.Error("two gateways share a CA")
	}
}

func TestKubeconfigServerName(t *testing.T) {
	g, _ := newInProcess(t, nowhere(t), allowAll)
	for _, tc := range []struct{ addr, server, serverName string }{
		{"127.0.0.1:8443", "https://127.0.0.1:8443", ""},
		{"localhost:8443", "https://localhost:8443", ""},
		{"[::1]:8443", "https://[::1]:8443", ""},
		{"10.200.0.1:6443", "https://10.200.0.1:6443", ServerName},
		{ServerName + ":443", "https://" + ServerName + ":443", ""},
		{"https://192.168.1.2:9000", "https://192.168.1.2:9000", ServerName},
	} {
		cfg := g.Kubeconfig(tc.addr)
		cl := cfg.Clusters["test"]
		if cl == nil || cl.Server != tc.server || cl.TLSServerName != tc.serverName || !bytes.Equal(cl.CertificateAuthorityData, g.CAPEM()) {
			t.Errorf("%s: cluster %+v", tc.addr, cl)
		}
		if ctx := cfg.Contexts[cfg.CurrentContext]; ctx == nil || ctx.Cluster != "test" {
			t.Errorf("%s: context %+v", tc.addr, ctx)
		}
		for name, u := range cfg.AuthInfos {
			if u.Token != "" || u.TokenFile != "" || u.Password != "" || u.Username != "plugin" || u.ClientKeyData != nil || u.ClientCertificateData != nil ||
				u.Exec != nil || u.AuthProvider != nil || u.Impersonate != "" {
				t.Errorf("user %s: %+v", name, u)
			}
		}
	}
}

func TestNewChecksConfig(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no upstream", Config{Decide: allowAll}},
		{"no decider", Config{Upstream: &rest.Config{Host: "https://127.0.0.1:1"}}},
		{"no host", Config{Upstream: &rest.Config{}, Decide: allowAll}},
		{"bad scheme", Config{Upstream: &rest.Config{Host: "ftp://127.0.0.1:1"}, Decide: allowAll}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
}

// resourceRequest is a resource Request, its fields in RequestInfo's order.
func resourceRequest(path, verb, group, version, resource, subresource, namespace, name string) Request {
	return Request{IsResourceRequest: true, Path: path, Verb: verb, APIGroup: group, APIVersion: version,
		Resource: resource, Subresource: subresource, Namespace: namespace, Name: name}
}
