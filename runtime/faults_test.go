package runtime

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"golang.org/x/sys/unix"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

func init() {
	fixtures["kubectl-kraw"] = `kubectl get --raw "$1"`
	fixtures["kubectl-kpost"] = `kubectl create --raw "$1" -f -`
}

// waitClosed fails unless every connection to s is closed within 5s: the
// gateway keeps nothing open to a cluster that misbehaved.
func waitClosed(t *testing.T, s *testenv.FaultServer, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.Open() > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("%s: %d connections to the cluster still open 5s after the call", what, s.Open())
			return
		}
	}
}

// readRequest reads one request head off c and returns false if none came.
func readRequest(c net.Conn) (*bufio.Reader, bool) {
	br := bufio.NewReader(c)
	req, err := http.ReadRequest(br)
	if err != nil {
		return br, false
	}
	req.Body.Close()
	return br, true
}

// faults are the misbehaving clusters, by name; each is a kubeconfig of
// its own beside the real alpha and beta.
type faults struct {
	dir     string
	servers map[string]*testenv.FaultServer
}

func startFaults(t *testing.T, e *env) *faults {
	t.Helper()
	f := &faults{dir: t.TempDir(), servers: map[string]*testenv.FaultServer{}}
	// A port where every connection is refused.
	down := "https://" + testenv.RefusedAddr(t)
	// Accepts, shakes hands, then never answers.
	f.servers["stall"] = testenv.StartFault(t, true, func(c net.Conn) { io.Copy(io.Discard, c) })
	// Answers with headers and the start of a body, then stalls.
	f.servers["headers"] = testenv.StartFault(t, true, func(c net.Conn) {
		if _, ok := readRequest(c); ok {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{\"kind\":\"PodList\",")
			io.Copy(io.Discard, c)
		}
	})
	// Answers a TLS handshake with bytes that are not TLS.
	f.servers["notls"] = testenv.StartFault(t, false, func(c net.Conn) {
		io.WriteString(c, "\x00\x01\x02garbage, not TLS\r\n")
	})
	// Speaks TLS, then answers with bytes that are not HTTP.
	f.servers["garbage"] = testenv.StartFault(t, true, func(c net.Conn) {
		if _, ok := readRequest(c); ok {
			io.WriteString(c, "\x00\x01\x02 this is not HTTP at all\r\n\r\n")
		}
	})
	// A well-formed 200 whose body is not what it claims: the plugin's problem.
	f.servers["malformed"] = testenv.StartFault(t, true, func(c net.Conn) {
		if _, ok := readRequest(c); ok {
			body := "{not json"
			fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
		}
	})
	servers := map[string]string{"down": down}
	for name, s := range f.servers {
		servers[name] = s.URL
	}
	for name, server := range servers {
		cfg := clientcmdapi.NewConfig()
		cfg.Clusters[name] = &clientcmdapi.Cluster{Server: server, InsecureSkipTLSVerify: true}
		cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: "fault-token"}
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
		cfg.CurrentContext = name
		if err := clientcmd.WriteToFile(*cfg, filepath.Join(f.dir, name+".yaml")); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range e.clusters.All {
		data, err := os.ReadFile(c.Kubeconfig)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(f.dir, c.Name+".yaml"), data, 0o600)
	}
	return f
}

// use makes the runtime know the fault clusters beside the real ones.
func (f *faults) use(t *testing.T, rt *Runtime) {
	t.Helper()
	reg, err := clusters.Load(clusters.Options{KubeconfigDir: f.dir, DefaultCluster: "alpha"})
	if err != nil {
		t.Fatal(err)
	}
	rt.clusters = reg
}

