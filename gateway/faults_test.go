package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	goruntime "runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// TestAGatewayThatCannotAuditForwardsNothing: while AuditReady fails, an
// allowed create is answered 503 by the gateway, saying why, never
// reaches the cluster, and is recorded as not forwarded; once AuditReady
// succeeds again the same create goes through.
func TestAGatewayThatCannotAuditForwardsNothing(t *testing.T) {
	alpha := testenv.TestClusters(t).All[0]
	var broken atomic.Bool
	broken.Store(true)
	audit := newAuditLog()
	g, err := New(Config{CallID: "call-" + t.Name(), Plugin: "kubectl-test", Cluster: alpha.Name, Upstream: rest.CopyConfig(alpha.REST),
		Decide: allowAll, Audit: audit.add, Logger: testLogger(t),
		AuditReady: func() error {
			if broken.Load() {
				return errors.New("no space left on device")
			}
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	s := serveGateway(t, g, audit)
	ctx := context.Background()
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "unaudited"}}
	_, err = s.clientset(t).CoreV1().ConfigMaps(alpha.Namespace).Create(ctx, cm, metav1.CreateOptions{})
	if !apierrors.IsServiceUnavailable(err) || !strings.Contains(err.Error(), "cannot audit this request, so it was not forwarded: no space left on device") {
		t.Fatalf("a create that cannot be audited: %v", err)
	}
	if _, err := adminClient(t, alpha).CoreV1().ConfigMaps(alpha.Namespace).Get(ctx, "unaudited", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("the create reached the cluster: %v", err)
	}
	rec := audit.wait(t, 1)[0]
	if rec.Decision != Deny || rec.Rule != RuleAuditUnavailable || rec.Status != http.StatusServiceUnavailable ||
		rec.Verb != "create" || !strings.Contains(rec.Reason, "not forwarded: no space left on device") {
		t.Errorf("record %+v", rec)
	}
	broken.Store(false)
	if _, err := s.clientset(t).CoreV1().ConfigMaps(alpha.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a create once it can be audited: %v", err)
	}
	adminClient(t, alpha).CoreV1().ConfigMaps(alpha.Namespace).Delete(ctx, "unaudited", metav1.DeleteOptions{})
}

// serveGateway serves g on a loopback listener until the test ends.
func serveGateway(t *testing.T, g *Gateway, audit *auditLog) *served {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Serve(l) }()
	t.Cleanup(func() {
		g.Close()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	s := &served{g: g, addr: l.Addr().String(), audit: audit}
	cfg, err := restConfigFor(g, s.addr)
	if err != nil {
		t.Fatal(err)
	}
	s.rest = cfg
	return s
}

func restConfigFor(g *Gateway, addr string) (*rest.Config, error) {
	return &rest.Config{Host: "https://" + addr, TLSClientConfig: rest.TLSClientConfig{CAData: g.CAPEM()}}, nil
}

func readHead(c net.Conn) bool {
	req, err := http.ReadRequest(bufio.NewReader(c))
	if err == nil {
		req.Body.Close()
	}
	return err == nil
}

// TestAGatewayOverAFaultyClusterAnswersAndLeaksNothing: over a cluster
// that is down, answers garbage, stalls before its headers or after them,
// the gateway answers the plugin (502 saying why, or, for a stall, ends
// the request when the plugin gives up), audits each request with the
// reason, survives a malformed 200, and once closed holds no connection
// to the cluster and no goroutine more than before, served on a listener
// or in process.
func TestAGatewayOverAFaultyClusterAnswersAndLeaksNothing(t *testing.T) {
	down := "https://" + testenv.RefusedAddr(t)
	faults := map[string]*testenv.FaultServer{
		"notls": testenv.StartFault(t, false, func(c net.Conn) { io.WriteString(c, "\x00\x01\x02garbage, not TLS\r\n") }),
		"garbage": testenv.StartFault(t, true, func(c net.Conn) {
			if readHead(c) {
				io.WriteString(c, "\x00\x01\x02 this is not HTTP\r\n\r\n")
			}
		}),
		"stall": testenv.StartFault(t, true, func(c net.Conn) { io.Copy(io.Discard, c) }),
		"headers": testenv.StartFault(t, true, func(c net.Conn) {
			if readHead(c) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"kind\":")
				io.Copy(io.Discard, c)
			}
		}),
		"malformed": testenv.StartFault(t, true, func(c net.Conn) {
			if readHead(c) {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 9\r\nConnection: close\r\n\r\n{not json")
			}
		}),
	}
	urls := map[string]string{"down": down}
	for name, f := range faults {
		urls[name] = f.URL
	}
	type want struct {
		status int    // what the plugin gets; 0: it gives up first
		reason string // in the record
	}
	wants := map[string]want{
		"down":      {http.StatusBadGateway, "connection refused"},
		"notls":     {http.StatusBadGateway, "does not look like a TLS handshake"},
		"garbage":   {http.StatusBadGateway, "malformed HTTP"},
		"stall":     {0, "went away while waiting"},
		"headers":   {http.StatusOK, "cut short"},
		"malformed": {http.StatusOK, ""},
	}
	round := func(inProcess bool) {
		for _, name := range []string{"down", "notls", "garbage", "stall", "headers", "malformed"} {
			audit := newAuditLog()
			g, err := New(Config{CallID: "call-" + name, Plugin: "kubectl-test", Cluster: name,
				Upstream: &rest.Config{Host: urls[name], BearerToken: "fault-token", TLSClientConfig: rest.TLSClientConfig{Insecure: true}},
				Decide:   allowAll, Audit: audit.add, Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			var status int
			var body string
			if inProcess {
				w := httptest.NewRecorder()
				req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/api/v1/namespaces/default/pods", nil)
				g.Handler().ServeHTTP(w, req)
				status, body = w.Code, w.Body.String()
				if ctx.Err() != nil && name == "stall" {
					status = 0
				}
			} else {
				l, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				done := make(chan error, 1)
				go func() { done <- g.Serve(l) }()
				tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool(t, g.CAPEM())}}
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://"+l.Addr().String()+"/api/v1/namespaces/default/pods", nil)
				resp, err := tr.RoundTrip(req)
				if err == nil {
					status = resp.StatusCode
					b, _ := io.ReadAll(resp.Body)
					body = string(b)
					resp.Body.Close()
				}
				tr.CloseIdleConnections()
				defer func() {
					if err := <-done; err != nil {
						t.Errorf("%s: Serve: %v", name, err)
					}
				}()
			}
			cancel()
			rec := audit.wait(t, 1)[0]
			g.Close()
			w := wants[name]
			if status != w.status || w.reason == "" && rec.Reason != "" || !strings.Contains(rec.Reason, w.reason) {
				t.Errorf("%s (in process %v): the plugin got %d %q, record %+v; want %d and a reason with %q", name, inProcess, status, body, rec, w.status, w.reason)
			}
			if w.status == http.StatusBadGateway && !strings.Contains(body, "did not answer") {
				t.Errorf("%s: the plugin's 502 does not say why: %q", name, body)
			}
			if f := faults[name]; f != nil {
				for deadline := time.Now().Add(5 * time.Second); f.Open() > 0; time.Sleep(20 * time.Millisecond) {
					if time.Now().After(deadline) {
						t.Errorf("%s: %d connections to the cluster open after Close", name, f.Open())
						break
					}
				}
			}
		}
	}
	// A first round starts what lives as long as the process (client-go's
	// caches); later rounds must not add to it.
	round(false)
	round(true)
	before := settledGoroutines(0)
	for range 3 {
		round(false)
		round(true)
	}
	after := settledGoroutines(before)
	t.Logf("goroutines: %d before three more rounds over the faulty clusters, %d after", before, after)
	if after > before {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines before three more rounds, %d after:\n%s", before, after, buf[:goruntime.Stack(buf, true)])
	}
}

// settledGoroutines waits up to 5s for the count to fall to at most
// target (0: just let it settle) and returns it.
func settledGoroutines(target int) int {
	n := goruntime.NumGoroutine()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if n = goruntime.NumGoroutine(); target > 0 && n <= target {
			return n
		}
		if target == 0 {
			time.Sleep(time.Second)
			return goruntime.NumGoroutine()
		}
	}
	return n
}
