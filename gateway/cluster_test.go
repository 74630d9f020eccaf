package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

func TestKubeconfigListsNamespacesAndHoldsNoSecret(t *testing.T) {
	clusters := testenv.TestClusters(t)
	for _, c := range clusters.All {
		t.Run(c.Name, func(t *testing.T) {
			s := serveCluster(t, c, allowAll)
			list, err := s.clientset(t).CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for _, ns := range list.Items {
				names = append(names, ns.Name)
			}
			if !slices.Contains(names, c.Namespace) {
				t.Errorf("namespaces through the gateway %v lack %s", names, c.Namespace)
			}

			data, err := clientcmd.Write(*s.g.Kubeconfig(s.addr))
			if err != nil {
				t.Fatal(err)
			}
			for _, other := range clusters.All {
				if bytes.Contains(data, []byte(other.Token)) {
					t.Errorf("kubeconfig holds cluster %s's token", other.Name)
				}
			}
			for _, word := range []string{"token", "password", "client-key", "client-certificate", "exec", "auth-provider"} {
				if bytes.Contains(bytes.ToLower(data), []byte(word)) {
					t.Errorf("kubeconfig contains %q:\n%s", word, data)
				}
			}
			if !bytes.Contains(data, []byte("https://"+s.addr)) {
				t.Errorf("kubeconfig does not point at the gateway:\n%s", data)
			}
		})
	}
}

func TestClusterTokenNeverReachesThePlugin(t *testing.T) {
	clusters := testenv.TestClusters(t)
	c := clusters.All[0]
	denyDeletes := func(r Request) Decision {
		if r.Verb == "delete" {
			return Decision{Reason: "no deletes", Rule: "test.no_delete"}
		}
		return allowAll(r)
	}
	s := serveCluster(t, c, denyDeletes)
	client := s.httpClient(t, false)
	secrets := []string{c.Token, "Bearer"}
	for _, tc := range []struct {
		method, path string
		status       int
	}{
		{"GET", "/version", 200},
		{"GET", "/api/v1/namespaces/" + c.Namespace, 200},
		{"GET", "/api/v1/namespaces/" + c.Namespace + "/pods/missing", 404},
		{"DELETE", "/api/v1/namespaces/" + c.Namespace + "/pods/missing", 403},
		{"GET", "/apis/authentication.k8s.io/v1", 200},
		{"GET", "/api/v1/namespaces/" + c.Namespace + "/pods?watch=true&timeoutSeconds=1", 200},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, s.url(tc.path), nil)
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Errorf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			var headers strings.Builder
			resp.Header.Write(&headers)
			resp.Trailer.Write(&headers)
			for _, secret := range secrets {
				if strings.Contains(headers.String(), secret) {
					t.Errorf("response headers hold %q:\n%s", secret, headers.String())
				}
				if strings.Contains(string(body), secret) {
					t.Errorf("response body holds %q", secret)
				}
			}
		})
	}
}