// cutProxy is a TCP proxy in front of the real alpha: closing it is the
// API server going away mid-call, the normal path staying the real one.
func cutProxy(t *testing.T, e *env) (*testenv.FaultServer, *atomic.Int64) {
	t.Helper()
	alpha := e.clusters.All[0]
	upstream := strings.TrimPrefix(alpha.Server, "https://")
	var back atomic.Int64
	s := testenv.StartFault(t, false, func(c net.Conn) {
		u, err := net.Dial("tcp", upstream)
		if err != nil {
			return
		}
		defer u.Close()
		go func() { io.Copy(u, c); u.Close() }()
		io.Copy(countingWriter{c, &back}, u)
	})
	return s, &back
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// TestAnAPIServerThatFailsFailsTheCallSayingSo: a cluster that is down,
// stalls before or after its headers, or answers garbage fails the call
// with the gateway's 502 (or the call's timeout), the record and the
// result say what happened, nothing stays open to the cluster, and the
// server goes on serving its real clusters. A malformed 200 is passed on.
func TestAnAPIServerThatFailsFailsTheCallSayingSo(t *testing.T) {
	for _, backend := range []string{"none", "container", "wasm"} {
		t.Run(backend, func(t *testing.T) { testAPIServerFaults(t, backend) })
	}
}

func testAPIServerFaults(t *testing.T, backend string) {
	auditFile := filepath.Join(t.TempDir(), "audit.jsonl")
	native := backend
	if backend == "wasm" {
		native = "none"
	}
	rt, e := newRuntimeWith(t, native, fmt.Sprintf("execution_timeout = \"4s\"\n[audit]\nfile = %q\n", auditFile))
	f := startFaults(t, e)
	f.use(t, rt)
	plugin := "kraw"
	if backend == "wasm" {
		withWasmPlugin(t, rt, e)
		plugin = "hostile"
	}
	path := "/api/v1/namespaces/default/pods"
	run := func(cluster string) *Result {
		t.Helper()
		args := []string{path}
		if backend == "wasm" {
			args = []string{"get", path}
		}
		start := time.Now()
		res, err := rt.Execute(context.Background(), Call{Plugin: plugin, Cluster: cluster, Args: args})
		if err != nil {
			t.Fatalf("%s: %v", cluster, err)
		}
		if d := time.Since(start); d > 15*time.Second {
			t.Errorf("%s: the call took %s with a 4s execution_timeout", cluster, d)
		}
		if res.Sandbox != backend {
			t.Errorf("%s: sandbox %q", cluster, res.Sandbox)
		}
		t.Logf("%s: %s in %s; %s; the plugin saw %.300q", cluster, res.Status, time.Since(start).Round(time.Millisecond), res.Message, res.Output+res.Error)
		return res
	}
	// What the plugin saw: kubectl's stderr, or the guest's printout.
	saw := func(res *Result) string { return res.Output + res.Error }
	last := func(t *testing.T, res *Result) gateway0 {
		t.Helper()
		if len(res.APIRequests) == 0 {
			t.Fatalf("no API request in %+v", res)
		}
		r := res.APIRequests[len(res.APIRequests)-1]
		return gateway0{r.Status, r.Reason, r.Decision}
	}

	for _, name := range []string{"down", "notls", "garbage"} {
		res := run(name)
		rec := last(t, res)
		// A guest prints the 502 and ends by itself; kubectl fails.
		if res.Status != StatusFailed && backend != "wasm" || rec.status != http.StatusBadGateway || !strings.Contains(rec.reason, "did not answer") {
			t.Errorf("%s: status %s, record %+v: %+v", name, res.Status, rec, res)
		}
		if !strings.Contains(saw(res), "did not answer") || !strings.Contains(saw(res), "502") && !strings.Contains(saw(res), "ServiceUnavailable") {
			t.Errorf("%s: the plugin did not get the gateway's 502: %q", name, saw(res))
		}
		if !strings.Contains(res.Message, "did not answer") {
			t.Errorf("%s: the result's message does not say the cluster did not answer: %q", name, res.Message)
		}
	}
	for _, name := range []string{"stall", "headers"} {
		res := run(name)
		rec := last(t, res)
		if res.Status != StatusTimeout || !strings.Contains(res.Message, "timed out after 4s") {
			t.Errorf("%s: %+v", name, res)
		}
		if rec.reason == "" || !strings.Contains(res.Message, rec.reason) {
			t.Errorf("%s: record %+v, message %q: the record and the result should say why the request ended", name, rec, res.Message)
		}
		if name == "stall" && rec.status != http.StatusBadGateway {
			t.Errorf("stall: record %+v, want 502", rec)
		}
		waitClosed(t, f.servers[name], name)
	}
	res := run("malformed")
	if rec := last(t, res); rec.status != http.StatusOK || rec.decision != "allow" || !strings.Contains(saw(res), "{not json") {
		t.Errorf("malformed: record %+v: %+v", rec, res)
	}

	// The server still serves its real cluster.
	res = run("alpha")
	if res.Status != StatusOK || last(t, res).status != http.StatusOK {
		t.Errorf("alpha after the faults: %+v", res)
	}
	checkAuditFile(t, auditFile)
	if backend == "container" {
		noContainerLeftovers(t, "kmcp-runtime")
	}
}

// gateway0 is what a test checks of a record.
type gateway0 struct {
	status   int
	reason   string
	decision string
}

// TestAnAPIServerThatGoesAwayMidCallFailsTheCall: the real API server,
// reached through a proxy that is then cut, goes away while a watch
// streams: the call ends, the record says the response was cut short, and
// the next call fails at once with the gateway's 502.
func TestAnAPIServerThatGoesAwayMidCallFailsTheCall(t *testing.T) {
	for _, backend := range []string{"none", "container"} {
		t.Run(backend, func(t *testing.T) { testAPIServerGoesAway(t, backend) })
	}
}

func testAPIServerGoesAway(t *testing.T, backend string) {
	rt, e := newRuntimeWith(t, backend, `execution_timeout = "20s"`)
	alpha := e.clusters.All[0]
	proxy, back := cutProxy(t, e)
	dir := t.TempDir()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["cut"] = &clientcmdapi.Cluster{Server: proxy.URL, CertificateAuthorityData: alpha.CAData}
	cfg.AuthInfos["cut"] = &clientcmdapi.AuthInfo{Token: alpha.Token}
	cfg.Contexts["cut"] = &clientcmdapi.Context{Cluster: "cut", AuthInfo: "cut"}
	if err := clientcmd.WriteToFile(*cfg, filepath.Join(dir, "cut.yaml")); err != nil {
		t.Fatal(err)
	}
	reg, err := clusters.Load(clusters.Options{KubeconfigDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	rt.clusters = reg

	done := make(chan *Result, 1)
	go func() {
		res, err := rt.Execute(context.Background(), Call{Plugin: "kraw", Cluster: "cut",
			Args: []string{"/api/v1/namespaces/" + alpha.Namespace + "/pods?watch=true"}})
		if err != nil {
			t.Error(err)
		}
		done <- res
	}()
	// Once the watch streams, the API server goes away.
	for deadline := time.Now().Add(15 * time.Second); back.Load() == 0 || proxy.Open() == 0; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the watch never reached the API server")
		}
	}
	time.Sleep(500 * time.Millisecond)
	cut := time.Now()
	proxy.Close()
	var res *Result
	select {
	case res = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the call did not end after its API server went away")
	}
	if d := time.Since(cut); d > 10*time.Second {
		t.Errorf("the call ended %s after the API server went away", d)
	}
	var watch *gateway0
	for _, r := range res.APIRequests {
		if r.Verb == "watch" {
			watch = &gateway0{r.Status, r.Reason, r.Decision}
		}
	}
	t.Logf("cut watch: %s; %s; record %+v", res.Status, res.Message, watch)
	if res.Status != StatusFailed || watch == nil || watch.reason == "" {
		t.Errorf("the cut watch: record %+v: %+v", watch, res)
	}
	// Now nothing listens: the next call fails at once, saying so.
	res, err = rt.Execute(context.Background(), Call{Plugin: "kraw", Cluster: "cut", Args: []string{"/api"}})
	if err != nil || res.Status != StatusFailed || !strings.Contains(res.Error, "did not answer") || !strings.Contains(res.Message, "connection refused") {
		t.Errorf("a call after the API server went away: %v %+v", err, res)
	}
	if backend == "container" {
		noContainerLeftovers(t, "kmcp-runtime")
	}
}

// checkAuditFile fails unless every line of the audit file is a whole
// JSON object, the last one ended by a newline.
func checkAuditFile(t *testing.T, path string) (lines []map[string]any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) > 0 && data[len(data)-1] != '\n' {
		t.Errorf("the audit file ends with a partial line: %q", tail(data))
	}
	for i, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if line == "" && len(data) == 0 {
			break
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Errorf("audit line %d is not JSON (%v): %.200q", i+1, err, line)
			continue
		}
		lines = append(lines, v)
	}
	return lines
}

