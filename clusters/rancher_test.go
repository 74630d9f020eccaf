package clusters_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// offline is a Rancher cluster whose kubeconfig names a server nobody
// serves: for tests that never talk to it.
func offline(id, name string) testenv.RancherCluster {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: "https://127.0.0.1:1/k8s/clusters/" + id}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "kubeconfig-user-" + id + ":secret"}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		panic(err)
	}
	return testenv.RancherCluster{ID: id, Name: name, State: "active", Kubeconfig: data}
}

type rancherFixture struct {
	fake *testenv.Rancher
	dir  string
	reg  *clusters.Registry
	src  *clusters.Rancher
}

// newRancher loads a registry with the fake as its Rancher source, in dir
// ("" for a new folder), and the files of kubeconfigDir.
func newRancher(t *testing.T, fake *testenv.Rancher, dir string, opts clusters.Options, ropts clusters.RancherOptions) *rancherFixture {
	t.Helper()
	if dir == "" {
		dir = filepath.Join(t.TempDir(), "rancher")
	}
	ropts.URL, ropts.Dir = fake.URL, dir
	if ropts.Token == "" && ropts.TokenFile == "" {
		ropts.Token = fake.Token
	}
	if ropts.Timeout == 0 {
		ropts.Timeout = 2 * time.Second
	}
	src, err := clusters.NewRancher(ropts)
	if err != nil {
		t.Fatal(err)
	}
	opts.Rancher = src
	reg, err := clusters.Load(opts)
	if err != nil {
		t.Fatal(err)
	}
	return &rancherFixture{fake: fake, dir: dir, reg: reg, src: src}
}

func (f *rancherFixture) refresh(t *testing.T) {
	t.Helper()
	if err := f.src.Refresh(context.Background()); err != nil {
		t.Fatalf("refresh: %v", err)
	}
}

func (f *rancherFixture) status() clusters.SourceStatus {
	return f.reg.Sources()[clusters.RancherSource]
}

func wantNames(t *testing.T, reg *clusters.Registry, want ...string) {
	t.Helper()
	if got := reg.Names(); !slices.Equal(got, want) {
		t.Fatalf("Names() = %v, want %v", got, want)
	}
}

func namespaces(t *testing.T, c *clusters.Cluster) []string {
	t.Helper()
	client, err := kubernetes.NewForConfig(c.REST)
	if err != nil {
		t.Fatal(err)
	}
	list, err := client.CoreV1().Namespaces().List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatalf("cluster %s: list namespaces: %v", c.Name, err)
	}
	var names []string
	for _, ns := range list.Items {
		names = append(names, ns.Name)
	}
	return names
}

// Rancher's clusters join the registry beside the files, each reaching its
// own API server; a name a file already has is reported and the file kept;
// every page of the list is read; each kubeconfig is a 0600 file.
func TestRancherClustersJoinTheRegistry(t *testing.T) {
	env := testenv.TestClusters(t)
	alpha, beta := env.All[0], env.All[1]
	fake := testenv.StartRancher(t, alpha.AsRancher("c-prod1", "prod"), beta.AsRancher("c-stag1", "staging"), beta.AsRancher("c-clash", "alpha"),
		offline("c-evil1", "../evil"))
	fake.SetPageSize(1)
	f := newRancher(t, fake, "", clusters.Options{KubeconfigDir: env.KubeconfigDir, DefaultCluster: "prod"}, clusters.RancherOptions{})
	var changes atomic.Int32
	f.reg.Subscribe(func() { changes.Add(1) })
	wantNames(t, f.reg, "alpha", "beta")
	if _, err := f.reg.Get(""); err == nil || !strings.Contains(err.Error(), `the default cluster "prod" is not available now`) {
		t.Errorf("Get(\"\") before the first refresh: %v", err)
	}
	f.refresh(t)
	wantNames(t, f.reg, "alpha", "beta", "prod", "staging")
	if changes.Load() != 1 {
		t.Errorf("subscribers heard %d changes, want 1", changes.Load())
	}
	for name, want := range map[string]*testenv.Cluster{"prod": alpha, "staging": beta, "alpha": alpha} {
		c, err := f.reg.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if ns := namespaces(t, c); !slices.Contains(ns, want.Namespace) {
			t.Errorf("cluster %s (%s) sees %v, want %s", name, c.Source, ns, want.Namespace)
		}
	}
	if def, err := f.reg.Get(""); err != nil || def.Name != "prod" {
		t.Errorf("Get(\"\") = %v, %v; want prod", def, err)
	}
	if c, _ := f.reg.Get("alpha"); !strings.Contains(c.Source, env.KubeconfigDir) {
		t.Errorf("alpha is %s, want the file's", c.Source)
	}
	st := f.status()
	if st.Status != "ok" || st.Clusters != 2 || st.LastSuccess == nil || len(st.Warnings) != 2 ||
		!strings.Contains(st.Warnings[0], `Rancher cluster c-evil1 is left out: its name "../evil" is not a usable cluster name`) ||
		!strings.Contains(st.Warnings[1], `Rancher cluster "alpha" (c-clash) is left out: the name is taken by`) {
		t.Errorf("status = %+v", st)
	}
	if fake.Generated("c-evil1") != 0 || fake.Generated("c-clash") != 0 {
		t.Error("a kubeconfig was generated for a cluster left out")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(f.dir), "evil.yaml")); err == nil {
		t.Error("a file was written outside config_dir")
	}
	for _, name := range []string{"prod.yaml", "staging.yaml", ".kubernetes-mcp-server-rancher.json"} {
		info, err := os.Stat(filepath.Join(f.dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %04o, want 0600", name, info.Mode().Perm())
		}
	}
	if _, err := os.Stat(filepath.Join(f.dir, "alpha.yaml")); err == nil {
		t.Error("the kubeconfig of a cluster left out was written")
	}
	if info, err := os.Stat(f.dir); err != nil || info.Mode().Perm() != 0o700 {
		t.Errorf("config_dir: %v, mode %04o", err, info.Mode().Perm())
	}
}

