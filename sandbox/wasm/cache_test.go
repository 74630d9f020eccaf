package wasm_test

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

func compiles(b *wasm.Backend) (int64, int64) {
	return b.Stats().Compiles.Load(), b.Stats().Hits.Load()
}

// TestCache checks, through the backend's counters, that a module is
// compiled once per content and found again after.
func TestCache(t *testing.T) {
	t.Parallel()
	b := newBackend(t, wasm.Config{})
	dir := t.TempDir()
	plugin := writeModule(t, dir, "kubectl-a.wasm", wasiHello("first\n", 7))
	want := func(t *testing.T, wantCompiles int64) {
		t.Helper()
		if c, _ := compiles(b); c != wantCompiles {
			t.Fatalf("%d compiles, want %d", c, wantCompiles)
		}
	}

	if err := b.Prepare(context.Background(), plugin); err != nil {
		t.Fatal(err)
	}
	want(t, 1)
	for range 3 {
		mustExit(t, runGuest(t, b, plugin, sandbox.Spec{}), 7)
	}
	want(t, 1)
	if _, hits := compiles(b); hits < 3 {
		t.Fatalf("%d hits after 3 runs of a prepared module", hits)
	}

	t.Run("changed content compiles again", func(t *testing.T) {
		writeModule(t, dir, "kubectl-a.wasm", wasiHello("second, longer\n", 9))
		r := runGuest(t, b, plugin, sandbox.Spec{})
		mustExit(t, r, 9)
		if r.stdout != "second, longer\n" {
			t.Fatalf("the old module ran: %s", r)
		}
		want(t, 2)
	})
	t.Run("changed content of the same size, file replaced", func(t *testing.T) {
		// What installers do: a new file renamed over the old one.
		tmp := writeModule(t, dir, "new.tmp", wasiHello("second, LONGER\n", 8))
		if err := os.Rename(tmp, plugin); err != nil {
			t.Fatal(err)
		}
		r := runGuest(t, b, plugin, sandbox.Spec{})
		mustExit(t, r, 8)
		want(t, 3)
	})
	t.Run("the same content in two files compiles once", func(t *testing.T) {
		other := writeModule(t, dir, "kubectl-b.wasm", wasiHello("second, LONGER\n", 8))
		if err := b.Prepare(context.Background(), other); err != nil {
			t.Fatal(err)
		}
		mustExit(t, runGuest(t, b, other, sandbox.Spec{}), 8)
		want(t, 3)
	})
	// Only the contents some file holds stay compiled: a's earlier ones went
	// when a changed; b's, which a held too, stays while b holds it.
	if held := b.Stats().Held.Load(); held != 1 {
		t.Errorf("%d modules kept for one content held by two files, want 1", held)
	}
	t.Run("content back to an earlier one compiles again, from wazero's cache", func(t *testing.T) {
		writeModule(t, dir, "kubectl-a.wasm", wasiHello("first\n", 7))
		mustExit(t, runGuest(t, b, plugin, sandbox.Spec{}), 7)
		want(t, 4)
		if held := b.Stats().Held.Load(); held != 2 {
			t.Errorf("%d modules kept for two files of different content, want 2", held)
		}
	})
}

// TestCacheConcurrentFirstRuns: many first runs of one module at once
// compile it once.
func TestCacheConcurrentFirstRuns(t *testing.T) {
	t.Parallel()
	b := newBackend(t, wasm.Config{CacheDir: t.TempDir()})
	plugin := writeModule(t, t.TempDir(), "kubectl-c.wasm", wasiHello("c\n", 5))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { mustExitAsync(t, runGuest(t, b, plugin, sandbox.Spec{}), 5) })
	}
	wg.Wait()
	if c, _ := compiles(b); c != 1 {
		t.Fatalf("%d compiles of one module run 8 times at once, want 1", c)
	}
}

// mustExitAsync is mustExit for goroutines other than the test's.
func mustExitAsync(t *testing.T, r run, code int) {
	t.Helper()
	if r.err != nil || r.res.Stopped || r.res.ExitCode != code {
		t.Errorf("want exit code %d, got %s", code, r)
	}
}

// TestDiskCache: a second backend on the same CacheDir finds the module
// compiled by the first in wazero's cache, and adds nothing to it.
func TestDiskCache(t *testing.T) {
	t.Parallel()
	cacheDir := t.TempDir()
	plugin := writeModule(t, t.TempDir(), "kubectl-d.wasm", wasiHello("from the disk cache\n", 3))
	files := func() (n int, names []string) {
		filepath.WalkDir(cacheDir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				info, _ := d.Info()
				names = append(names, fmt.Sprintf("%s %d %s", strings.TrimPrefix(p, cacheDir), info.Size(), info.ModTime().Format(time.RFC3339Nano)))
			}
			return nil
		})
		return len(names), names
	}

	first, err := wasm.New(context.Background(), wasm.Config{CacheDir: cacheDir, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Prepare(context.Background(), plugin); err != nil {
		t.Fatal(err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	n1, names1 := files()
	if n1 == 0 {
		t.Fatal("the first backend left nothing in its CacheDir")
	}

	second := newBackend(t, wasm.Config{CacheDir: cacheDir})
	r := runGuest(t, second, plugin, sandbox.Spec{})
	mustExit(t, r, 3)
	if r.stdout != "from the disk cache\n" {
		t.Fatalf("stdout: %s", r)
	}
	n2, names2 := files()
	if n2 != n1 || strings.Join(names1, "\n") != strings.Join(names2, "\n") {
		t.Fatalf("the second backend wrote to the cache: before\n%s\nafter\n%s", strings.Join(names1, "\n"), strings.Join(names2, "\n"))
	}
	if c, _ := compiles(second); c != 1 {
		t.Fatalf("%d compiles by the second backend, want 1 (from the disk cache)", c)
	}
	t.Logf("cache files: %s", strings.Join(names2, ", "))
}