func tail(b []byte) []byte {
	if len(b) > 200 {
		return b[len(b)-200:]
	}
	return b
}

// noContainerLeftovers fails if a container, task, call folder or network
// namespace of the containerd namespace is left.
func noContainerLeftovers(t *testing.T, namespace string) {
	t.Helper()
	ctrd := testenv.TestContainerd(t)
	for _, what := range []string{"containers", "tasks"} {
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
			out, err := exec.Command("ctr", "--address", ctrd.Address, "-n", namespace, what, "ls", "-q").CombinedOutput()
			if err == nil && strings.TrimSpace(string(out)) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("containerd %s left in %s: %v %s", what, namespace, err, out)
				break
			}
		}
	}
	state := filepath.Clean(filepath.Join(ctrd.State, "..", namespace+"-state"))
	for _, dir := range []string{"calls", "netns"} {
		entries, _ := os.ReadDir(filepath.Join(state, dir))
		for _, entry := range entries {
			t.Errorf("%s left in the sandbox state folder: %s", dir, entry.Name())
		}
	}
}

// TestAFullAuditDiskFailsCallsClosed: with the audit file's disk full, an
// allowed request is refused (503) and never reaches the cluster, a call
// whose record cannot be written fails saying the audit failed and
// withholds its output, no partial line is left in the file, /health's
// audit field says so, the server goes on serving, and once there is room
// again auditing resumes with a line saying how many records were lost.
func TestAFullAuditDiskFailsCallsClosed(t *testing.T) {
	for _, backend := range []string{"none", "container"} {
		t.Run(backend, func(t *testing.T) { testFullAuditDisk(t, backend) })
	}
}

