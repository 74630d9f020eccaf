package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// auditLog collects records.
type auditLog struct {
	mu   sync.Mutex
	recs []Record
	more chan struct{}
}

func newAuditLog() *auditLog { return &auditLog{more: make(chan struct{}, 1)} }

func (a *auditLog) add(r Record) {
	a.mu.Lock()
	a.recs = append(a.recs, r)
	a.mu.Unlock()
	select {
	case a.more <- struct{}{}:
	default:
	}
}

func (a *auditLog) all() []Record {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Record(nil), a.recs...)
}

// wait returns the records once there are at least n, failing after a while.
func (a *auditLog) wait(t testing.TB, n int) []Record {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		if recs := a.all(); len(recs) >= n {
			return recs
		}
		select {
		case <-a.more:
		case <-deadline:
			t.Fatalf("want %d audit records, have %d: %+v", n, len(a.all()), a.all())
		}
	}
}

// seenRequests notes what a Decider was asked.
type seenRequests struct {
	mu   sync.Mutex
	reqs []Request
}

func (s *seenRequests) wrap(d Decider) Decider {
	return func(r Request) Decision {
		s.mu.Lock()
		s.reqs = append(s.reqs, r)
		s.mu.Unlock()
		return d(r)
	}
}

// take returns the requests seen so far and forgets them.
func (s *seenRequests) take() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.reqs
	s.reqs = nil
	return out
}

func allowAll(Request) Decision {
	return Decision{Allowed: true, Reason: "everything is allowed", Rule: "test.allow_all"}
}

func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "gateway", Output: t.Output(), Level: hclog.Debug})
}

// served is a gateway serving on a loopback listener.
type served struct {
	g     *Gateway
	addr  string
	audit *auditLog
	// rest is the plugin's view: built from the gateway's kubeconfig.
	rest *rest.Config
}

func serve(t testing.TB, upstream *rest.Config, cluster string, decide Decider) *served {
	t.Helper()
	audit := newAuditLog()
	g, err := New(Config{
		CallID:   "call-" + t.Name(),
		Plugin:   "kubectl-test",
		Cluster:  cluster,
		Upstream: rest.CopyConfig(upstream),
		Decide:   decide,
		Audit:    audit.add,
		Logger:   testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(l) }()
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	addr := l.Addr().String()
	cfg, err := clientcmd.NewDefaultClientConfig(*g.Kubeconfig(addr), nil).ClientConfig()
	if err != nil {
		t.Fatal(err)
	}
	return &served{g: g, addr: addr, audit: audit, rest: cfg}
}

func serveCluster(t testing.TB, c *testenv.Cluster, decide Decider) *served {
	return serve(t, c.REST, c.Name, decide)
}

func (s *served) clientset(t testing.TB) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(s.rest)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// httpClient talks to the gateway as a plugin would, over HTTP/1.1 only
// when h1 is set.
func (s *served) httpClient(t testing.TB, h1 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool(t, s.g.CAPEM())},
		ForceAttemptHTTP2: !h1,
		MaxConnsPerHost:   1,
	}
	if h1 {
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func (s *served) url(path string) string { return "https://" + s.addr + path }

func pool(t testing.TB, pemCerts []byte) *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pemCerts) {
		t.Fatal("no certificate in PEM")
	}
	return p
}

func adminClient(t testing.TB, c *testenv.Cluster) *kubernetes.Clientset {
	t.Helper()
	cs, err := kubernetes.NewForConfig(c.REST)
	if err != nil {
		t.Fatal(err)
	}
	return cs
}

// createPod creates a pod directly upstream and deletes it at the end.
func createPod(t testing.TB, c *testenv.Cluster, name string, mutate ...func(*corev1.Pod)) *corev1.Pod {
	t.Helper()
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: c.Namespace},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "example.invalid/none"}}},
	}
	for _, m := range mutate {
		m(pod)
	}
	admin := adminClient(t, c)
	out, err := admin.CoreV1().Pods(c.Namespace).Create(context.Background(), pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		zero := int64(0)
		admin.CoreV1().Pods(c.Namespace).Delete(context.Background(), name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	})
	return out
}

// rawUpgrade sends one upgrade request over its own HTTP/1.1 TLS connection
// to addr and returns the response and the connection.
func rawUpgrade(t testing.TB, addr string, ca []byte, method, path string, h http.Header) (*http.Response, net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool(t, ca), NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(20 * time.Second))
	req, err := http.NewRequest(method, "https://"+addr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		t.Fatal(err)
	}
	return resp, conn, br
}

func spdyHeaders() http.Header {
	return http.Header{
		"Connection":                {"Upgrade"},
		"Upgrade":                   {"SPDY/3.1"},
		"X-Stream-Protocol-Version": {"v4.channel.k8s.io"},
	}
}

func websocketHeaders() http.Header {
	return http.Header{
		"Connection":             {"Upgrade"},
		"Upgrade":                {"websocket"},
		"Sec-Websocket-Version":  {"13"},
		"Sec-Websocket-Key":      {"dGhlIHNhbXBsZSBub25jZQ=="},
		"Sec-Websocket-Protocol": {"v5.channel.k8s.io"},
	}
}
