package wasm_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

// seen is a request as the gateway got it.
type seen struct {
	method, path, body string
	header             http.Header
	hijacker           bool
	remote             string
}

// fakeGateway stands in for the call's API gateway: it answers by path
// and keeps every request it got.
type fakeGateway struct {
	mu   sync.Mutex
	seen []seen
}

const (
	podJSON  = `{"kind":"Pod","apiVersion":"v1","metadata":{"name":"p","namespace":"default"}}`
	deniedJS = `{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403}`
	bigBytes = 200 << 10 // past wasmguest's first 64 KiB buffer: the short-buffer path
)

// bigBody is bigBytes of text that is not the same byte over and over, so
// that a wrong offset in the short-buffer path shows.
var bigBody = func() []byte {
	var b bytes.Buffer
	for i := 0; b.Len() < bigBytes; i++ {
		fmt.Fprintf(&b, "line %07d\n", i)
	}
	return b.Bytes()[:bigBytes]
}()

func (g *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	_, hijacker := w.(http.Hijacker)
	g.mu.Lock()
	g.seen = append(g.seen, seen{method: r.Method, path: r.URL.Path, body: string(body), header: r.Header.Clone(), hijacker: hijacker, remote: r.RemoteAddr})
	g.mu.Unlock()
	switch r.URL.Path {
	case "/api/v1/namespaces/default/pods/p":
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, podJSON)
	case "/forbidden":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, deniedJS)
	case "/big":
		w.Write(bigBody)
	case "/huge": // over abi.MaxResponseBytes, in 1 MiB writes
		chunk := bytes.Repeat([]byte("h"), 1<<20)
		for i := 0; i <= abi.MaxResponseBytes>>20; i++ {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	case "/echo":
		fmt.Fprintf(w, "got %s %s %s", r.Method, r.URL.Path, body)
	case "/exec":
		if !hijacker {
			w.WriteHeader(http.StatusForbidden)
			io.WriteString(w, "upgrade refused: no hijacker")
			return
		}
		io.WriteString(w, "HIJACKABLE")
	case "/panic":
		panic("the gateway fell over")
	default:
		http.NotFound(w, r)
	}
}

func (g *fakeGateway) last(t *testing.T, path string) seen {
	t.Helper()
	g.mu.Lock()
	defer g.mu.Unlock()
	for i := len(g.seen) - 1; i >= 0; i-- {
		if g.seen[i].path == path {
			return g.seen[i]
		}
	}
	t.Fatalf("the gateway got no request for %s", path)
	return seen{}
}