func testFullAuditDisk(t *testing.T, backend string) {
	disk := testenv.SmallDisk(t, 8)
	auditFile := filepath.Join(disk, "audit.jsonl")
	rt, e := newRuntimeWith(t, backend, fmt.Sprintf(`
[[plugins.rules]]
name = "faults-create"
plugins = ["kpost"]
verbs = ["create"]
resources = ["configmaps"]
[audit]
file = %q
`, auditFile))
	alpha := e.clusters.All[0]
	client, err := kubernetes.NewForConfig(alpha.REST)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	post := func(name string) *Result {
		t.Helper()
		res, err := rt.Execute(ctx, Call{Plugin: "kpost", Args: []string{"/api/v1/namespaces/" + alpha.Namespace + "/configmaps"},
			Stdin: fmt.Sprintf(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":%q}}`, name)})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	exists := func(name string) bool {
		_, err := client.CoreV1().ConfigMaps(alpha.Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil && !apierrors.IsNotFound(err) {
			t.Fatal(err)
		}
		return err == nil
	}
	// Names of this run's own: the clusters live as long as the test binary.
	suffix := fmt.Sprintf("%s-%d", backend, time.Now().UnixNano()%1000000000)
	if res := post("before-" + suffix); res.Status != StatusOK || !exists("before-"+suffix) {
		t.Fatalf("a create with room in the audit file: %+v", res)
	}
	if s := rt.AuditState(); s != "ok" {
		t.Errorf("audit state %q with room", s)
	}

	release := testenv.FillDisk(t, disk)
	// An allowed create is refused, not forwarded, and says why.
	refused := "during-" + suffix
	res := post(refused)
	if exists(refused) {
		t.Errorf("a create whose audit record had no room reached the cluster: %+v", res)
	}
	var rec *gateway0
	for _, r := range res.APIRequests {
		if r.Rule == "gateway.audit_unavailable" {
			rec = &gateway0{r.Status, r.Reason, r.Decision}
		}
	}
	if res.Status != StatusFailed || rec == nil || rec.status != http.StatusServiceUnavailable || rec.decision != "deny" ||
		!strings.Contains(rec.reason, "no space left on device") {
		t.Errorf("a create with the audit disk full: record %+v: %+v", rec, res)
	}
	t.Logf("a create with the audit disk full: %s; %s; stderr %q; audit state %q", res.Status, res.Message, res.Error, rt.AuditState())
	if !strings.Contains(res.Error, "cannot audit this request, so it was not forwarded") ||
		!strings.Contains(res.Message, "API requests not forwarded because they could not be audited") {
		t.Errorf("the plugin and the result should say the request was not forwarded for want of audit: %+v", res)
	}
	if s := rt.AuditState(); !strings.Contains(s, "no space left on device") {
		t.Errorf("audit state %q with the disk full", s)
	}
	// A call whose own record cannot be written fails and withholds its
	// output: the record is larger than the room that is left.
	big := strings.Repeat("x", 40<<10)
	res, err = rt.Execute(ctx, Call{Plugin: "echo", Args: []string{big, big}})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a call whose record has no room: %s; %s", res.Status, res.Message)
	if res.Status != StatusFailed || !strings.HasPrefix(res.Message, "audit failed") || !strings.Contains(res.Message, "no space left on device") ||
		res.Output != "" || res.CallID == "" {
		t.Errorf("a call whose record cannot be written: %+v", trimmed(res))
	}
	if s := rt.AuditState(); !strings.Contains(s, "failing") {
		t.Errorf("audit state %q after a lost record", s)
	}
	for _, line := range checkAuditFile(t, auditFile) {
		if line["call_id"] == res.CallID {
			t.Errorf("the failed call has an audit line: %v", line)
		}
	}

	// Room again: auditing resumes, and says what it lost.
	release()
	after := "after-" + suffix
	res = post(after)
	if res.Status != StatusOK || !exists(after) {
		t.Errorf("a create once there is room again: %+v", res)
	}
	if s := rt.AuditState(); s != "ok" {
		t.Errorf("audit state %q once there is room again", s)
	}
	var gap map[string]any
	calls := map[string]bool{}
	for _, line := range checkAuditFile(t, auditFile) {
		switch line["type"] {
		case "audit_gap":
			gap = line
		case "call":
			calls[line["call_id"].(string)] = true
		}
	}
	if gap == nil || gap["records_lost"].(float64) < 1 || !strings.Contains(gap["error"].(string), "no space left on device") {
		t.Errorf("no audit_gap line saying what was lost: %v", gap)
	}
	if !calls[res.CallID] {
		t.Errorf("the call after the disk had room again is not audited")
	}
	if backend == "container" {
		noContainerLeftovers(t, "kmcp-runtime")
	}
}

func trimmed(res *Result) Result {
	r := *res
	if len(r.Output) > 200 {
		r.Output = r.Output[:200] + "..."
	}
	return r
}

// TestAnAuditFileThatCannotBeWrittenStopsTheStart: a runtime does not
// start when its audit file cannot be opened or has no room, and says why.
func TestAnAuditFileThatCannotBeWrittenStopsTheStart(t *testing.T) {
	disk := testenv.SmallDisk(t, 8)
	full := filepath.Join(disk, "audit.jsonl")
	release := testenv.FillDisk(t, disk)
	defer release()
	for _, c := range []struct{ file, want string }{
		{filepath.Join(t.TempDir(), "missing", "audit.jsonl"), "no such file or directory"},
		{t.TempDir(), "is a directory"},
		{full, "no room for audit records"},
	} {
		cfg, err := config.Load(config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Audit.File = c.file
		pol, err := compose.Policy(cfg)
		if err != nil {
			t.Fatal(err)
		}
		rt, err := New(cfg, Options{Policy: pol})
		if err == nil {
			rt.Close()
			t.Errorf("audit file %s: the runtime started", c.file)
			continue
		}
		if !strings.Contains(err.Error(), "audit file") || !strings.Contains(err.Error(), c.want) {
			t.Errorf("audit file %s: %v, want an error saying %q", c.file, err, c.want)
		}
	}
	if _, err := os.Stat(full); err == nil {
		data, _ := os.ReadFile(full)
		if len(data) != 0 {
			t.Errorf("the full disk's audit file holds %q", data)
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		t.Error(err)
	}
}

// TestAMissingRuncStopsTheStartAndABrokenOneFailsTheCall: with
// sandbox.runtime_binary naming no file the runtime does not start and
// says which setting and file; with one that is there but fails, a call
// under the container backend fails saying the OCI runtime failed. Neither
// leaves a container, task, call folder or network namespace behind.
func TestAMissingRuncStopsTheStartAndABrokenOneFailsTheCall(t *testing.T) {
	tc := testenv.TestClusters(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "kubectl-hello"), []byte("#!/bin/sh\necho hello\n"), 0o755)
	bin := t.TempDir()
	missing, broken := filepath.Join(bin, "no-such-runc"), filepath.Join(bin, "broken-runc")
	os.WriteFile(broken, []byte("#!/bin/sh\necho this runc is broken >&2\nexit 1\n"), 0o755)
	build := func(runtimeBinary string) (*Runtime, error) {
		file := filepath.Join(t.TempDir(), "config.toml")
		os.WriteFile(file, []byte(fmt.Sprintf(`
[plugins]
plugin_paths = [%q]
allow_any_plugin = true
[clusters]
kubeconfig_dir = %q
default_cluster = "alpha"
%sruntime_binary = %q
`, dir, tc.KubeconfigDir, testenv.SandboxTOML(t, "container", "kmcp-runtime"), runtimeBinary)), 0o600)
		cfg, err := config.Load(config.Options{File: file, LookupEnv: func(string) (string, bool) { return "", false }})
		if err != nil {
			t.Fatal(err)
		}
		parts, err := compose.Build(context.Background(), cfg, compose.Env{PathEnv: os.Getenv("PATH"), KrewRoot: t.TempDir()}, nil)
		if err != nil {
			return nil, err
		}
		rt, err := New(cfg, Options{Policy: parts.Policy, Backends: parts.Backends, Dirs: parts.Dirs, Container: parts.Container, Wasm: parts.Wasm})
		if err != nil {
			parts.Backends.Close()
			return nil, err
		}
		t.Cleanup(func() { rt.Close() })
		return rt, nil
	}

	_, err := build(missing)
	t.Logf("start-up without runc: %v", err)
	if err == nil || !strings.Contains(err.Error(), "sandbox.runtime_binary") || !strings.Contains(err.Error(), missing) ||
		!strings.Contains(err.Error(), "no such file") {
		t.Errorf("start-up with a missing runtime_binary: %v", err)
	}

	rt, err := build(broken)
	if err != nil {
		t.Fatal(err)
	}
	rt.Discover(context.Background())
	res, err := rt.Execute(context.Background(), Call{Plugin: "hello"})
	t.Logf("a call with a broken runc: %v %+v", err, res)
	if err != nil || res.Status != StatusFailed || !strings.Contains(res.Message, "the plugin could not run") ||
		!strings.Contains(res.Message, "OCI runtime") {
		t.Errorf("a call with a broken runc: %v %+v", err, res)
	}
	noContainerLeftovers(t, "kmcp-runtime")
}

// TestALineACrashCutShortStaysOnItsOwn: an audit file whose last line a
// crash cut short gets a newline at start-up, so the next record is a
// whole line of its own; at close the room set aside past its end is given
// back.
func TestALineACrashCutShortStaysOnItsOwn(t *testing.T) {
	path := filepath.Join(testenv.SmallDisk(t, 8), "audit.jsonl")
	os.WriteFile(path, []byte(`{"type":"call","call_id":"before"}`+"\n"+`{"type":"call","call_id":"cut`), 0o600)
	a, err := openAudit(path, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.call(&Result{CallID: "after", Status: StatusOK}, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
	if len(lines) != 3 || lines[1] != `{"type":"call","call_id":"cut` || !strings.Contains(lines[2], `"call_id":"after"`) {
		t.Errorf("audit file:\n%s", data)
	}
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	if allocated := st.Blocks * 512; allocated > 64<<10 {
		t.Errorf("%d bytes of the audit file's %d allocated after Close: the room set aside was not given back", allocated, st.Size)
	}
}
