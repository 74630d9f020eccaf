package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
)

var (
	guestsMu sync.Mutex
	guests   = map[string]*guestBuild{}
)

type guestBuild struct {
	once sync.Once
	path string
	err  error
}

// WasmGuest builds the Go package at pkg (relative to the repository root)
// for GOOS=wasip1 once per test binary, and returns the module's path,
// named kubectl-<name>.wasm in a folder of its own, ready for discovery.
func WasmGuest(t testing.TB, pkg, name string) string {
	t.Helper()
	guestsMu.Lock()
	b := guests[pkg+"\x00"+name]
	if b == nil {
		b = &guestBuild{}
		guests[pkg+"\x00"+name] = b
	}
	guestsMu.Unlock()
	b.once.Do(func() {
		root, err := images.RepoRoot()
		if err != nil {
			b.err = err
			return
		}
		dir, err := os.MkdirTemp("", "kmcp-guest-")
		if err != nil {
			b.err = err
			return
		}
		atExit(func() { os.RemoveAll(dir) })
		out := filepath.Join(dir, "kubectl-"+name+".wasm")
		cmd := exec.Command("go", "build", "-trimpath", "-o", out, "./"+pkg)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0", "GOWORK=off")
		if msg, err := cmd.CombinedOutput(); err != nil {
			b.err = fmt.Errorf("build %s for wasip1: %v\n%s", pkg, err, msg)
			return
		}
		b.path = out
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}
