package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// ThousandPlugins writes the benchmarks' 1,000 plugins, 10 folders of 100
// (kubectl-bench<folder>_<n>), each printing a help with two flags, and
// returns the folders in PATH order.
func ThousandPlugins(t testing.TB) []string {
	t.Helper()
	root := t.TempDir()
	var dirs []string
	for d := range 10 {
		dir := filepath.Join(root, fmt.Sprintf("bin%d", d))
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		dirs = append(dirs, dir)
		for i := range 100 {
			body := fmt.Sprintf("#!/bin/sh\necho 'Plugin %d.\n\nFlags:\n  -n, --namespace string   where\n      --count int   how many (default 3)'\n", i)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("kubectl-bench%d_%d", d, i)), []byte(body), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dirs
}
