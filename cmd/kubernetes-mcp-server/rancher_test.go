package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// kubectl-newenv prints what a plugin is given: its kubeconfig and its
// environment.
const envPlugin = "#!/bin/sh\n[ \"$1\" = --help ] && exit 0\ncat \"$KUBECONFIG\"\necho ---\nenv\n"

// rancherE2E is the e2e environment with a fake Rancher listing prod (the
// alpha test cluster) and staging (beta) beside the files' alpha and beta.
type rancherE2E struct {
	*e2eEnv
	fake      *testenv.Rancher
	configDir string
	prod      testenv.RancherCluster
	staging   testenv.RancherCluster
}

func newRancherE2E(t *testing.T, backend string) *rancherE2E {
	t.Helper()
	e := newE2E(t, backend, "")
	alpha, beta := e.clusters.All[0], e.clusters.All[1]
	r := &rancherE2E{e2eEnv: e, prod: alpha.AsRancher("c-prod1", "prod"), staging: beta.AsRancher("c-stag1", "staging"),
		configDir: filepath.Join(t.TempDir(), "rancher")}
	r.fake = testenv.StartRancher(t, r.prod, r.staging)
	r.fake.SetPageSize(1)
	if err := os.WriteFile(filepath.Join(e.dir, "kubectl-newenv"), []byte(envPlugin), 0o755); err != nil {
		t.Fatal(err)
	}
	// The proposal's [nsk] table; the token comes from the environment.
	f, err := os.OpenFile(e.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, "\n[nsk]\nrancher_url = %q\nconfig_dir = %q\nrefresh_interval = \"1s\"\nprofile = \"prod\"\n", r.fake.URL, r.configDir)
	f.Close()
	e.env = append(e.env, "PLUGINS_RANCHER_TOKEN="+r.fake.Token)
	return r
}

// secrets are what must never reach a plugin, a log or config show: the
// Rancher token, its secret part and the token of the kubeconfigs Rancher
// generates.
func (r *rancherE2E) secrets() []string {
	return []string{r.fake.Token, r.fake.Token[strings.Index(r.fake.Token, ":")+1:], r.clusters.All[0].Token, r.clusters.All[1].Token}
}

// serve starts the binary on HTTP and waits for /health; stop ends it.
func (r *rancherE2E) serve(t *testing.T) (base string, log func() string, stop func()) {
	t.Helper()
	port := freePort(t)
	cmd := exec.Command(binary, "--config", r.config, "--port", strconv.Itoa(port), "--log-level", "debug")
	cmd.Env = r.env
	buf := &syncBuffer{}
	cmd.Stderr = buf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("exit after SIGTERM: %v", err)
			}
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			t.Errorf("still running 20s after SIGTERM")
		}
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("server log:\n%s", buf)
		}
	})
	base = fmt.Sprintf("http://127.0.0.1:%d", port)
	waitFor(t, func() bool {
		code, _ := getJSONQuiet(base + "/health")
		return code == 200
	}, "/health")
	return base, buf.String, stop
}

// health is /health's clusters and rancher parts.
type health struct {
	Clusters []string `json:"clusters"`
	Rancher  *struct {
		Status      string     `json:"status"`
		Error       string     `json:"error"`
		LastSuccess *time.Time `json:"last_success"`
		Clusters    int        `json:"clusters"`
		Warnings    []string   `json:"warnings"`
	} `json:"rancher"`
}

func getHealth(t *testing.T, base string) health {
	t.Helper()
	_, m := getJSON(t, base+"/health", nil)
	data, _ := json.Marshal(m)
	var h health
	if err := json.Unmarshal(data, &h); err != nil {
		t.Fatal(err)
	}
	return h
}

func getJSONQuiet(url string) (int, error) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}