func TestDeletePods(t *testing.T) {
	c := testenv.TestClusters(t).All[0]
	denyDeletes := func(r Request) Decision {
		if r.Verb == "delete" || r.Verb == "deletecollection" {
			return Decision{Reason: fmt.Sprintf("deleting %s is not allowed", r.Resource), Rule: "read_only"}
		}
		return allowAll(r)
	}
	for _, tc := range []struct {
		name    string
		decide  Decider
		status  int
		present bool
	}{
		{"denied", denyDeletes, http.StatusForbidden, true},
		{"allowed", allowAll, http.StatusOK, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pod := "del-" + tc.name
			createPod(t, c, pod)
			s := serveCluster(t, c, tc.decide)
			path := "/api/v1/namespaces/" + c.Namespace + "/pods/" + pod
			req, _ := http.NewRequest("DELETE", s.url(path), nil)
			resp, err := s.httpClient(t, false).Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			recs := s.audit.wait(t, 1)
			r := recs[0]
			if r.Verb != "delete" || r.Resource != "pods" || r.Namespace != c.Namespace || r.Name != pod || r.Status != tc.status ||
				r.Method != "DELETE" || r.Path != path || r.Cluster != c.Name || r.Plugin != "kubectl-test" {
				t.Errorf("audit record %+v", r)
			}

			_, err = adminClient(t, c).CoreV1().Pods(c.Namespace).Get(context.Background(), pod, metav1.GetOptions{})
			if tc.present && err != nil {
				t.Errorf("pod is gone after a denied delete: %v", err)
			}
			if !tc.present {
				if err == nil {
					// Deleting a pod sets its deletionTimestamp; with no
					// node to confirm, it may linger: it must be marked.
					p, _ := adminClient(t, c).CoreV1().Pods(c.Namespace).Get(context.Background(), pod, metav1.GetOptions{})
					if p.DeletionTimestamp == nil {
						t.Errorf("pod still there and not being deleted after an allowed delete")
					}
				} else if !apierrors.IsNotFound(err) {
					t.Error(err)
				}
			}

			if tc.status != http.StatusForbidden {
				if r.Decision != Allow || r.Rule != "test.allow_all" {
					t.Errorf("audit record %+v", r)
				}
				return
			}
			if r.Decision != Deny || r.Rule != "read_only" || r.Reason != "deleting pods is not allowed" || r.BytesOut != int64(len(body)) {
				t.Errorf("audit record %+v", r)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			var st metav1.Status
			if err := json.Unmarshal(body, &st); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			want := metav1.Status{
				TypeMeta: metav1.TypeMeta{Kind: "Status", APIVersion: "v1"},
				Status:   metav1.StatusFailure,
				Message:  "deleting pods is not allowed (rule read_only)",
				Reason:   metav1.StatusReasonForbidden,
				Details:  &metav1.StatusDetails{Name: pod, Kind: "pods"},
				Code:     403,
			}
			if got, _ := json.Marshal(st); string(got) != mustJSON(want) {
				t.Errorf("status\n%s\nwant\n%s", got, mustJSON(want))
			}
			if !strings.Contains(string(body), `"metadata":{}`) {
				t.Errorf("status lacks metadata: %s", body)
			}

			// What kubectl prints comes from client-go's reading of it.
			err = s.clientset(t).CoreV1().Pods(c.Namespace).Delete(context.Background(), pod, metav1.DeleteOptions{})
			if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "(rule read_only)") {
				t.Errorf("client-go error %v", err)
			}
		})
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func TestPluginCannotChooseIdentity(t *testing.T) {
	clusters := testenv.TestClusters(t)
	alpha, beta := clusters.All[0], clusters.All[1]
	s := serveCluster(t, alpha, allowAll)
	client := s.httpClient(t, false)
	for _, tc := range []struct {
		name string
		h    http.Header
	}{
		{"none", http.Header{}},
		{"other cluster's token", http.Header{"Authorization": {"Bearer " + beta.Token}}},
		{"basic auth", http.Header{"Authorization": {"Basic YWRtaW46YWRtaW4="}}},
		{"impersonate anonymous", http.Header{"Impersonate-User": {"system:anonymous"}}},
		{"impersonate group", http.Header{"Impersonate-User": {"someone"}, "Impersonate-Group": {"nobody"}, "Impersonate-Uid": {"1"}, "Impersonate-Extra-Scopes": {"x"}}},
		{"front proxy", http.Header{"X-Remote-User": {"system:anonymous"}, "X-Remote-Group": {"nobody"}}},
		{"everything", http.Header{"Authorization": {"Bearer " + beta.Token}, "Impersonate-User": {"system:anonymous"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			review := `{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}`
			req, _ := http.NewRequest("POST", s.url("/apis/authentication.k8s.io/v1/selfsubjectreviews"), strings.NewReader(review))
			req.Header = tc.h.Clone()
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			var ssr authnv1.SelfSubjectReview
			if err := json.Unmarshal(body, &ssr); err != nil {
				t.Fatal(err)
			}
			if u := ssr.Status.UserInfo; u.Username != "admin" || !slices.Contains(u.Groups, "system:masters") {
				t.Errorf("acted as %+v, want the cluster's admin", u)
			}
			// And a request needing the admin's rights works.
			req, _ = http.NewRequest("GET", s.url("/api/v1/namespaces/"+alpha.Namespace+"/secrets"), nil)
			req.Header = tc.h.Clone()
			resp, err = client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("listing secrets: status %d", resp.StatusCode)
			}
		})
	}
}

func TestWatchStreams(t *testing.T) {
	c := testenv.TestClusters(t).All[0]
	for _, tc := range []struct {
		name string
		end  func(s *served, w watch.Interface)
	}{
		{"plugin stops", func(s *served, w watch.Interface) { w.Stop() }},
		{"gateway closes", func(s *served, w watch.Interface) { s.g.Close() }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := serveCluster(t, c, allowAll)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			w, err := s.clientset(t).CoreV1().Pods(c.Namespace).Watch(ctx, metav1.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer w.Stop()
			// Let the watch be established upstream before the pod appears.
			time.Sleep(200 * time.Millisecond)
			pod := "watched-" + strings.ReplaceAll(tc.name, " ", "-")
			created := time.Now()
			createPod(t, c, pod)
			timeout := time.After(5 * time.Second)
		wait:
			for {
				select {
				case ev, ok := <-w.ResultChan():
					if !ok {
						t.Fatal("watch ended before the event")
					}
					if p, isPod := ev.Object.(*corev1.Pod); isPod && ev.Type == watch.Added && p.Name == pod {
						t.Logf("ADDED arrived %v after the create", time.Since(created))
						break wait
					}
				case <-timeout:
					t.Fatal("no ADDED event through the gateway within 5s")
				}
			}
			if recs := s.audit.all(); len(recs) != 0 {
				t.Fatalf("audited before the watch ended: %+v", recs)
			}
			tc.end(s, w)
			// The watch's channel closes either way.
			for range w.ResultChan() {
			}
			s.audit.wait(t, 1)
			time.Sleep(200 * time.Millisecond) // no second record comes late
			recs := s.audit.all()
			if len(recs) != 1 {
				t.Fatalf("want one record, have %+v", recs)
			}
			r := recs[0]
			if r.Verb != "watch" || r.Resource != "pods" || r.Namespace != c.Namespace || r.Decision != Allow || r.Status != 200 || r.BytesOut == 0 || r.LatencyMS < 200 {
				t.Errorf("audit record %+v", r)
			}
		})
	}
}

func TestAuditMatchesRequests(t *testing.T) {
	c := testenv.TestClusters(t).All[0]
	decide := func(r Request) Decision {
		if r.Resource == "secrets" {
			return Decision{Reason: "no secrets", Rule: "test.no_secrets"}
		}
		return allowAll(r)
	}
	s := serveCluster(t, c, decide)
	// HTTP/1.1 over one connection: the gateway handles the requests one
	// after the other, as sent.
	client := s.httpClient(t, true)
	ns := "/api/v1/namespaces/" + c.Namespace
	reqs := []struct {
		method, path, body string
		status             int
		verb, decision     string
	}{
		{"GET", "/version", "", 200, "get", Allow},
		{"GET", ns, "", 200, "get", Allow},
		{"GET", ns + "/secrets", "", 403, "list", Deny},
		{"POST", ns + "/configmaps", `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"audit-cm"},"data":{"a":"b"}}`, 201, "create", Allow},
		{"GET", ns + "/configmaps/audit-cm", "", 200, "get", Allow},
		{"GET", ns + "/pods/missing", "", 404, "get", Allow},
		{"DELETE", ns + "/secrets/x", "", 403, "delete", Deny},
		{"DELETE", ns + "/configmaps/audit-cm", "", 200, "delete", Allow},
		{"GET", "/api", "", 200, "get", Allow},
		{"GET", ns + "/configmaps?limit=1", "", 200, "list", Allow},
	}
	for _, r := range reqs {
		req, _ := http.NewRequest(r.method, s.url(r.path), strings.NewReader(r.body))
		if r.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != r.status {
			t.Errorf("%s %s: status %d, want %d", r.method, r.path, resp.StatusCode, r.status)
		}
	}
	s.audit.wait(t, len(reqs))
	time.Sleep(100 * time.Millisecond) // no extra record comes late
	recs := s.audit.all()
	if len(recs) != len(reqs) {
		t.Fatalf("%d requests, %d records", len(reqs), len(recs))
	}
	for i, r := range reqs {
		rec := recs[i]
		path, _, _ := strings.Cut(r.path, "?")
		if rec.Method != r.method || rec.Path != path || rec.Status != r.status || rec.Verb != r.verb || rec.Decision != r.decision {
			t.Errorf("record %d: %+v, want %s %s %d %s %s", i, rec, r.method, path, r.status, r.verb, r.decision)
		}
		if rec.BytesIn != int64(len(r.body)) {
			t.Errorf("record %d: bytes_in %d, want %d", i, rec.BytesIn, len(r.body))
		}
		if rec.BytesOut == 0 || rec.LatencyMS <= 0 || rec.CallID == "" || rec.Time.IsZero() {
			t.Errorf("record %d: %+v", i, rec)
		}
		if i > 0 && rec.Time.Before(recs[i-1].Time) {
			t.Errorf("record %d is out of order", i)
		}
	}
	line, _ := json.Marshal(recs[2])
	for _, key := range []string{"call_id", "plugin", "cluster", "time", "method", "path", "verb", "group", "version", "resource", "subresource", "namespace", "name", "decision", "rule", "status", "bytes_in", "bytes_out", "latency_ms", "reason"} {
		if !strings.Contains(string(line), `"`+key+`":`) {
			t.Errorf("record JSON lacks %q: %s", key, line)
		}
	}
	if line, _ := json.Marshal(recs[0]); strings.Contains(string(line), `"reason"`) {
		t.Errorf("allowed record has a reason: %s", line)
	}
}

func TestNonResourceRequests(t *testing.T) {
	c := testenv.TestClusters(t).All[0]
	for _, tc := range []struct {
		name   string
		allow  bool
		status int
	}{
		{"allowed", true, 200},
		{"denied", false, 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := &seenRequests{}
			s := serveCluster(t, c, seen.wrap(func(r Request) Decision {
				return Decision{Allowed: tc.allow, Reason: "non-resource", Rule: "test.nonresource"}
			}))
			resp, err := s.httpClient(t, false).Get(s.url("/version"))
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			want := []Request{{IsResourceRequest: false, Path: "/version", Verb: "get"}}
			if got := seen.take(); !slices.Equal(got, want) {
				t.Errorf("Decider saw %+v, want %+v", got, want)
			}
			if tc.allow {
				var v version.Info
				if err := json.Unmarshal(body, &v); err != nil || v.GitVersion == "" {
					t.Errorf("version %s: %v", body, err)
				}
			} else if !strings.Contains(string(body), "non-resource (rule test.nonresource)") || strings.Contains(string(body), "details") {
				t.Errorf("denial %s", body)
			}
		})
	}
}

