package gateway

import (
	"bufio"
	"context"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// echoUpgrades is a server that switches to any protocol asked for and then
// echoes; it notes each request's headers and HTTP version.
type echoUpgrades struct {
	mu   sync.Mutex
	seen []*http.Request
}

func (e *echoUpgrades) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.seen = append(e.seen, r.Clone(context.Background()))
	e.mu.Unlock()
	if !isUpgrade(r.Header) {
		fmt.Fprintf(w, "plain over HTTP/%d", r.ProtoMajor)
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: %s\r\n\r\n", r.Header.Get("Upgrade"))
	brw.Flush()
	io.Copy(conn, brw)
}

func (e *echoUpgrades) last() *http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(e.seen) == 0 {
		return nil
	}
	return e.seen[len(e.seen)-1]
}

func certPEM(srv *httptest.Server) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
}

// TestUpgrades runs exec-like upgrades against an upstream that, like
// kube-apiserver, offers HTTP/2: SPDY would fail over it, so the gateway
// must send upgrades over HTTP/1.1.
func TestUpgrades(t *testing.T) {
	echo := &echoUpgrades{}
	up := httptest.NewUnstartedServer(echo)
	up.EnableHTTP2 = true
	up.StartTLS()
	t.Cleanup(up.Close)
	upstream := &rest.Config{Host: up.URL, BearerToken: "upstream-token", TLSClientConfig: rest.TLSClientConfig{CAData: certPEM(up)}}

	// The ordinary transport does speak HTTP/2 to this upstream.
	s := serve(t, upstream, "fake", allowAll)
	resp, err := s.httpClient(t, false).Get(s.url("/version"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "plain over HTTP/2" {
		t.Fatalf("upstream answered %q", body)
	}

	for _, tc := range []struct {
		name    string
		h       http.Header
		closeBy string // "plugin" or "gateway"
	}{
		{"spdy", spdyHeaders(), "plugin"},
		{"websocket", websocketHeaders(), "plugin"},
		{"spdy, gateway closes", spdyHeaders(), "gateway"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serve(t, upstream, "fake", allowAll)
			h := tc.h.Clone()
			h.Set("Authorization", "Bearer plugin-token")
			h.Set("Impersonate-User", "system:anonymous")
			if h.Get("Upgrade") == "websocket" {
				h.Set("Sec-Websocket-Protocol", "v5.channel.k8s.io, base64url.bearer.authorization.k8s.io.cGx1Z2lu")
			}
			resp, conn, br := rawUpgrade(t, s.addr, s.g.CAPEM(), "POST", "/api/v1/namespaces/ns/pods/p/exec?command=sh&stdin=true", h)
			if resp.StatusCode != http.StatusSwitchingProtocols {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status %d: %s", resp.StatusCode, b)
			}
			for _, msg := range []string{"hello\n", "again\n"} {
				if _, err := io.WriteString(conn, msg); err != nil {
					t.Fatal(err)
				}
				got, err := br.ReadString('\n')
				if err != nil || got != msg {
					t.Fatalf("echo %q, %v", got, err)
				}
			}
			r := echo.last()
			if r.ProtoMajor != 1 || r.Header.Get("Authorization") != "Bearer upstream-token" || r.Header.Get("Impersonate-User") != "" ||
				strings.Contains(r.Header.Get("Sec-Websocket-Protocol"), "bearer") || r.URL.RawQuery != "command=sh&stdin=true" {
				t.Errorf("upstream got HTTP/%d %s %v", r.ProtoMajor, r.URL, r.Header)
			}
			if len(s.audit.all()) != 0 {
				t.Fatal("audited while the connection was open")
			}
			switch tc.closeBy {
			case "plugin":
				conn.Close()
			case "gateway":
				done := make(chan struct{})
				go func() { s.g.Close(); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					t.Fatal("Close hangs on an upgraded connection")
				}
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := br.ReadByte(); err == nil || isTimeout(err) {
					t.Errorf("connection still open after Close: %v", err)
				}
			}
			rec := s.audit.wait(t, 1)[0]
			if rec.Status != 101 || rec.Decision != Allow || rec.Subresource != "exec" || rec.Verb != "create" || rec.BytesIn < 12 || rec.BytesOut < 12+int64(len("HTTP/1.1 101")) {
				t.Errorf("audit record %+v", rec)
			}
		})
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// TestExecThroughCluster runs a SPDY exec through the gateway and a real
// kube-apiserver to a stand-in kubelet, which echoes once switched.
func TestExecThroughCluster(t *testing.T) {
	c := testenv.TestClusters(t).All[0]
	kubelet := &echoUpgrades{}
	kl := httptest.NewTLSServer(kubelet)
	t.Cleanup(kl.Close)
	_, port, _ := net.SplitHostPort(kl.Listener.Addr().String())
	var kubeletPort int32
	fmt.Sscan(port, &kubeletPort)

	admin := adminClient(t, c)
	ctx := context.Background()
	node, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "gateway-test-node"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { admin.CoreV1().Nodes().Delete(ctx, node.Name, metav1.DeleteOptions{}) })
	node.Status.Addresses = []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: "127.0.0.1"}}
	node.Status.DaemonEndpoints.KubeletEndpoint.Port = kubeletPort
	if _, err := admin.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	createPod(t, c, "exec-echo", func(p *corev1.Pod) { p.Spec.NodeName = node.Name })

	s := serveCluster(t, c, allowAll)
	path := "/api/v1/namespaces/" + c.Namespace + "/pods/exec-echo/exec?command=cat&container=c&stdin=true&stdout=true"
	resp, conn, br := rawUpgrade(t, s.addr, s.g.CAPEM(), "POST", path, spdyHeaders())
	if resp.StatusCode != http.StatusSwitchingProtocols {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
	if _, err := io.WriteString(conn, "through the cluster\n"); err != nil {
		t.Fatal(err)
	}
	if got, err := bufio.NewReader(br).ReadString('\n'); err != nil || got != "through the cluster\n" {
		t.Fatalf("echo %q, %v", got, err)
	}
	if r := kubelet.last(); r == nil || r.URL.Path != "/exec/"+c.Namespace+"/exec-echo/c" {
		t.Errorf("kubelet got %v", r)
	}
	conn.Close()
	rec := s.audit.wait(t, 1)[0]
	if rec.Status != 101 || rec.Subresource != "exec" || rec.Name != "exec-echo" || rec.BytesIn < 20 {
		t.Errorf("audit record %+v", rec)
	}
}