// clusterParam is the description of a tool's cluster parameter.
func clusterParam(t *testing.T, tool *mcp.Tool) string {
	t.Helper()
	data, _ := json.Marshal(tool.InputSchema)
	var schema struct {
		Properties map[string]struct {
			Description string `json:"description"`
		} `json:"properties"`
	}
	json.Unmarshal(data, &schema)
	return schema.Properties["cluster"].Description
}

// Rancher's clusters are served beside the files' over MCP: /health names
// them, a plugin call reaches a Rancher cluster through the gateway with
// a kubeconfig that holds no secret, a failing Rancher keeps the last good
// set, and a cluster removed in Rancher leaves /health and the tools'
// descriptions, with list_changed.
func TestRancherE2E(t *testing.T) {
	for _, backend := range backends {
		t.Run(backend, func(t *testing.T) { testRancherE2E(t, backend) })
	}
}

func testRancherE2E(t *testing.T, backend string) {
	r := newRancherE2E(t, backend)
	alpha, beta := r.clusters.All[0], r.clusters.All[1]
	base, log, _ := r.serve(t)
	h := getHealth(t, base)
	if want := []string{"alpha", "beta", "prod", "staging"}; !slices.Equal(h.Clusters, want) || h.Rancher == nil ||
		h.Rancher.Status != "ok" || h.Rancher.Clusters != 2 || h.Rancher.LastSuccess == nil {
		t.Fatalf("/health = %+v (rancher %+v), want clusters %v and rancher ok", h, h.Rancher, want)
	}
	s := connect(t, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"})
	ctx := context.Background()
	if d := clusterParam(t, tools(t, s)["plugins_execute"]); !strings.Contains(d, "Clusters: alpha, beta, prod, staging.") {
		t.Errorf("plugins_execute's cluster parameter: %q", d)
	}

	// kubens on prod reaches alpha's API server, through the gateway.
	res, out := call(t, s, ctx, "plugin_ns", map[string]any{"cluster": "prod"})
	if res.IsError || out.Cluster != "prod" || !strings.Contains(out.Output, alpha.Namespace) || strings.Contains(out.Output, beta.Namespace) {
		t.Errorf("kubens on prod: %+v\n%s", out, text(res))
	}
	res, out = call(t, s, ctx, "plugins_execute", map[string]any{"plugin": "newenv", "cluster": "staging"})
	kubeconfig, env, _ := strings.Cut(out.Output, "---\n")
	// The gateway is on the plugin's loopback, or, for a Pod, on the
	// address the node's Pods reach the server at.
	gatewayServer := "server: https://127.0.0.1:"
	if backend == "kubernetes" {
		gatewayServer = "server: https://" + testenv.TestKubeNode(t).GatewayIP + ":"
	}
	if res.IsError || !strings.Contains(kubeconfig, gatewayServer) || strings.Contains(kubeconfig, beta.Server) {
		t.Errorf("the plugin's kubeconfig does not name its gateway:\n%s\n%s", out.Output, text(res))
	}
	for _, secret := range r.secrets() {
		if strings.Contains(out.Output, secret) || strings.Contains(out.Error, secret) {
			t.Errorf("the plugin was handed a secret (%.12s...):\n%s", secret, out.Output)
		}
	}
	if strings.Contains(env, "RANCHER") {
		t.Errorf("the plugin's environment names Rancher:\n%s", env)
	}

	// Rancher fails: the set stays, calls still run, /health says why.
	r.fake.SetFault(testenv.RancherServerError)
	waitFor(t, func() bool { h := getHealth(t, base); return h.Rancher.Status == "error" }, "rancher error in /health")
	h = getHealth(t, base)
	if !slices.Equal(h.Clusters, []string{"alpha", "beta", "prod", "staging"}) || !strings.Contains(h.Rancher.Error, "500 Internal Server Error") || h.Rancher.LastSuccess == nil {
		t.Errorf("/health while Rancher fails: %+v (rancher %+v)", h, h.Rancher)
	}
	if res, out := call(t, s, ctx, "plugin_ns", map[string]any{"cluster": "staging"}); res.IsError || !strings.Contains(out.Output, beta.Namespace) {
		t.Errorf("kubens on staging while Rancher fails: %+v", out)
	}

	// staging is removed in Rancher: it leaves, and clients hear of it.
	s.mu.Lock()
	before := s.listChanged
	s.mu.Unlock()
	r.fake.SetFault(testenv.RancherHealthy)
	r.fake.SetClusters(r.prod)
	waitFor(t, func() bool { return slices.Equal(getHealth(t, base).Clusters, []string{"alpha", "beta", "prod"}) }, "staging's removal from /health")
	waitFor(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return s.listChanged > before }, "notifications/tools/list_changed")
	all := tools(t, s)
	for _, name := range []string{"plugins_execute", "plugin_ns"} {
		if d := clusterParam(t, all[name]); strings.Contains(d, "staging") || !strings.Contains(d, "prod") {
			t.Errorf("%s's cluster parameter after the removal: %q", name, d)
		}
	}
	if res, _ := call(t, s, ctx, "plugin_ns", map[string]any{"cluster": "staging"}); !res.IsError || !strings.Contains(text(res), `unknown cluster "staging"`) {
		t.Errorf("a call to the removed cluster: %s", text(res))
	}
	if _, err := os.Stat(filepath.Join(r.configDir, "staging.yaml")); !os.IsNotExist(err) {
		t.Errorf("staging.yaml is still in config_dir: %v", err)
	}
	l := log()
	if !strings.Contains(l, "rancher: refresh failed") || !strings.Contains(l, "500 Internal Server Error") {
		t.Errorf("the log does not report Rancher's failure")
	}
	for _, secret := range r.secrets() {
		if strings.Contains(l, secret) {
			t.Errorf("the log holds a secret (%.12s...)", secret)
		}
	}
}