func TestGatewayReachesOnlyItsCluster(t *testing.T) {
	clusters := testenv.TestClusters(t)
	alpha, beta := clusters.All[0], clusters.All[1]
	createPod(t, beta, "beta-only")
	s := serveCluster(t, alpha, allowAll)
	cs := s.clientset(t)
	ctx := context.Background()

	pods, err := cs.CoreV1().Pods(beta.Namespace).List(ctx, metav1.ListOptions{})
	if err == nil && len(pods.Items) != 0 {
		t.Errorf("alpha's gateway lists beta's pods: %v", pods.Items)
	} else if err != nil && !apierrors.IsNotFound(err) {
		t.Errorf("listing beta's pods: %v", err)
	}
	if _, err := cs.CoreV1().Pods(beta.Namespace).Get(ctx, "beta-only", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("getting beta's pod through alpha's gateway: %v, want NotFound", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, beta.Namespace, metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("beta's namespace through alpha's gateway: %v, want NotFound", err)
	}
	if _, err := cs.CoreV1().Namespaces().Get(ctx, alpha.Namespace, metav1.GetOptions{}); err != nil {
		t.Errorf("alpha's namespace through alpha's gateway: %v", err)
	}
}

func TestDeniedExecIsQuick(t *testing.T) {
	c := testenv.TestClusters(t).All[0]
	createPod(t, c, "exec-target")
	seen := &seenRequests{}
	s := serveCluster(t, c, seen.wrap(func(r Request) Decision {
		if r.Subresource == "exec" || r.Subresource == "attach" || r.Subresource == "portforward" {
			return Decision{Reason: "no exec", Rule: "test.no_exec"}
		}
		return allowAll(r)
	}))
	for _, tc := range []struct {
		name, method, sub string
		h                 http.Header
	}{
		{"exec spdy", "POST", "exec?command=sh&stdin=true&stdout=true", spdyHeaders()},
		{"exec websocket", "GET", "exec?command=sh&stdin=true&stdout=true", websocketHeaders()},
		{"attach spdy", "POST", "attach?stdout=true", spdyHeaders()},
		{"portforward websocket", "GET", "portforward?ports=80", websocketHeaders()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen.take()
			start := time.Now()
			path := "/api/v1/namespaces/" + c.Namespace + "/pods/exec-target/" + tc.sub
			resp, _, _ := rawUpgrade(t, s.addr, s.g.CAPEM(), tc.method, path, tc.h)
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if took := time.Since(start); took > 2*time.Second {
				t.Errorf("denial took %v", took)
			}
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "no exec (rule test.no_exec)") {
				t.Errorf("status %d: %s", resp.StatusCode, body)
			}
			sub, _, _ := strings.Cut(tc.sub, "?")
			if got := seen.take(); len(got) != 1 || got[0].Subresource != sub || got[0].Name != "exec-target" || got[0].Resource != "pods" {
				t.Errorf("Decider saw %+v", got)
			}
		})
	}
}