// A cluster removed in Rancher leaves the registry and its file goes; a
// call that holds it still reaches its cluster; files this source did not
// write stay, and none of them is overwritten.
func TestRancherRemovalKeepsCallsInFlight(t *testing.T) {
	env := testenv.TestClusters(t)
	alpha, beta := env.All[0], env.All[1]
	prod, staging := alpha.AsRancher("c-prod1", "prod"), beta.AsRancher("c-stag1", "staging")
	fake := testenv.StartRancher(t, prod, staging)
	dir := filepath.Join(t.TempDir(), "rancher")
	os.MkdirAll(dir, 0o700)
	os.WriteFile(filepath.Join(dir, "notes.yaml"), []byte("mine\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "qa.yaml"), []byte("also mine\n"), 0o644)
	f := newRancher(t, fake, dir, clusters.Options{}, clusters.RancherOptions{})
	f.refresh(t)
	inFlight, err := f.reg.Get("prod")
	if err != nil {
		t.Fatal(err)
	}
	var changes atomic.Int32
	f.reg.Subscribe(func() { changes.Add(1) })

	fake.SetClusters(staging, offline("c-qa1", "qa"))
	err = f.src.Refresh(context.Background())
	if err == nil || !strings.Contains(err.Error(), "qa.yaml exists and this server did not write it") {
		t.Errorf("refresh with a foreign file in the way: %v", err)
	}
	wantNames(t, f.reg, "staging")
	if changes.Load() != 1 {
		t.Errorf("subscribers heard %d changes, want 1", changes.Load())
	}
	if _, err := os.Stat(filepath.Join(dir, "prod.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("prod.yaml is still there: %v", err)
	}
	for name, want := range map[string]string{"notes.yaml": "mine\n", "qa.yaml": "also mine\n"} {
		if data, _ := os.ReadFile(filepath.Join(dir, name)); string(data) != want {
			t.Errorf("%s = %q, want %q: a file of the operator's was touched", name, data, want)
		}
	}
	if _, err := f.reg.Get("prod"); err == nil {
		t.Error("Get(prod) after its removal did not fail")
	}
	if ns := namespaces(t, inFlight); !slices.Contains(ns, alpha.Namespace) {
		t.Errorf("the cluster a call held no longer works: %v", ns)
	}
}

// Every kind of failure keeps the last good set: the clusters, their files
// and, for one cluster's broken kubeconfig, the other clusters' changes; the
// status says what failed and never holds the token.
func TestRancherFailuresKeepTheLastGoodSet(t *testing.T) {
	tests := []struct {
		fault testenv.RancherFault
		want  string
	}{
		{testenv.RancherUnauthorized, "401 Unauthorized (Unauthorized: must authenticate); the token was refused"},
		{testenv.RancherForbidden, "403 Forbidden"},
		{testenv.RancherServerError, "500 Internal Server Error"},
		{testenv.RancherHang, "Client.Timeout exceeded"},
		{testenv.RancherMalformed, "malformed JSON"},
		{testenv.RancherBadKubeconfig, `cluster "qa" (c-qa1): the kubeconfig does not parse`},
	}
	for _, tt := range tests {
		t.Run(string(tt.fault), func(t *testing.T) {
			prod, staging := offline("c-prod1", "prod"), offline("c-stag1", "staging")
			fake := testenv.StartRancher(t, prod, staging)
			f := newRancher(t, fake, "", clusters.Options{}, clusters.RancherOptions{Timeout: 300 * time.Millisecond})
			f.refresh(t)
			good := f.status().LastSuccess
			before, _ := os.ReadFile(filepath.Join(f.dir, "prod.yaml"))

			// A new cluster and a removal arrive with the failure.
			fake.SetClusters(prod, offline("c-qa1", "qa"))
			fake.SetFault(tt.fault)
			err := f.src.Refresh(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("refresh = %v, want %q", err, tt.want)
			}
			st := f.status()
			if st.Status != "error" || st.Error != err.Error() || st.LastSuccess == nil || !st.LastSuccess.Equal(*good) || st.LastAttempt == nil {
				t.Errorf("status = %+v", st)
			}
			for _, secret := range []string{fake.Token, fake.Token[strings.Index(fake.Token, ":")+1:]} {
				if strings.Contains(err.Error(), secret) || strings.Contains(st.Error, secret) {
					t.Errorf("the error holds the token: %v", err)
				}
			}
			if tt.fault == testenv.RancherBadKubeconfig {
				// The list came: staging's removal stands, qa stays out.
				wantNames(t, f.reg, "prod")
			} else {
				wantNames(t, f.reg, "prod", "staging")
				if _, err := os.Stat(filepath.Join(f.dir, "staging.yaml")); err != nil {
					t.Errorf("staging.yaml: %v", err)
				}
			}
			if after, _ := os.ReadFile(filepath.Join(f.dir, "prod.yaml")); string(after) != string(before) {
				t.Error("prod.yaml changed during a failure")
			}
			if _, err := os.Stat(filepath.Join(f.dir, "qa.yaml")); err == nil {
				t.Error("a kubeconfig that failed was written")
			}

			fake.SetFault(testenv.RancherHealthy)
			f.refresh(t)
			wantNames(t, f.reg, "prod", "qa")
			if st := f.status(); st.Status != "ok" || st.Error != "" {
				t.Errorf("status after recovery = %+v", st)
			}
		})
	}
}

// A server that restarts while Rancher fails starts with the clusters its
// earlier run wrote, and says when it last got them.
func TestRancherStartsFromTheLastGoodSet(t *testing.T) {
	fake := testenv.StartRancher(t, offline("c-prod1", "prod"), offline("c-stag1", "staging"))
	first := newRancher(t, fake, "", clusters.Options{}, clusters.RancherOptions{})
	first.refresh(t)
	good := first.status().LastSuccess

	fake.SetFault(testenv.RancherServerError)
	f := newRancher(t, fake, first.dir, clusters.Options{DefaultCluster: "prod"}, clusters.RancherOptions{})
	wantNames(t, f.reg, "prod", "staging")
	if st := f.status(); st.Status != "pending" || st.Clusters != 2 || st.LastSuccess == nil || !st.LastSuccess.Equal(*good) {
		t.Errorf("status before a refresh = %+v", st)
	}
	if err := f.src.Refresh(context.Background()); err == nil {
		t.Fatal("refresh against a failing Rancher succeeded")
	}
	wantNames(t, f.reg, "prod", "staging")
	if c, err := f.reg.Get(""); err != nil || c.Name != "prod" || !strings.Contains(c.Source, "Rancher cluster c-prod1") {
		t.Errorf("default cluster: %v, %v", c, err)
	}
	if st := f.status(); st.Status != "error" || !strings.Contains(st.Error, "500") {
		t.Errorf("status = %+v", st)
	}

	// A kubeconfig_dir that is config_dir reads Rancher's files as
	// Rancher's, not as files that would clash with them.
	same := newRancher(t, fake, first.dir, clusters.Options{KubeconfigDir: first.dir}, clusters.RancherOptions{})
	wantNames(t, same.reg, "prod", "staging")
	if c, _ := same.reg.Get("prod"); !strings.Contains(c.Source, "Rancher cluster") || len(same.status().Warnings) != 0 {
		t.Errorf("prod is %s; warnings %v", c.Source, same.status().Warnings)
	}
}

// Rancher makes a token for every kubeconfig it generates: a refresh uses
// the one it has until it is MaxAge old.
func TestRancherGeneratesOnlyWhatIsNewOrOld(t *testing.T) {
	fake := testenv.StartRancher(t, offline("c-prod1", "prod"))
	f := newRancher(t, fake, "", clusters.Options{}, clusters.RancherOptions{})
	f.refresh(t)
	f.refresh(t)
	if n := fake.Generated("c-prod1"); n != 1 {
		t.Errorf("two refreshes generated %d kubeconfigs, want 1", n)
	}
	// A restart reads it from the folder.
	again := newRancher(t, fake, f.dir, clusters.Options{}, clusters.RancherOptions{})
	again.refresh(t)
	if n := fake.Generated("c-prod1"); n != 1 {
		t.Errorf("a restart generated the kubeconfig again (%d)", n)
	}
	old := newRancher(t, fake, f.dir, clusters.Options{}, clusters.RancherOptions{MaxAge: time.Nanosecond})
	old.refresh(t)
	if n := fake.Generated("c-prod1"); n != 2 {
		t.Errorf("an old kubeconfig was not generated anew (%d)", n)
	}
	// One whose file is gone or broken is generated anew too.
	os.Remove(filepath.Join(f.dir, "prod.yaml"))
	f.refresh(t)
	if n := fake.Generated("c-prod1"); n != 3 {
		t.Errorf("a missing kubeconfig was not generated anew (%d)", n)
	}
	os.WriteFile(filepath.Join(f.dir, "prod.yaml"), []byte("clusters: [\n"), 0o600)
	again = newRancher(t, fake, f.dir, clusters.Options{}, clusters.RancherOptions{})
	again.refresh(t)
	if n := fake.Generated("c-prod1"); n != 4 {
		t.Errorf("a broken kubeconfig was not generated anew (%d)", n)
	}
	if st := again.status(); len(st.Warnings) != 0 || st.Status != "ok" {
		t.Errorf("status after regenerating a broken file: %+v", st)
	}
	// A cluster that is not active is not generated, but one it had stays.
	waiting := offline("c-new1", "new")
	waiting.State = "provisioning"
	prod := offline("c-prod1", "prod")
	prod.State = "unavailable"
	fake.SetClusters(prod, waiting)
	old.refresh(t)
	wantNames(t, old.reg, "prod")
	if st := old.status(); len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], `"new" (c-new1) is left out until it is active`) {
		t.Errorf("warnings = %v", st.Warnings)
	}
}

// Run refreshes on its own: a cluster removed in Rancher leaves, and
// after a failure it tries again before the interval is over.
func TestRancherRunRefreshes(t *testing.T) {
	fake := testenv.StartRancher(t, offline("c-prod1", "prod"), offline("c-stag1", "staging"))
	fake.SetFault(testenv.RancherServerError)
	f := newRancher(t, fake, "", clusters.Options{}, clusters.RancherOptions{AutoRefresh: true, Interval: time.Hour, RetryMin: 50 * time.Millisecond})
	if err := f.src.Refresh(context.Background()); err == nil {
		t.Fatal("want the first fetch to fail")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); f.src.Run(ctx) }()
	defer func() { cancel(); <-done }()
	fake.SetFault(testenv.RancherHealthy)
	waitUntil(t, func() bool { return len(f.reg.Names()) == 2 }, "a retry after the failed first fetch")

	short := newRancher(t, fake, "", clusters.Options{}, clusters.RancherOptions{AutoRefresh: true, Interval: 100 * time.Millisecond})
	short.refresh(t)
	ctx2, cancel2 := context.WithCancel(context.Background())
	done2 := make(chan struct{})
	go func() { defer close(done2); short.src.Run(ctx2) }()
	defer func() { cancel2(); <-done2 }()
	fake.SetClusters(offline("c-stag1", "staging"))
	waitUntil(t, func() bool { return slices.Equal(short.reg.Names(), []string{"staging"}) }, "prod's removal")
}

