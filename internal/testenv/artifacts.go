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

// scriptFolder runs a hack/ script that builds into a cache and prints the
// folder it built, once per test binary.
type scriptFolder struct {
	script string
	once   sync.Once
	dir    string
	err    error
}

func (s *scriptFolder) get(t testing.TB, what string) string {
	t.Helper()
	s.once.Do(func() {
		root, err := images.RepoRoot()
		if err != nil {
			s.err = err
			return
		}
		cmd := exec.Command(filepath.Join(root, "hack", s.script))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			s.err = fmt.Errorf("hack/%s: %v\n%s", s.script, err, stderr.String())
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		s.dir = lines[len(lines)-1]
	})
	if s.err != nil {
		t.Fatalf("%s: %v", what, s.err)
	}
	return s.dir
}

var (
	realPlugins = &scriptFolder{script: "build-plugins.sh"}
	wasmPlugins = &scriptFolder{script: "build-wasm-plugins.sh"}
)

// RealPlugins returns the folder of real kubectl plugins (krew, stern,
// kubectl-validate, kube-score, kubectx/kubens), built by
// hack/build-plugins.sh the first time on this machine. Without them the
// test fails: it never skips.
func RealPlugins(t testing.TB) string {
	t.Helper()
	return realPlugins.get(t, "real plugins")
}

// WasmPlugins returns the folder of WebAssembly kubectl plugins
// (kubectl-<name>.wasm, GOOS=wasip1 GOARCH=wasm): this repository's examples
// (pod-list, manifest-lint) and real ones (kube-score), built by
// hack/build-wasm-plugins.sh the first time on this machine and whenever an
// example's sources change. Without them the test fails: it never skips.
func WasmPlugins(t testing.TB) string {
	t.Helper()
	return wasmPlugins.get(t, "wasm plugins")
}

// SandboxTOML is a [sandbox] table for backend: for "container", on the
// shared test containerd, in a containerd namespace and state folder of
// the caller's own (name), with the sandbox image; "gvisor" is the same
// container sandbox with isolation = "gvisor" (runsc); "kubernetes" is
// one Pod per call on the shared test node (TestKubeNode), in its one
// namespace, as an instance of its own (name and a random suffix), which
// is what a server sweeps.
func SandboxTOML(t testing.TB, backend, name string) string {
	t.Helper()
	if backend == "kubernetes" {
		node := TestKubeNode(t)
		return fmt.Sprintf("[sandbox]\nbackend = \"kubernetes\"\nkubernetes_kubeconfig = %q\nkubernetes_namespace = %q\nkubernetes_image = %q\n"+
			"kubernetes_image_pull_policy = \"Never\"\nkubernetes_node_name = %q\nkubernetes_gateway_listen = %q\nkubernetes_gateway_host = %q\n"+
			"kubernetes_instance = %q\n", node.Kubeconfig, node.Namespace, node.SandboxImage, node.NodeName, node.GatewayIP, node.GatewayIP, name+"-"+randomHex(4))
	}
	if backend != "container" && backend != "gvisor" {
		return fmt.Sprintf("[sandbox]\nbackend = %q\n", backend)
	}
	ctrd := TestContainerd(t)
	rootfs, err := images.PluginRootfs()
	if err != nil {
		t.Fatalf("sandbox image: %v", err)
	}
	table := fmt.Sprintf("[sandbox]\nbackend = \"container\"\ncontainerd_address = %q\ncontainerd_namespace = %q\nrootfs = %q\nstate_dir = %q\n",
		ctrd.Address, name, rootfs, filepath.Join(ctrd.State, "..", name+"-state"))
	if backend == "gvisor" {
		table += fmt.Sprintf("isolation = \"gvisor\"\nrunsc_binary = %q\n", Runsc(t))
	}
	return table
}
