package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/go-hclog"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"
)

// received is what the fuzzed upstream was sent, and what the Decider was
// asked, for one input.
type received struct {
	mu      sync.Mutex
	asked   []Request
	allowed []bool
	got     []*http.Request
}

func (r *received) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.asked, r.allowed, r.got = nil, nil, nil
}

// podsReader allows get and list of pods (no subresource) in namespace ns.
func podsReader(req Request) bool {
	return req.IsResourceRequest && (req.Verb == "get" || req.Verb == "list") &&
		req.APIGroup == "" && req.Resource == "pods" && req.Subresource == "" && req.Namespace == "ns"
}

// FuzzClassify sends an arbitrary method and request target through a
// real gateway (Handler) to an upstream that records what reaches it, with
// a Decider that allows only get and list of pods in namespace ns. Whatever
// reaches the upstream must have been allowed by the Decider, with the path
// the Decider saw, and must be, as the upstream parses it, a get or list of
// pods in ns: never secrets.
func FuzzClassify(f *testing.F) {
	rec := &received{}
	info := request.RequestInfoFactory{APIPrefixes: sets.NewString("api", "apis"), GrouplessAPIPrefixes: sets.NewString("api")}
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		rec.mu.Lock()
		rec.got = append(rec.got, r.Clone(r.Context()))
		rec.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"kind":"PodList","apiVersion":"v1","items":[]}`)
	}))
	f.Cleanup(upstream.Close)
	g, err := New(Config{
		CallID: "fuzz", Plugin: "p", Cluster: "test",
		Upstream: &rest.Config{Host: upstream.URL, BearerToken: "secret-token"},
		Decide: func(req Request) Decision {
			ok := podsReader(req)
			rec.mu.Lock()
			rec.asked = append(rec.asked, req)
			rec.allowed = append(rec.allowed, ok)
			rec.mu.Unlock()
			if ok {
				return Decision{Allowed: true, Reason: "pods in ns may be read", Rule: "fuzz.pods"}
			}
			return Decision{Reason: "only pods in ns may be read", Rule: "fuzz.deny"}
		},
		Logger: hclog.NewNullLogger(),
	})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { g.Close() })
	h := g.Handler()

	for _, m := range []string{"GET", "get", "Get", "HEAD", "POST", "DELETE", "PATCH", "PUT", "OPTIONS", "CONNECT", "WATCH", "LIST"} {
		f.Add(m, "/api/v1/namespaces/ns/pods")
	}
	for _, target := range []string{
		"/api/v1/namespaces/ns/pods", "/api/v1/namespaces/ns/pods/p", "/api/v1/namespaces/ns/pods/",
		"/api/v1/namespaces/ns/pods?watch=true", "/api/v1/namespaces/ns/pods?watch=1&watch=false",
		"/api/v1/namespaces/ns/pods?watch=true;x=1", "/api/v1/namespaces/ns/pods?x;watch=true",
		"/api/v1/namespaces/ns/pods/p?fieldSelector=metadata.name%3Dq", "/api/v1/namespaces/ns/pods/p/log",
		"/api/v1/namespaces/ns/pods/p/exec?command=sh", "/api/v1/namespaces/ns/pods/p/proxy/x",
		"/api/v1/namespaces/ns/pods/secrets", "/api/v1/secrets", "//api/v1/secrets", "//api/v1/namespaces/ns/pods",
		"/api/v1/namespaces/ns/secrets", "/api/v1/namespaces/ns/secrets/s", "/api/v1/namespaces/ns/pods/../secrets",
		"/api/v1/namespaces/ns/pods/..%2Fsecrets", "/api/v1/namespaces/ns/pods%2F..%2Fsecrets",
		"/api/v1/namespaces/ns/pods/p%2F..%2F..%2Fsecrets", "/api/v1/namespaces%2Fns%2Fpods",
		"/api/v1/namespaces/ns%2Fpods", "/api/v1/namespaces/ns/pods/%2e%2e/secrets", "/api/v1/namespaces/ns/./pods",
		"/api/v1/namespaces/ns//pods", "/api/v1/namespaces/ns/pods%3Fwatch=true", "/api/v1/namespaces/ns/pods%23x",
		"/api/v1/watch/namespaces/ns/secrets", "/api/v1/watch/namespaces/ns/pods", "/api/v1/namespaces/ns/pods/%00",
		"/api/v1/namespaces/NS/pods", "/api/v1/namespaces/ns/PODS", "/API/v1/namespaces/ns/pods",
		"/apis/v1/namespaces/ns/pods", "/apis/core/v1/namespaces/ns/pods", "/api/v1/pods", "/api/v1/namespaces/ns",
		"/api/v1/namespaces/ns/pods/p/status", "http://evil.example/api/v1/namespaces/ns/pods",
		"*", "api/v1/namespaces/ns/pods", "/api/v1/namespaces/ns/pods/p%20q", "/api/v1/namespaces/ns/pods/%E2%80%AE",
		"/api/v1/namespaces/ns/pods\\..\\secrets", "/api/v1/namespaces/ns/pods/p;/../../secrets",
	} {
		f.Add("GET", target)
	}
	f.Add("DELETE", "/api/v1/namespaces/ns/pods")
	f.Add("get", "/api/v1/namespaces/ns/secrets")

	f.Fuzz(func(t *testing.T, method, target string) {
		if method == "" || len(method) > 16 || strings.IndexFunc(method, func(r rune) bool { return r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) }) >= 0 {
			return // net/http's server refuses such a method before any handler
		}
		if len(target) > 2048 || strings.IndexFunc(target, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
			return // no request line (nor HTTP/2 :path) carries these
		}
		u, err := url.ParseRequestURI(target)
		if err != nil {
			return // net/http's server answers 400 itself
		}
		r := &http.Request{
			Method: method, URL: u, RequestURI: target, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			Header: http.Header{}, Host: "gateway.invalid", Body: http.NoBody,
		}
		rec.reset()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		rec.mu.Lock()
		asked, allowed, got := rec.asked, rec.allowed, rec.got
		rec.mu.Unlock()
		if len(asked) > 1 {
			t.Fatalf("%s %q: the Decider was asked %d times: %+v", method, target, len(asked), asked)
		}
		if len(got) == 0 {
			if len(asked) == 1 && allowed[0] {
				t.Fatalf("%s %q: allowed as %+v, but not forwarded: %d %s", method, target, asked[0], w.Code, w.Body)
			}
			if w.Code < 400 {
				t.Fatalf("%s %q: status %d but nothing reached the upstream", method, target, w.Code)
			}
			return
		}
		if len(got) > 1 {
			t.Fatalf("%s %q: the upstream got %d requests", method, target, len(got))
		}
		if len(asked) != 1 || !allowed[0] {
			t.Fatalf("%s %q reached the upstream as %s %q, but the Decider was asked %+v, allowed %v", method, target, got[0].Method, got[0].URL, asked, allowed)
		}
		up := got[0]
		if up.URL.Path != asked[0].Path || up.URL.Path != u.Path {
			t.Fatalf("%s %q: the Decider saw path %q, the upstream got %q (raw %q)", method, target, asked[0].Path, up.URL.Path, up.URL.EscapedPath())
		}
		if up.Method != method {
			t.Fatalf("%s %q: the upstream got method %q", method, target, up.Method)
		}
		// The upstream, parsing what it got as an API server does, must see
		// the request that was allowed.
		ri, err := info.NewRequestInfo(up)
		if err != nil {
			t.Fatalf("%s %q: the upstream cannot parse %q: %v", method, target, up.URL, err)
		}
		seen := Request{
			IsResourceRequest: ri.IsResourceRequest, Path: ri.Path, Verb: ri.Verb, APIGroup: ri.APIGroup, APIVersion: ri.APIVersion,
			Resource: ri.Resource, Subresource: ri.Subresource, Namespace: ri.Namespace, Name: ri.Name,
		}
		if seen != asked[0] {
			t.Fatalf("%s %q: the Decider allowed %+v, the upstream sees %+v", method, target, asked[0], seen)
		}
		if !podsReader(seen) || seen.Resource == "secrets" || strings.Contains(strings.ToLower(seen.Resource+"/"+seen.Subresource), "secret") {
			t.Fatalf("%s %q: forwarded %+v, not a get or list of pods in ns", method, target, seen)
		}
	})
}