func waitUntil(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("no %s after 10s", what)
}

// The token never appears in an error, even when Rancher puts it in its
// answer; it is sent only to Rancher's host.
func TestRancherTokenNeverInErrors(t *testing.T) {
	const token = "token-abcde:s3cr3tp4rtthatislong"
	var sawElsewhere atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "" {
			sawElsewhere.Store(true)
		}
		w.Write([]byte(`{"type":"collection","data":[]}`))
	}))
	defer elsewhere.Close()
	var mode atomic.Value
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "redirect":
			http.Redirect(w, r, elsewhere.URL+"/v3/clusters", http.StatusFound)
		case "next":
			json.NewEncoder(w).Encode(map[string]any{"type": "collection", "data": []any{},
				"pagination": map[string]string{"next": elsewhere.URL + "/v3/clusters?marker=x"}})
		default:
			w.WriteHeader(http.StatusUnauthorized)
			json.NewEncoder(w).Encode(map[string]any{"type": "error", "code": "Unauthorized",
				"message": "token " + strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ") + " is not valid; nor is " + token[strings.Index(token, ":")+1:]})
		}
	}))
	defer echo.Close()
	dir := t.TempDir()
	src, err := clusters.NewRancher(clusters.RancherOptions{URL: echo.URL + "/v3/", Token: token, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := clusters.Load(clusters.Options{Rancher: src})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"echo", "redirect", "next"} {
		mode.Store(m)
		err := src.Refresh(context.Background())
		if err == nil {
			t.Fatalf("%s: refresh succeeded", m)
		}
		st := reg.Sources()[clusters.RancherSource]
		for _, text := range []string{err.Error(), st.Error} {
			if strings.Contains(text, "s3cr3tp4rt") {
				t.Errorf("%s: the token is in %q", m, text)
			}
		}
		if m == "echo" && !strings.Contains(err.Error(), "token <redacted> is not valid") {
			t.Errorf("echo: %v", err)
		}
	}
	if sawElsewhere.Load() {
		t.Error("the token was sent to another host")
	}
	files, _ := os.ReadDir(dir)
	for _, f := range files {
		data, _ := os.ReadFile(filepath.Join(dir, f.Name()))
		if strings.Contains(string(data), "s3cr3tp4rt") {
			t.Errorf("%s holds the token", f.Name())
		}
	}
}