// TestRoundTrip sends requests through the host function to a gateway of
// the test's: the guest must see exactly what the gateway sent, and the
// gateway exactly what the guest sent.
func TestRoundTrip(t *testing.T) {
	t.Parallel()
	gw := &fakeGateway{}
	b := newBackend(t, wasm.Config{})
	plugin := hostileGuest(t)
	access := cluster(gw)
	for _, tc := range []struct {
		name   string
		args   []string
		exit   int
		stdout string // the whole of it
		check  func(t *testing.T, r run)
	}{
		{"200 JSON", []string{"get", "/api/v1/namespaces/default/pods/p"}, 0,
			fmt.Sprintf("status 200, %d bytes\n%s\n", len(podJSON), podJSON), func(t *testing.T, r run) {
				s := gw.last(t, "/api/v1/namespaces/default/pods/p")
				if s.method != http.MethodGet || s.header.Get("Accept") != "application/json" || s.body != "" {
					t.Errorf("the gateway got %+v", s)
				}
			}},
		{"403", []string{"get", "/forbidden"}, 0, fmt.Sprintf("status 403, %d bytes\n%s\n", len(deniedJS), deniedJS), nil},
		{"404", []string{"get", "/nothing/here"}, 0, "status 404, 19 bytes\n404 page not found\n\n", nil},
		{"a response past the guest's first buffer", []string{"get", "/big"}, 0, fmt.Sprintf("status 200, %d bytes\n%s\n", bigBytes, bigBody), nil},
		{"a response over MaxResponseBytes", []string{"get", "/huge"}, 1, "error: wasmguest: GET /huge: " + abi.StatusResponseTooLarge.String() + "\n", nil},
		{"method, path and body reach the gateway", []string{"send", http.MethodPost, "/echo", `{"a":1}`}, 0,
			"status 200, 22 bytes\ngot POST /echo {\"a\":1}\n", func(t *testing.T, r run) {
				s := gw.last(t, "/echo")
				if s.method != http.MethodPost || s.body != `{"a":1}` || s.header.Get("Content-Type") != "application/json" || s.remote != "wasm-guest" {
					t.Errorf("the gateway got %+v", s)
				}
			}},
		{"an upgrade gets no hijacker", []string{"get", "/exec", http.MethodGet, "upgrade"}, 0,
			"status 403, 28 bytes\nupgrade refused: no hijacker\n", func(t *testing.T, r run) {
				s := gw.last(t, "/exec")
				if s.hijacker || s.header.Get("Upgrade") != "websocket" {
					t.Errorf("the gateway got %+v", s)
				}
			}},
		{"a panicking gateway", []string{"get", "/panic"}, 1, "error: wasmguest: GET /panic: " + abi.StatusFailed.String() + "\n", nil},
		{"bad pointers and bad requests", []string{"badptr"}, 0, fmt.Sprintf(
			"req outside memory: %d\nresp outside memory: %d\nlen outside memory: %d\nhuge req: %d\ngarbage req: %d\nno pending: %d\n",
			abi.StatusBadMemory, abi.StatusBadMemory, abi.StatusBadMemory, abi.StatusRequestTooLarge, abi.StatusBadRequest, abi.StatusNoResponse), nil},
		{"a request over MaxRequestBytes", []string{"big"}, 0, "", func(t *testing.T, r run) {
			if !strings.HasPrefix(r.stdout, "error: ") || !strings.Contains(r.stdout, abi.StatusRequestTooLarge.String()) {
				t.Errorf("want an error naming the limit: %s", r)
			}
		}},
		{"no sockets", []string{"dial"}, 0, "", func(t *testing.T, r run) {
			if !strings.HasPrefix(r.stdout, "error: ") {
				t.Errorf("want an error: %s", r)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runGuest(t, b, plugin, sandbox.Spec{ID: "rt", Args: tc.args, Cluster: access})
			mustExit(t, r, tc.exit)
			if tc.stdout != "" && r.stdout != tc.stdout {
				t.Fatalf("want stdout %q, got %s", clip(tc.stdout), r)
			}
			if tc.check != nil {
				tc.check(t, r)
			}
		})
	}
	g := func() int { gw.mu.Lock(); defer gw.mu.Unlock(); return len(gw.seen) }()
	if g != 8 { // one request for each case but badptr, big and dial
		t.Errorf("the gateway got %d requests, want 8", g)
	}
	assertServes(t, b)
}

// TestRoundTripWithoutCluster: with no cluster, every call of the host
// function answers NoCluster, whatever its arguments.
func TestRoundTripWithoutCluster(t *testing.T) {
	t.Parallel()
	b := newBackend(t, wasm.Config{})
	plugin := hostileGuest(t)
	r := runGuest(t, b, plugin, sandbox.Spec{Args: []string{"get", "/api/v1/namespaces"}})
	mustExit(t, r, 1)
	if want := "error: wasmguest: GET /api/v1/namespaces: " + abi.StatusNoCluster.String() + "\n"; r.stdout != want {
		t.Fatalf("want %q, got %s", want, r)
	}
	r = runGuest(t, b, plugin, sandbox.Spec{Args: []string{"badptr"}})
	mustExit(t, r, 0)
	n := abi.StatusNoCluster
	if want := fmt.Sprintf("req outside memory: %d\nresp outside memory: %d\nlen outside memory: %d\nhuge req: %d\ngarbage req: %d\nno pending: %d\n", n, n, n, n, n, n); r.stdout != want {
		t.Fatalf("want %q, got %s", want, r)
	}
	r = runGuest(t, b, plugin, sandbox.Spec{Args: []string{"read", wasm.KubeconfigPath}})
	mustExit(t, r, 0) // no kubeconfig without a cluster
	r = runGuest(t, b, plugin, sandbox.Spec{Args: []string{"hello"}, Cluster: &sandbox.ClusterAccess{Kubeconfig: cluster(nil).Kubeconfig}})
	if r.err == nil || !strings.Contains(r.err.Error(), "in-process gateway") {
		t.Fatalf("want an error for a cluster without a Handler: %s", r)
	}
	r = runGuest(t, b, plugin, sandbox.Spec{Args: []string{"hello"}, Cluster: &sandbox.ClusterAccess{Handler: http.NotFoundHandler()}})
	if r.err == nil || !strings.Contains(r.err.Error(), "no kubeconfig") {
		t.Fatalf("want an error for a cluster without a Kubeconfig: %s", r)
	}
}
