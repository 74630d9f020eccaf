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
	wasmOnce sync.Once
	wasmDir  string
	wasmErr  error
)

// WasmPlugins returns the folder of WebAssembly kubectl plugins
// (kubectl-<name>.wasm, GOOS=wasip1 GOARCH=wasm): this repository's examples
// (pod-list, manifest-lint) and real ones (kube-score), built by
// hack/build-wasm-plugins.sh the first time on this machine and whenever an
// example's sources change. Without them the test fails: it never skips.
func WasmPlugins(t testing.TB) string {
	t.Helper()
	wasmOnce.Do(func() {
		root, err := images.RepoRoot()
		if err != nil {
			wasmErr = err
			return
		}
		cmd := exec.Command(filepath.Join(root, "hack", "build-wasm-plugins.sh"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			wasmErr = fmt.Errorf("hack/build-wasm-plugins.sh: %v\n%s", err, stderr.String())
			return
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		wasmDir = lines[len(lines)-1]
	})
	if wasmErr != nil {
		t.Fatalf("wasm plugins: %v", wasmErr)
	}
	return wasmDir
}
