package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/wasmguest"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const page1 = `{"kind":"PodList","apiVersion":"v1","metadata":{"continue":"next"},"items":[
{"metadata":{"name":"web-1","namespace":"%[1]s","creationTimestamp":"2026-12-01T10:00:00Z"},
 "spec":{"nodeName":"node-a","containers":[{"name":"c"}]},
 "status":{"phase":"Running","containerStatuses":[{"name":"c","ready":true,"restartCount":2}]}}]}`

const page2 = `{"kind":"PodList","apiVersion":"v1","metadata":{},"items":[
{"metadata":{"name":"web-2","namespace":"%[1]s","creationTimestamp":"2026-11-28T12:00:00Z","deletionTimestamp":"2026-12-01T11:59:00Z"},
 "spec":{"containers":[{"name":"c"},{"name":"d"}]},
 "status":{"phase":"Running","containerStatuses":[{"name":"c","ready":true,"restartCount":0},{"name":"d","ready":false,"restartCount":1}]}}]}`

// cluster serves two pages of pods and records the requests' paths and queries.
func cluster(t *testing.T) (func() (*rest.Config, error), *[]string) {
	t.Helper()
	var requests []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests = append(requests, r.URL.Path+"?"+r.URL.RawQuery)
		ns := "default"
		if parts := strings.Split(r.URL.Path, "/"); len(parts) == 6 {
			ns = parts[4]
		}
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Query().Get("continue") == "" {
			fmt.Fprintf(w, page1, ns)
		} else {
			fmt.Fprintf(w, page2, ns)
		}
	}))
	t.Cleanup(srv.Close)
	return func() (*rest.Config, error) { return &rest.Config{Host: srv.URL}, nil }, &requests
}

func runPlugin(t *testing.T, config func() (*rest.Config, error), args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, &stdout, &stderr, config, func() time.Time { return now })
	return code, stdout.String(), stderr.String()
}

func TestTable(t *testing.T) {
	config, requests := cluster(t)
	code, out, errOut := runPlugin(t, config, "-n", "kube-system", "-l", "app=web")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := `NAME    READY   PHASE         RESTARTS   NODE     AGE
web-1   1/1     Running       2          node-a   120m
web-2   1/2     Terminating   1          <none>   3d
`
	if out != want {
		t.Errorf("output:\n%s\nwant:\n%s", out, want)
	}
	wantReq := []string{
		"/api/v1/namespaces/kube-system/pods?labelSelector=app%3Dweb&limit=500",
		"/api/v1/namespaces/kube-system/pods?continue=next&labelSelector=app%3Dweb&limit=500",
	}
	if strings.Join(*requests, "\n") != strings.Join(wantReq, "\n") {
		t.Errorf("requests %q, want %q", *requests, wantReq)
	}
}

func TestAllNamespacesByName(t *testing.T) {
	config, requests := cluster(t)
	code, out, errOut := runPlugin(t, config, "-A", "-o", "name")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != "pod/web-1\npod/web-2\n" {
		t.Errorf("output %q", out)
	}
	if (*requests)[0] != "/api/v1/pods?limit=500" {
		t.Errorf("first request %q", (*requests)[0])
	}
}

func TestHelp(t *testing.T) {
	code, out, _ := runPlugin(t, nil, "--help")
	if code != exitOK {
		t.Fatalf("exit %d", code)
	}
	for _, flag := range []string{"-n, --namespace string", "-A, --all-namespaces", "-l, --selector string", "-o, --output string", `(default "default")`} {
		if !strings.Contains(out, flag) {
			t.Errorf("help lacks %q:\n%s", flag, out)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"--nope"}, {"extra"}, {"-o", "yaml"}} {
		if code, _, _ := runPlugin(t, nil, args...); code != exitUsage {
			t.Errorf("%q: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// Built for the host, the plugin reads the kubeconfig as kubectl does.
func TestOutsideSandboxReadsTheKubeconfig(t *testing.T) {
	t.Setenv("KUBECONFIG", filepath.Join(t.TempDir(), "missing"))
	t.Setenv("KUBERNETES_SERVICE_HOST", "")
	code, _, errOut := runPlugin(t, wasmguest.RESTConfig)
	if code != exitError || !strings.Contains(errOut, "invalid configuration") {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
