package testenv

import (
	"bytes"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
)

var (
	pluginsOnce sync.Once
	pluginsDir  string
	pluginsErr  error
)

// RealPlugins returns the folder of real kubectl plugins (krew, stern,
// kubectl-validate, kube-score, kubectx/kubens), built by
// hack/build-plugins.sh the first time on this machine. Without them the
// test fails: it never skips.
func RealPlugins(t testing.TB) string {
	t.Helper()
	pluginsOnce.Do(func() {
		root, err := images.RepoRoot()
		if err != nil {
			pluginsErr = err
			return
		}
		cmd := exec.Command(filepath.Join(root, "hack", "build-plugins.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			pluginsErr = fmt.Errorf("hack/build-plugins.sh: %v\n%s", err, stderr.String())
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		pluginsDir = lines[len(lines)-1]
	})
	if pluginsErr != nil {
		t.Fatalf("real plugins: %v", pluginsErr)
	}
	return pluginsDir
}

// SandboxTOML is a [sandbox] table for backend: for "container", on the
// shared test containerd, in a containerd namespace and state folder of
// the caller's own (name), with the sandbox image.
func SandboxTOML(t testing.TB, backend, name string) string {
	t.Helper()
	if backend != "container" {
		return fmt.Sprintf("[sandbox]\nbackend = %q\n", backend)
	}
	ctrd := TestContainerd(t)
	rootfs, err := images.PluginRootfs()
	if err != nil {
		t.Fatalf("sandbox image: %v", err)
	}
	return fmt.Sprintf("[sandbox]\nbackend = \"container\"\ncontainerd_address = %q\ncontainerd_namespace = %q\nrootfs = %q\nstate_dir = %q\n",
		ctrd.Address, name, rootfs, filepath.Join(ctrd.State, "..", name+"-state"))
}
