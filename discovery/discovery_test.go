package discovery

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
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
	m := NewManager(Options{Dirs: []string{dir}, Backends: sandbox.Backends{Native: backend}, CacheFile: cache})
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
	m2 := NewManager(Options{Dirs: []string{dir}, Backends: sandbox.Backends{Native: backend}, CacheFile: cache})
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
	m := NewManager(Options{Dirs: []string{dir}, Backends: sandbox.Backends{Native: sandbox.None{}}, HelpTimeout: 500 * time.Millisecond, HelpOutputLimit: 64 << 10})
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

// helpRecorder runs plugins with the none backend and records which files
// ran, so tests can see what discovery ran and what it did not.
type helpRecorder struct {
	sandbox.None
	mu  sync.Mutex
	ran []string
}

func (b *helpRecorder) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	b.mu.Lock()
	b.ran = append(b.ran, filepath.Base(spec.Plugin))
	b.mu.Unlock()
	return b.None.Run(ctx, spec)
}

func (b *helpRecorder) runs(file string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for _, f := range b.ran {
		if f == file {
			n++
		}
	}
	return n
}

// Policy decides before any probe: the --help of a plugin policy does not
// let run never runs (under none it would run with the server's rights),
// and the plugin is listed with the reason and no parameters.
func TestPluginsPolicyRefusesAreNeverProbed(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(t.TempDir(), "probed")
	writePlugin(t, dir, "kubectl-hello", cobraHelp, 0o755)
	writePlugin(t, dir, "kubectl-blocked", "#!/bin/sh\ntouch "+marker+"\n"+strings.TrimPrefix(cobraHelp, "#!/bin/sh\n"), 0o755)
	backend := &helpRecorder{}
	var asked []string
	m := NewManager(Options{Dirs: []string{dir}, Backends: sandbox.Backends{Native: backend},
		MayRun: func(p *Plugin) (bool, string) {
			asked = append(asked, p.Name+"@"+p.SHA256[:8])
			if p.Name == "blocked" {
				return false, `plugin "blocked" is blocked by blocked_plugins pattern "blocked"`
			}
			return true, ""
		}})
	if _, err := m.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(marker); err == nil || backend.runs("kubectl-blocked") != 0 {
		t.Fatalf("the refused plugin ran %d times", backend.runs("kubectl-blocked"))
	}
	p, err := m.Get("blocked")
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Parameters) != 0 || p.Description != "" || !strings.Contains(p.HelpWarning, "policy does not let this plugin run") ||
		!strings.Contains(p.HelpWarning, "blocked_plugins") || p.SHA256 == "" {
		t.Errorf("refused plugin: %+v", p)
	}
	if hello, _ := m.Get("hello"); len(hello.Parameters) != 3 || backend.runs("kubectl-hello") != 1 {
		t.Errorf("allowed plugin: %+v, help runs %d", hello, backend.runs("kubectl-hello"))
	}
	if len(asked) != 2 {
		t.Errorf("policy was asked %v; it must be asked once per plugin, with its digest", asked)
	}
}

// slowHelpPlugin writes kubectl-hello, whose --help takes 30 s while the
// file it returns exists and answers at once once it is removed.
func slowHelpPlugin(t *testing.T, dir string) (slow string) {
	t.Helper()
	slow = filepath.Join(t.TempDir(), "slow")
	os.WriteFile(slow, nil, 0o600)
	writePlugin(t, dir, "kubectl-hello", "#!/bin/sh\n[ -e "+slow+" ] && sleep 30\n"+strings.TrimPrefix(cobraHelp, "#!/bin/sh\n"), 0o755)
	return slow
}

// Help cut short by a cancelled discovery is not cached: the next
// refresh runs it again and finds the parameters.
func TestCancelledHelpIsNotCached(t *testing.T) {
	dir := t.TempDir()
	slow := slowHelpPlugin(t, dir)
	backend := &helpRecorder{}
	cache := filepath.Join(t.TempDir(), "cache.json")
	m := NewManager(Options{Dirs: []string{dir}, Backends: sandbox.Backends{Native: backend}, CacheFile: cache})
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		for backend.runs("kubectl-hello") == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(200 * time.Millisecond)
		cancel()
	}()
	if _, err := m.Refresh(ctx); err == nil {
		t.Fatal("a cancelled refresh reported no error")
	}
	p, _ := m.Get("hello")
	if p == nil || len(p.Parameters) != 0 || !strings.Contains(p.HelpWarning, "cancelled") {
		t.Fatalf("after the cancelled refresh: %+v", p)
	}
	if data, _ := os.ReadFile(cache); strings.Contains(string(data), "namespace") {
		t.Fatalf("the cut-short help reached the cache file: %s", data)
	}
	// A new manager (a restarted server) and the same one both try again.
	os.Remove(slow)
	m2 := NewManager(Options{Dirs: []string{dir}, Backends: sandbox.Backends{Native: backend}, CacheFile: cache})
	for _, mgr := range []*Manager{m, m2} {
		if _, err := mgr.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p, _ := mgr.Get("hello"); len(p.Parameters) != 3 || p.HelpWarning != "" {
			t.Errorf("after a full refresh: %+v", p)
		}
	}
}