func TestRancherOptions(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	os.WriteFile(tokenFile, []byte("token-x:y\n"), 0o600)
	loose := filepath.Join(dir, "loose")
	os.WriteFile(loose, []byte("token-x:y\n"), 0o644)
	tests := []struct {
		name string
		opts clusters.RancherOptions
		want string
	}{
		{"https", clusters.RancherOptions{URL: "https://rancher.example.com", Token: "t"}, ""},
		{"token file", clusters.RancherOptions{URL: "https://rancher.example.com", TokenFile: tokenFile}, ""},
		{"http on loopback", clusters.RancherOptions{URL: "http://127.0.0.1:8080/v3", Token: "t"}, ""},
		{"http beyond loopback", clusters.RancherOptions{URL: "http://rancher.example.com", Token: "t"}, "use https"},
		{"credentials in the URL", clusters.RancherOptions{URL: "https://user:pw@rancher.example.com", Token: "t"}, "must not hold credentials"},
		{"no host", clusters.RancherOptions{URL: "rancher.example.com", Token: "t"}, "has no host"},
		{"no token", clusters.RancherOptions{URL: "https://rancher.example.com"}, "there is no token"},
		{"both tokens", clusters.RancherOptions{URL: "https://rancher.example.com", Token: "t", TokenFile: tokenFile}, "exclude each other"},
		{"token file others read", clusters.RancherOptions{URL: "https://rancher.example.com", TokenFile: loose}, "mode 0644"},
		{"missing token file", clusters.RancherOptions{URL: "https://rancher.example.com", TokenFile: filepath.Join(dir, "nope")}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Dir = filepath.Join(t.TempDir(), "r")
			_, err := clusters.NewRancher(tt.opts)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// Names, Get and Default answer while refreshes replace the Rancher set
// (run with -race).
func TestRegistryIsSafeForConcurrentUse(t *testing.T) {
	fake := testenv.StartRancher(t, offline("c-prod1", "prod"))
	f := newRancher(t, fake, "", clusters.Options{}, clusters.RancherOptions{})
	f.refresh(t)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				f.reg.Names()
				f.reg.Default()
				f.reg.Get("prod")
				f.reg.Sources()
			}
		}()
	}
	for i := range 20 {
		if i%2 == 0 {
			fake.SetClusters(offline("c-prod1", "prod"), offline("c-stag1", "staging"))
		} else {
			fake.SetClusters(offline("c-prod1", "prod"))
		}
		f.refresh(t)
	}
	close(stop)
	wg.Wait()
}
