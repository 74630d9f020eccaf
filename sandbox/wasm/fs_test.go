package wasm_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

const secret = "canary-7f3a9c-do-not-leak"

// fsFixture is a backend whose StateDir sits next to a host canary file,
// so that the canary is three ".." away from a guest's /tmp.
type fsFixture struct {
	b      *wasm.Backend
	plugin string
	canary string // absolute host path of a file holding secret
	// outside holds secret too, at a host path outside /tmp, so that no
	// guest mount's path can be a prefix of it.
	outside string
}

func newFSFixture(t *testing.T, tmpMiB int64) fsFixture {
	t.Helper()
	base := t.TempDir()
	canary := filepath.Join(base, "canary.txt")
	if err := os.WriteFile(canary, []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(base, "state")
	if err := os.Mkdir(state, 0o700); err != nil {
		t.Fatal(err)
	}
	b := newBackend(t, wasm.Config{StateDir: state, Limits: wasm.Limits{TmpMiB: tmpMiB}})
	outside, err := os.MkdirTemp(filepath.Dir(sharedCache), "canary-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(outside) })
	outside = filepath.Join(outside, "canary.txt")
	if err := os.WriteFile(outside, []byte(secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return fsFixture{b: b, plugin: hostileGuest(t), canary: canary, outside: outside}
}

// TestFilesystemContained runs every way out of the guest's folders we
// know of: each must fail (the guest exits 0 when it does, 3 when it got
// through), the secret must never show, and the host must be unchanged.
func TestFilesystemContained(t *testing.T) {
	t.Parallel()
	f := newFSFixture(t, 2)
	plugin := f.plugin
	before, err := os.ReadFile(plugin)
	if err != nil {
		t.Fatal(err)
	}
	// From the call's /tmp (StateDir/kmcp-wasm-ID-RAND/tmp) and /run/kube
	// (StateDir/kmcp-wasm-ID-RAND/run/kube) to the canary beside StateDir.
	fromTmp, fromKube := "../../../canary.txt", "../../../../canary.txt"
	withCluster := cluster(http.NotFoundHandler())
	for _, tc := range []struct {
		name    string
		args    []string
		cluster bool
	}{
		{"read /etc/passwd", []string{"read", "/etc/passwd"}, false},
		{"read the plugin file", []string{"read", plugin}, false},
		{"read the canary by its host path", []string{"read", f.canary}, true},
		{"read a canary outside /tmp by its host path", []string{"read", f.outside}, true},
		{"read /tmp/../etc/passwd", []string{"read", "/tmp/../etc/passwd"}, false},
		{"read ../../../etc/passwd from /tmp", []string{"read", "../../../etc/passwd"}, false},
		{"read the canary by .. from /tmp", []string{"read", "/tmp/" + fromTmp}, false},
		{"read the canary by .. from /run/kube", []string{"read", "/run/kube/" + fromKube}, true},
		{"path_open ../etc/passwd at /tmp", []string{"rawopen", "../etc/passwd"}, false},
		{"path_open the canary by .. at /tmp", []string{"rawopen", fromTmp}, false},
		{"path_open sub/../../canary at /tmp", []string{"rawopen", "sub/../" + fromTmp}, false},
		{"path_open .. at /tmp", []string{"rawopen", ".."}, false},
		{"path_open /etc/passwd at /tmp", []string{"rawopen", "/etc/passwd"}, false},
		{"path_open the canary by its host path at /tmp", []string{"rawopen", f.canary}, false},
		{"path_open a canary outside /tmp by its host path at /tmp", []string{"rawopen", f.outside}, false},
		{"path_open the canary by .. at /run/kube", []string{"rawopen", fromKube, "/run/kube"}, true},
		{"write /", []string{"write", "/x"}, false},
		{"write /etc/x", []string{"write", "/etc/kmcp-wasm-test-x"}, false},
		{"write the plugin file", []string{"write", plugin}, false},
		{"write the canary", []string{"write", f.canary}, false},
		{"write a canary outside /tmp", []string{"write", f.outside}, false},
		{"write /tmp/../x", []string{"write", "/tmp/../x"}, false},
		{"write /run/kube/config", []string{"write", "/run/kube/config"}, true},
		{"write a new file in /run/kube", []string{"write", "/run/kube/other"}, true},
		{"rename the kubeconfig into /tmp", []string{"rename", "/run/kube/config", "/tmp/config"}, true},
		{"symlink to the canary by its host path", []string{"link", f.canary}, false},
		{"symlink to a canary outside /tmp", []string{"link", f.outside}, false},
		{"symlink to the canary by ..", []string{"link", fromTmp}, false},
		{"symlink to /etc/passwd", []string{"link", "/etc/passwd"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := sandbox.Spec{ID: "fs", Args: tc.args}
			if tc.cluster {
				spec.Cluster = withCluster
			}
			r := runGuest(t, f.b, plugin, spec)
			mustExit(t, r, 0)
			if strings.Contains(r.stdout+r.stderr, secret) || strings.Contains(r.stdout, "root:") {
				t.Fatalf("host data reached the guest: %s", r)
			}
			if tc.args[0] == "link" && (!strings.Contains(r.stdout, "symlink:") || !strings.Contains(r.stdout, "link:")) {
				t.Fatalf("want both links refused: %s", r)
			}
			t.Log(strings.TrimSpace(r.stdout))
		})
	}
	if after, err := os.ReadFile(plugin); err != nil || !bytes.Equal(before, after) {
		t.Errorf("the plugin file changed (%v)", err)
	}
	for _, c := range []string{f.canary, f.outside} {
		if b, err := os.ReadFile(c); err != nil || string(b) != secret+"\n" {
			t.Errorf("the canary %s changed: %q %v", c, b, err)
		}
	}
	if _, err := os.Stat("/etc/kmcp-wasm-test-x"); err == nil {
		t.Errorf("the guest wrote /etc/kmcp-wasm-test-x on the host")
	}
	assertServes(t, f.b)
}

// TestFilesystemView checks what a guest does see: its mounts and no
// more, a working /tmp and a readable kubeconfig with no secret in it.
func TestFilesystemView(t *testing.T) {
	t.Parallel()
	f := newFSFixture(t, 2)
	withCluster := cluster(http.NotFoundHandler())

	t.Run("list / without a cluster", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"list", "/"}})
		mustExit(t, r, 0)
		assertWithin(t, r, "tmp")
	})
	t.Run("list / with a cluster", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"list", "/"}, Cluster: withCluster})
		mustExit(t, r, 0)
		assertWithin(t, r, "tmp", "run")
	})
	t.Run("list /run/kube", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"list", "/run/kube"}, Cluster: withCluster})
		mustExit(t, r, 0)
		if strings.TrimSpace(r.stdout) != "config" {
			t.Fatalf("want only config in /run/kube: %s", r)
		}
	})
	t.Run("/tmp is writable", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"tmp"}})
		mustExit(t, r, 0)
		if !strings.Contains(r.stdout, `read back "kept" <nil>`) {
			t.Fatalf("want the note read back: %s", r)
		}
	})
	t.Run("the kubeconfig names the gateway and holds no secret", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"cat", wasm.KubeconfigPath}, Cluster: withCluster})
		mustExit(t, r, 0)
		if !strings.Contains(r.stdout, abi.GatewayURL) {
			t.Fatalf("the kubeconfig does not name %s: %s", abi.GatewayURL, r)
		}
		for _, s := range []string{"token", "client-key", "password"} {
			if strings.Contains(r.stdout, s) {
				t.Errorf("the kubeconfig holds %s: %s", s, r)
			}
		}
	})
	t.Run("a fresh /tmp for every call", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{ID: "one", Args: []string{"put", "/tmp/carry", secret}})
		mustExit(t, r, 0)
		r = runGuest(t, f.b, f.plugin, sandbox.Spec{ID: "one", Args: []string{"read", "/tmp/carry"}})
		mustExit(t, r, 0) // "read" exits 3 when it could read
		if strings.Contains(r.stdout, secret) {
			t.Fatalf("the second call read the first one's file: %s", r)
		}
	})
}

