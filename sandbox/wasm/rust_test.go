package wasm_test

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// debianRustc is Debian's rustc, whose libstd-rust-dev-wasm32 carries the
// wasm32-wasi standard library (hack/test-deps.sh installs both).
const debianRustc = "/usr/bin/rustc"

// A module from Rust's toolchain runs as Go's do: argv, stdin, stdout, exit
// code and its own /tmp, and no host file.
func TestRustGuest(t *testing.T) {
	t.Parallel()
	plugin := filepath.Join(t.TempDir(), "kubectl-rust.wasm")
	build := exec.Command(debianRustc, "--target", "wasm32-wasi", "-O", "-o", plugin, "testdata/rust/main.rs")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the Rust guest: %v\n%s", err, out)
	}
	b := newBackend(t, wasm.Config{})
	r := runGuest(t, b, plugin, sandbox.Spec{ID: "rust", Args: []string{"a b"}, Stdin: strings.NewReader("from stdin\n")})
	want := []string{`rust guest: args=["kubectl-rust", "a b"] stdin=from stdin`, "no /etc/passwd", "tmp: kept"}
	for _, w := range want {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stdout lacks %q:\n%s", w, r.stdout)
		}
	}
	if r.err != nil || r.res.ExitCode != 7 || strings.Contains(r.stdout, "READ") {
		t.Errorf("run: %v %+v\n%s%s", r.err, r.res, r.stdout, r.stderr)
	}
}