// A timed-out --help is tried again on a later refresh; help that ran to
// its end is not.
func TestTimedOutHelpIsTriedAgain(t *testing.T) {
	dir := t.TempDir()
	slow := slowHelpPlugin(t, dir)
	backend := &helpRecorder{}
	m := NewManager(Options{Dirs: []string{dir}, Backends: sandbox.Backends{Native: backend}, HelpTimeout: 300 * time.Millisecond})
	m.Refresh(context.Background())
	if p, _ := m.Get("hello"); len(p.Parameters) != 0 || !strings.Contains(p.HelpWarning, "did not finish within 300ms") {
		t.Fatalf("after the timeout: %+v", p)
	}
	os.Remove(slow)
	m.Refresh(context.Background())
	if p, _ := m.Get("hello"); len(p.Parameters) != 3 || backend.runs("kubectl-hello") != 2 {
		t.Fatalf("after the retry: %+v, help runs %d", p, backend.runs("kubectl-hello"))
	}
	m.Refresh(context.Background())
	if n := backend.runs("kubectl-hello"); n != 2 {
		t.Errorf("help that finished ran again: %d runs", n)
	}
}

// The bytes that run are the bytes that were checked: a file rewritten in
// place after discovery, with its size kept and its mtime set back, no
// longer verifies.
func TestVerifyCatchesAnInPlaceRewriteWithTheMtimeSetBack(t *testing.T) {
	dir := t.TempDir()
	path := writePlugin(t, dir, "kubectl-hello", cobraHelp, 0o755)
	m := NewManager(Options{Dirs: []string{dir}})
	m.Refresh(context.Background())
	p, _ := m.Get("hello")
	if err := p.Verify(); err != nil {
		t.Fatalf("unchanged file: %v", err)
	}
	before, _ := os.Stat(path)
	time.Sleep(20 * time.Millisecond) // a ctime tick apart
	evil := strings.Replace(cobraHelp, "Greets", "Grabs!", 1)
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte(evil), 0)
	f.Close()
	os.Chtimes(path, before.ModTime(), before.ModTime())
	after, _ := os.Stat(path)
	if after.Size() != before.Size() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("the rewrite changed size or mtime: %v %v", after.Size(), after.ModTime())
	}
	if err := p.Verify(); err == nil || !strings.Contains(err.Error(), "changed on disk") {
		t.Errorf("the rewritten file verified: %v", err)
	}
}

// A folder or plugin file any user may write is a plugin any user may
// replace: discovery says so, and still lists what it finds, as kubectl
// would run it.
func TestWritableByOthersIsAWarning(t *testing.T) {
	open, safe := t.TempDir(), t.TempDir()
	os.Chmod(open, 0o1777) // sticky, as /tmp: others may still add plugins
	writePlugin(t, open, "kubectl-shared", "#!/bin/sh\n", 0o755)
	loose := writePlugin(t, safe, "kubectl-loose", "#!/bin/sh\n", 0o755)
	os.Chmod(loose, 0o757)
	writePlugin(t, safe, "kubectl-tight", "#!/bin/sh\n", 0o755)
	m := NewManager(Options{Dirs: []string{open, safe}})
	m.Refresh(context.Background())
	var got []string
	for _, w := range m.Warnings() {
		if strings.Contains(w.Message, "writable by every user") {
			got = append(got, w.Path)
		}
	}
	if want := []string{open, loose}; !slices.Equal(got, want) {
		t.Errorf("writable-by-others warnings for %v, want %v: %+v", got, want, m.Warnings())
	}
	if len(m.List()) != 3 {
		t.Errorf("listed %d plugins, want all 3", len(m.List()))
	}
}