// assertWithin checks that a listing printed no name but mounts. The
// guest may see fewer (wazero has no "/" to open when nothing is mounted
// there), never other ones.
func assertWithin(t *testing.T, r run, mounts ...string) {
	t.Helper()
	for _, l := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		if l != "" && !strings.HasPrefix(l, "error:") && !slices.Contains(mounts, l) {
			t.Errorf("the listing shows %s, which is no mount of the profile", l)
		}
	}
	if t.Failed() {
		t.Fatal(r)
	}
	t.Log(strings.TrimSpace(r.stdout))
}

// TestTmpQuota fills /tmp in the ways we know of; each must stop at
// Limits.TmpMiB with an error to the guest, and the call's folder must be
// gone after the run (runCtx checks StateDir).
func TestTmpQuota(t *testing.T) {
	t.Parallel()
	const limit = 2
	f := newFSFixture(t, limit)

	t.Run("fill", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"fill"}})
		mustExit(t, r, 0)
		m := regexp.MustCompile(`wrote (\d+) MiB, then: (.+)`).FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("want an error to the guest: %s", r)
		}
		if n, _ := strconv.Atoi(m[1]); n > limit {
			t.Fatalf("wrote %d MiB past a quota of %d: %s", n, limit, r)
		}
		t.Log(strings.TrimSpace(r.stdout))
	})
	t.Run("grow without writing", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"grow"}})
		mustExit(t, r, 0)
		t.Log(strings.TrimSpace(r.stdout))
	})
	t.Run("space given back on truncate and remove", func(t *testing.T) {
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"rewrite", "1"}})
		mustExit(t, r, 0)
	})
	t.Run("removed files still open", func(t *testing.T) {
		// The guest fills /tmp, removes the file but keeps it open, and
		// again: the removed files are still on the host's disk, so the
		// space must not come back while they are open.
		r := runGuest(t, f.b, f.plugin, sandbox.Spec{Args: []string{"unlinkfill", strconv.Itoa(2 * limit)}})
		t.Log(strings.TrimSpace(r.stdout))
		mustExit(t, r, 0)
	})
	assertServes(t, f.b)
}
