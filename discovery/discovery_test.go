package discovery

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// countingBackend runs plugins with the none backend and counts the runs,
// so tests can see whether help was run again.
type countingBackend struct {
	sandbox.None
	runs atomic.Int32
}

func (b *countingBackend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	b.runs.Add(1)
	return b.None.Run(ctx, spec)
}

func writePlugin(t *testing.T, dir, file, script string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, file)
	if err := os.WriteFile(path, []byte(script), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

const cobraHelp = `#!/bin/sh
cat <<'HELP'
Greets someone in the cluster.

Usage:
  kubectl hello [flags]

Flags:
  -n, --namespace string   namespace to greet in (default "default")
      --times int          how often to greet (default 1)
      --loud               shout
HELP
`

func TestRefreshReportsChangesAndCachesHelp(t *testing.T) {
	dir := t.TempDir()
	writePlugin(t, dir, "kubectl-hello", cobraHelp, 0o755)
	backend := &countingBackend{}
	cache := filepath.Join(t.TempDir(), "cache.json")
	m := NewManager(Options{Dirs: []string{dir}, Backend: backend, CacheFile: cache})
	ctx := context.Background()

	events, err := m.Refresh(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(events, []Event{{Added, "hello"}}) {
		t.Fatalf("first refresh events = %v", events)
	}
	p, err := m.Get("hello")
	if err != nil {
		t.Fatal(err)
	}
	if p.Description != "Greets someone in the cluster." || len(p.Parameters) != 3 || p.HelpWarning != "" {
		t.Fatalf("plugin = %+v", p)
	}
	if p.SHA256 == "" || p.ToolName != "plugin_hello" || p.Kind != KindExec {
		t.Fatalf("plugin = %+v", p)
	}

	// Nothing changed: no events, no help run.
	if events, _ := m.Refresh(ctx); len(events) != 0 || backend.runs.Load() != 1 {
		t.Fatalf("unchanged refresh: events %v, help runs %d", events, backend.runs.Load())
	}
	// A new manager reads the disk cache instead of running help again.
	m2 := NewManager(Options{Dirs: []string{dir}, Backend: backend, CacheFile: cache})
	if _, err := m2.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if p2, _ := m2.Get("hello"); backend.runs.Load() != 1 || len(p2.Parameters) != 3 {
		t.Fatalf("after restart: help runs %d, parameters %v", backend.runs.Load(), p2.Parameters)
	}

	// Changed content, a new plugin and a removed one.
	writePlugin(t, dir, "kubectl-hello", cobraHelp+"# v2\n", 0o755)
	writePlugin(t, dir, "kubectl-bye", "#!/bin/sh\necho bye\n", 0o755)
	events, _ = m.Refresh(ctx)
	if !slices.Equal(events, []Event{{Added, "bye"}, {Changed, "hello"}}) {
		t.Fatalf("events = %v", events)
	}
	os.Remove(filepath.Join(dir, "kubectl-bye"))
	var notified []Event
	m.Subscribe(func(e []Event) { notified = append(notified, e...) })
	events, _ = m.Refresh(ctx)
	if !slices.Equal(events, []Event{{Removed, "bye"}}) || !slices.Equal(notified, events) {
		t.Fatalf("events = %v, notified %v", events, notified)
	}
}

// A plugin whose --help hangs, floods, crashes or says nothing useful is
// still listed, without parameters and with a warning.
func TestHostileHelp(t *testing.T) {
	dir := t.TempDir()
	writePlugin(t, dir, "kubectl-hangs", "#!/bin/sh\nsleep 60\n", 0o755)
	writePlugin(t, dir, "kubectl-floods", "#!/bin/sh\nexec yes 'flood flood flood'\n", 0o755)
	writePlugin(t, dir, "kubectl-crashes", "#!/bin/sh\nkill -SEGV $$\n", 0o755)
	writePlugin(t, dir, "kubectl-mute", "#!/bin/sh\nexit 3\n", 0o755)
	m := NewManager(Options{Dirs: []string{dir}, Backend: sandbox.None{}, HelpTimeout: 500 * time.Millisecond, HelpOutputLimit: 64 << 10})
	start := time.Now()
	if _, err := m.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refresh took %s", d)
	}
	want := map[string]string{
		"hangs":   "did not finish within 500ms",
		"floods":  "printed more than 65536 bytes",
		"crashes": "crashed: killed by segmentation fault",
		"mute":    "could not be parsed",
	}
	for name, warning := range want {
		p, err := m.Get(name)
		if err != nil {
			t.Fatal(err)
		}
		if len(p.Parameters) != 0 || !strings.Contains(p.HelpWarning, warning) {
			t.Errorf("%s: parameters %v, warning %q, want it to contain %q", name, p.Parameters, p.HelpWarning, warning)
		}
	}
}

func TestWithoutBackendHelpIsNotRun(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "ran")
	writePlugin(t, dir, "kubectl-spy", "#!/bin/sh\ntouch "+marker+"\n", 0o755)
	writePlugin(t, dir, "kubectl-mod.wasm", "\x00asm", 0o644)
	m := NewManager(Options{Dirs: []string{dir}})
	m.Refresh(context.Background())
	if _, err := os.Stat(marker); err == nil {
		t.Fatal("a plugin ran without a sandbox backend")
	}
	spy, _ := m.Get("spy")
	wasm, _ := m.Get("mod")
	if !strings.Contains(spy.HelpWarning, "no sandbox backend") || wasm == nil || wasm.Kind != KindWasm ||
		!strings.Contains(wasm.HelpWarning, "wasm sandbox backend") {
		t.Fatalf("spy %+v\nwasm %+v", spy, wasm)
	}
}