// A server that starts while Rancher refuses its token serves the clusters
// its earlier run wrote to config_dir, and says so in /health and the log.
func TestRancherStartupFailureKeepsTheLastGoodSet(t *testing.T) {
	r := newRancherE2E(t, "none")
	base, _, stop := r.serve(t)
	if h := getHealth(t, base); len(h.Clusters) != 4 {
		t.Fatalf("/health = %+v", h)
	}
	stop()
	r.fake.SetFault(testenv.RancherUnauthorized)
	base, log, _ := r.serve(t)
	h := getHealth(t, base)
	if !slices.Equal(h.Clusters, []string{"alpha", "beta", "prod", "staging"}) || h.Rancher == nil || h.Rancher.Status != "error" ||
		!strings.Contains(h.Rancher.Error, "401 Unauthorized") || h.Rancher.LastSuccess == nil {
		t.Errorf("/health = %+v (rancher %+v)", h, h.Rancher)
	}
	if l := log(); !strings.Contains(l, "the token was refused") || strings.Contains(l, r.fake.Token) {
		t.Errorf("the log does not report the refusal, or holds the token:\n%s", l)
	}
	s := connect(t, &mcp.StreamableClientTransport{Endpoint: base + "/mcp"})
	if res, out := call(t, s, context.Background(), "plugin_ns", map[string]any{"cluster": "prod"}); res.IsError || !strings.Contains(out.Output, r.clusters.All[0].Namespace) {
		t.Errorf("kubens on prod from the earlier run's kubeconfig: %+v", out)
	}
}