func TestNamesAndWarnings(t *testing.T) {
	first, second, target := t.TempDir(), t.TempDir(), t.TempDir()
	script := "#!/bin/sh\n"
	writePlugin(t, first, "kubectl-get_all", script, 0o755)
	writePlugin(t, first, "kubectl-foo-bar", script, 0o755)
	writePlugin(t, first, "kubectl-foo_bar", script, 0o755)
	writePlugin(t, first, "kubectl-noexec", script, 0o644)
	writePlugin(t, second, "kubectl-noexec", script, 0o755)
	writePlugin(t, second, "kubectl-get_all", script, 0o755)
	writePlugin(t, first, "kubectl-get", script, 0o755)
	writePlugin(t, first, "kubectl-create-thing", script, 0o755)
	writePlugin(t, first, "kubectl-bad.name", script, 0o755)
	real := writePlugin(t, target, "real-binary", script, 0o755)
	os.Symlink(real, filepath.Join(second, "kubectl-linked"))
	os.Symlink(filepath.Join(target, "gone"), filepath.Join(second, "kubectl-dangling"))
	missing := filepath.Join(first, "missing")

	m := NewManager(Options{Dirs: SearchDirs(first+":"+second+"::"+first, []string{missing}, filepath.Join(target, "krew"))})
	m.Refresh(context.Background())

	var names []string
	for _, p := range m.List() {
		names = append(names, p.Name)
	}
	want := []string{"bad.name", "create-thing", "foo-bar", "foo_bar", "get", "get_all", "linked", "noexec"}
	if !slices.Equal(names, want) {
		t.Fatalf("names = %v, want %v", names, want)
	}
	getAll, _ := m.Get("get-all")
	if getAll.Path != filepath.Join(first, "kubectl-get_all") || getAll.Command != "get-all" || !slices.Equal(getAll.Aliases, []string{"get-all"}) {
		t.Errorf("get-all = %+v", getAll)
	}
	// The first executable file of a name is the one that runs, as kubectl's LookPath picks it.
	if p, _ := m.Get("noexec"); p.Path != filepath.Join(second, "kubectl-noexec") {
		t.Errorf("noexec runs from %s", p.Path)
	}
	if p, _ := m.Get("foo bar"); p == nil || p.Name != "foo-bar" || p.Command != "foo bar" {
		t.Errorf("foo bar = %+v", p)
	}
	if _, err := m.Get("foo_bar"); err != nil {
		t.Errorf("exact name: %v", err)
	}
	if _, err := m.Get("kubectl-foo-bar"); err != nil {
		t.Errorf("kubectl- prefix: %v", err)
	}
	if p, _ := m.Get("linked"); p.ResolvedPath != real {
		t.Errorf("linked resolves to %s, want %s", p.ResolvedPath, real)
	}
	if p, _ := m.Get("bad.name"); p.ToolName != "" {
		t.Errorf("bad.name has tool %q", p.ToolName)
	}

	var messages []string
	for _, w := range m.Warnings() {
		messages = append(messages, w.Message)
	}
	all := strings.Join(messages, "\n")
	for _, w := range []string{
		filepath.Join(first, "kubectl-noexec") + " identified as a kubectl plugin, but it is not executable",
		filepath.Join(second, "kubectl-noexec") + " is overshadowed by a similarly named plugin: " + filepath.Join(first, "kubectl-noexec"),
		filepath.Join(second, "kubectl-get_all") + " is overshadowed by a similarly named plugin: " + filepath.Join(first, "kubectl-get_all"),
		`kubectl-get overwrites existing command: "kubectl get"`,
		`kubectl-create-thing overwrites existing command: "kubectl create"`,
		"unable to identify " + filepath.Join(second, "kubectl-dangling") + " as an executable file",
		`plugin name "bad.name" cannot form an MCP tool name`,
		`unable to read directory "` + missing + `"`,
		`unable to read directory "` + filepath.Join(target, "krew", "bin") + `"`,
	} {
		if !strings.Contains(all, w) {
			t.Errorf("no warning %q in:\n%s", w, all)
		}
	}
	if strings.Count(all, filepath.Join(first, "kubectl-get_all")+" is overshadowed") != 0 {
		t.Errorf("a folder listed twice in PATH was searched twice:\n%s", all)
	}
	if _, err := m.Get("nope"); err == nil || !strings.Contains(err.Error(), `plugin "nope" not found`) {
		t.Errorf("Get(nope) = %v", err)
	}
}