// config show prints the Rancher settings with the token redacted and the
// clusters the configuration resolves to, Rancher's included, in TOML that
// still loads and in JSON; a failing Rancher is reported, not fatal.
func TestRancherConfigShow(t *testing.T) {
	r := newRancherE2E(t, "none")
	out, stderr, code := run(t, r.env[1:], "config", "show", "--output", "json", "--config", r.config)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var shown struct {
		Values   map[string]config.Value `json:"values"`
		Clusters []struct {
			Name, Server, Source string
			Default              bool
		} `json:"clusters"`
		Default string `json:"default_cluster"`
		Rancher struct {
			Status   string `json:"status"`
			Clusters int    `json:"clusters"`
		} `json:"rancher"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if v := shown.Values["clusters.rancher_token"]; v.Value != "<redacted>" || v.Source != "env" || v.Origin != "PLUGINS_RANCHER_TOKEN" {
		t.Errorf("clusters.rancher_token = %+v", v)
	}
	if v := shown.Values["clusters.rancher_url"]; v.Value != r.fake.URL || !strings.Contains(v.Origin, "(nsk.rancher_url)") {
		t.Errorf("clusters.rancher_url = %+v", v)
	}
	if v := shown.Values["nsk.profile"]; v.Value != "prod" || v.Note != "not used by this server" {
		t.Errorf("nsk.profile = %+v", v)
	}
	var names []string
	for _, c := range shown.Clusters {
		names = append(names, c.Name)
		if c.Name == "prod" && (!strings.Contains(c.Source, "Rancher cluster c-prod1") || c.Server != r.clusters.All[0].Server) {
			t.Errorf("prod = %+v", c)
		}
		if c.Default != (c.Name == "alpha") {
			t.Errorf("%s default = %v", c.Name, c.Default)
		}
	}
	if !slices.Equal(names, []string{"alpha", "beta", "prod", "staging"}) || shown.Default != "alpha" || shown.Rancher.Status != "ok" || shown.Rancher.Clusters != 2 {
		t.Errorf("clusters %v, default %q, rancher %+v", names, shown.Default, shown.Rancher)
	}

	toml, stderr, code := run(t, r.env[1:], "config", "show", "--config", r.config)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"# rancher_token = <redacted> # env PLUGINS_RANCHER_TOKEN", "#   prod: " + r.clusters.All[0].Server + ", from Rancher cluster c-prod1",
		"#   alpha (default): ", "# Rancher: ok, 2 clusters, last success "} {
		if !strings.Contains(toml, want) {
			t.Errorf("config show does not say %q:\n%s", want, toml)
		}
	}
	if _, err := config.Load(config.Options{File: writeFile(t, toml), LookupEnv: func(string) (string, bool) { return "", false }}); err != nil {
		t.Errorf("the TOML does not load back: %v\n%s", err, toml)
	}

	r.fake.SetFault(testenv.RancherUnauthorized)
	toml, stderr, code = run(t, r.env[1:], "config", "show", "--config", r.config)
	if code != 0 || !strings.Contains(toml, "# Rancher: error, 2 clusters") || !strings.Contains(toml, "#   error: rancher: list clusters: GET /v3/clusters: 401 Unauthorized") {
		t.Errorf("config show with Rancher refusing: exit %d\n%s\n%s", code, toml, stderr)
	}
	for _, text := range []string{out, toml, stderr} {
		for _, secret := range r.secrets() {
			if strings.Contains(text, secret) {
				t.Errorf("config show printed a secret (%.12s...)", secret)
			}
		}
	}
}

// Commands ask Rancher once: `plugins run` reaches a Rancher cluster.
func TestRancherPluginsRun(t *testing.T) {
	r := newRancherE2E(t, "none")
	env := append([]string{"PATH=" + r.dir + ":" + os.Getenv("PATH")}, r.env[1:]...)
	out, stderr, code := run(t, env, "plugins", "run", "--config", r.config, "--cluster", "staging", "ns")
	if code != 0 || !strings.Contains(out, r.clusters.All[1].Namespace) || strings.Contains(out, r.clusters.All[0].Namespace) {
		t.Errorf("plugins run ns on staging: exit %d\n%s\n%s", code, out, stderr)
	}
	if r.fake.Generated("c-stag1") != 1 {
		t.Errorf("generated %d kubeconfigs for staging, want 1", r.fake.Generated("c-stag1"))
	}
}
