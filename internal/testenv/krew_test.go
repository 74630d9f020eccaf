package testenv_test

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// krewCLI runs the real krew with a KREW_ROOT and HOME of its own,
// KREW_NO_UPGRADE_CHECK=1 and nothing else of the environment but path.
type krewCLI struct {
	t    *testing.T
	bin  string
	root string
	path string
}

func newKrewCLI(t *testing.T, path string) *krewCLI {
	t.Helper()
	return &krewCLI{t: t, bin: filepath.Join(testenv.RealPlugins(t), "kubectl-krew"), root: t.TempDir(), path: path}
}

type krewResult struct {
	stdout, stderr string
	code           int
}

func (k *krewCLI) run(args ...string) krewResult {
	k.t.Helper()
	cmd := exec.Command(k.bin, args...)
	cmd.Env = []string{"KREW_ROOT=" + k.root, "HOME=" + filepath.Join(k.root, "..", "home"), "KREW_NO_UPGRADE_CHECK=1", "PATH=" + k.path}
	cmd.Dir = k.root
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := krewResult{stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	case err != nil:
		k.t.Fatalf("kubectl-krew %s: %v", strings.Join(args, " "), err)
	}
	k.t.Logf("kubectl-krew %s: exit %d\n--- stdout:\n%s--- stderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

func (k *krewCLI) mustRun(args ...string) krewResult {
	k.t.Helper()
	r := k.run(args...)
	if r.code != 0 {
		k.t.Fatalf("kubectl-krew %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r
}

// binLink checks $KREW_ROOT/bin/kubectl-NAME: an absolute symbolic link into
// the store, to the binary p published, that prints "NAME VERSION".
func (k *krewCLI) binLink(p testenv.KrewPlugin) {
	k.t.Helper()
	link := filepath.Join(k.root, "bin", "kubectl-"+p.Name)
	target, err := os.Readlink(link)
	if err != nil {
		k.t.Fatalf("bin link: %v", err)
	}
	want := filepath.Join(k.root, "store", p.Name, p.Version, "kubectl-"+p.Name)
	if target != want {
		k.t.Fatalf("bin link points to %q, want %q", target, want)
	}
	data, err := os.ReadFile(link)
	if err != nil {
		k.t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != p.BinarySHA256 {
		k.t.Fatalf("installed binary is not the one published")
	}
	out, err := exec.Command(link, "a b", "--greeting", "hi").Output()
	if err != nil {
		k.t.Fatalf("run %s: %v", link, err)
	}
	if got, want := string(out), "hi\n"+p.Name+" "+p.Version+"\na b\n"; got != want {
		k.t.Fatalf("%s printed %q, want %q", link, got, want)
	}
}

type receipt struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version string `json:"version"`
	} `json:"spec"`
	Status struct {
		Source struct {
			Name string `json:"name"`
		} `json:"source"`
	} `json:"status"`
}

func (k *krewCLI) receipt(name string) (receipt, string) {
	k.t.Helper()
	data, err := os.ReadFile(filepath.Join(k.root, "receipts", name+".yaml"))
	if err != nil {
		k.t.Fatalf("receipt: %v", err)
	}
	var r receipt
	if err := yaml.Unmarshal(data, &r); err != nil {
		k.t.Fatalf("receipt: %v\n%s", err, data)
	}
	return r, string(data)
}

// names lists a folder's entries (nil when it does not exist).
func names(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// onlyGit is a PATH folder holding git and nothing else (no kubectl).
func onlyGit(t *testing.T) string {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.Symlink(git, filepath.Join(dir, "git")); err != nil {
		t.Fatal(err)
	}
	return dir
}

// lastLine is the last line of a command's stderr.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// From the local index: index add, install INDEX/PLUGIN (one download), a
// new version, the index clone brought up to date as krew's update does it,
// and upgrade (one more download). krew needs no kubectl on PATH: only git.
func TestKrewIndexInstallAndUpgrade(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	v1 := idx.Publish(t, "hello", "v1.0.0")
	k := newKrewCLI(t, onlyGit(t))

	r := k.mustRun("index", "add", "test", idx.Dir)
	if r.stdout != "" || !strings.Contains(r.stderr, "WARNING: You have added a new index from") {
		t.Errorf("index add: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if idx.Requests() != 0 {
		t.Fatalf("index add downloaded %d archives", idx.Requests())
	}
	if _, err := os.Stat(filepath.Join(k.root, "index", "test", "plugins", "hello.yaml")); err != nil {
		t.Fatalf("index clone: %v", err)
	}
	// Unqualified names mean the index "default", which is not there.
	if r := k.run("install", "--no-update-index", "hello"); r.code != 1 {
		t.Fatalf("install of an unqualified name: exit %d", r.code)
	}
	r = k.mustRun("install", "--no-update-index", "test/hello")
	if r.stdout != "" || !strings.Contains(r.stderr, "Installed plugin: hello") {
		t.Errorf("install: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if idx.Requests() != 1 {
		t.Fatalf("install made %d requests, want 1", idx.Requests())
	}
	k.binLink(v1)
	rec, text := k.receipt("hello")
	t.Logf("receipt:\n%s", text)
	if rec.Status.Source.Name != "test" || rec.Spec.Version != "v1.0.0" || rec.Metadata.Name != "hello" ||
		rec.APIVersion != "krew.googlecontainertools.github.com/v1alpha2" || rec.Kind != "Plugin" {
		t.Fatalf("receipt: %+v", rec)
	}
	if got := names(t, filepath.Join(k.root, "store", "hello", "v1.0.0")); !slices.Equal(got, []string{"LICENSE", "kubectl-hello"}) {
		t.Fatalf("store: %v", got)
	}

	// The fixture is static: no program interpreter (no libc needed).
	f, err := elf.Open(filepath.Join(k.root, "bin", "kubectl-hello"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			t.Fatal("the fixture plugin is dynamically linked")
		}
	}

	// Discovery infers --greeting from the fixture's help.
	help, err := exec.Command(filepath.Join(k.root, "bin", "kubectl-hello"), "--help").Output()
	if err != nil {
		t.Fatal(err)
	}
	h := helpparse.Parse(string(help))
	if h.Layout != "cobra" || !slices.ContainsFunc(h.Parameters, func(p helpparse.Parameter) bool {
		return p.Name == "greeting" && p.Type == helpparse.TypeString
	}) {
		t.Fatalf("help parsed as %+v from:\n%s", h, help)
	}

	// Installing again: exit 0, a warning, nothing downloaded.
	if r := k.mustRun("install", "--no-update-index", "test/hello"); !strings.Contains(r.stderr, `Skipping plugin "hello", it is already installed`) || idx.Requests() != 1 {
		t.Fatalf("second install: %q, %d requests", r.stderr, idx.Requests())
	}
	// upgrade takes plain names only.
	if r := k.run("upgrade", "--no-update-index", "test/hello"); r.code != 1 ||
		lastLine(r.stderr) != "upgrade command does not support INDEX/PLUGIN syntax; just specify PLUGIN" {
		t.Fatalf("upgrade INDEX/PLUGIN: exit %d, %q", r.code, lastLine(r.stderr))
	}
	// Upgrading with nothing newer: exit 1.
	if r := k.run("upgrade", "--no-update-index", "hello"); r.code != 1 ||
		lastLine(r.stderr) != `failed to upgrade plugin "test/hello": can't upgrade, the newest version is already installed` {
		t.Fatalf("upgrade to the same version: exit %d, %q", r.code, lastLine(r.stderr))
	}

	v2 := idx.Publish(t, "hello", "v1.1.0")
	if v2.BinarySHA256 == v1.BinarySHA256 || v2.ArchiveSHA256 == v1.ArchiveSHA256 {
		t.Fatal("two versions have the same bytes")
	}
	clone := filepath.Join(k.root, "index", "test")
	for _, args := range [][]string{{"fetch", "-q"}, {"reset", "-q", "--hard", "@{upstream}"}} {
		cmd := exec.Command("git", append([]string{"-C", clone}, args...)...)
		cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "GIT_CONFIG_NOSYSTEM=1"}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("git %v: %v\n%s", args, err, out)
		}
	}
	r = k.mustRun("upgrade", "--no-update-index", "hello")
	if r.stdout != "" || !strings.Contains(r.stderr, "Upgraded plugin: test/hello") {
		t.Errorf("upgrade: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if idx.Requests() != 2 {
		t.Fatalf("upgrade: %d requests in all, want 2", idx.Requests())
	}
	k.binLink(v2)
	if rec, _ := k.receipt("hello"); rec.Spec.Version != "v1.1.0" || rec.Status.Source.Name != "test" {
		t.Fatalf("receipt after upgrade: %+v", rec)
	}
	// The upgrade removed the old version from the store.
	if got := names(t, filepath.Join(k.root, "store", "hello")); !slices.Equal(got, []string{"v1.1.0"}) {
		t.Fatalf("store after upgrade: %v", got)
	}
	// list, piped: "INDEX/NAME" one a line on stdout (a table on a terminal).
	if r := k.mustRun("list"); r.stdout != "test/hello\n" {
		t.Fatalf("list: %q", r.stdout)
	}
}

// krew's own update (git fetch and reset of every index clone) works on the
// local index too, and an install from an index clone already on disk runs
// no git.
func TestKrewUpdateAndInstallWithoutGit(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	idx.Publish(t, "first", "v1.0.0")
	k := newKrewCLI(t, onlyGit(t))
	k.mustRun("index", "add", "test", idx.Dir)
	second := idx.Publish(t, "second", "v0.0.1")
	if r := k.run("install", "--no-update-index", "test/second"); r.code != 1 ||
		lastLine(r.stderr) != `plugin "test/second" does not exist in the plugin index` {
		t.Fatalf("install before update: exit %d, %q", r.code, lastLine(r.stderr))
	}
	r := k.mustRun("update")
	t.Logf("update: %q %q", r.stdout, r.stderr)
	withGit := k.path
	k.path = t.TempDir() // no git (nor anything else)
	k.mustRun("install", "--no-update-index", "test/second")
	k.binLink(second)
	if r := k.run("update"); r.code != 1 {
		t.Fatalf("update without git: exit %d", r.code)
	}
	// With $KREW_ROOT/bin on PATH krew has no set-up warning to print.
	k.path = withGit + ":" + filepath.Join(k.root, "bin")
	if r := k.mustRun("list"); strings.Contains(r.stderr, "WARNING") || r.stdout != "test/second\n" {
		t.Fatalf("list: %q %q", r.stdout, r.stderr)
	}
	if r := k.run("uninstall", "test/second"); r.code != 1 ||
		lastLine(r.stderr) != "uninstall command does not support INDEX/PLUGIN syntax; just specify PLUGIN" {
		t.Fatalf("uninstall INDEX/PLUGIN: exit %d, %q", r.code, lastLine(r.stderr))
	}
	k.mustRun("uninstall", "second")
	if got := names(t, filepath.Join(k.root, "bin")); len(got) != 0 {
		t.Fatalf("bin after uninstall: %v", got)
	}
}

// Offline: --manifest and --archive install with no request to the server
// and no git; the receipt's source is "detached".
func TestKrewOfflineInstall(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	p := idx.Publish(t, "offline", "v0.1.0")
	k := newKrewCLI(t, t.TempDir())
	r := k.mustRun("install", "--manifest="+p.Manifest, "--archive="+p.Archive)
	if r.stdout != "" || !strings.Contains(r.stderr, "Installed plugin: offline") {
		t.Errorf("install: stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if idx.Requests() != 0 {
		t.Fatalf("offline install made %d requests", idx.Requests())
	}
	k.binLink(p)
	rec, text := k.receipt("offline")
	t.Logf("receipt:\n%s", text)
	if rec.Status.Source.Name != "detached" || rec.Spec.Version != "v0.1.0" {
		t.Fatalf("receipt: %+v", rec)
	}
	// With no index at all, list and uninstall refuse to run (they want
	// some index under $KREW_ROOT/index); upgrade skips detached plugins.
	for _, args := range [][]string{{"list"}, {"uninstall", "offline"}} {
		if r := k.run(args...); r.code != 1 || lastLine(r.stderr) != `krew local plugin index is not initialized (run "kubectl krew update")` {
			t.Fatalf("%v with no index: exit %d, %q", args, r.code, lastLine(r.stderr))
		}
	}
	if r := k.mustRun("upgrade", "--no-update-index", "offline"); !strings.Contains(r.stderr, `Skipping upgrade for "offline" because it was installed via manifest`) {
		t.Fatalf("upgrade of a detached plugin: %q", r.stderr)
	}
	k.path = onlyGit(t)
	k.mustRun("index", "add", "test", idx.Dir)
	if r := k.mustRun("list"); r.stdout != "detached/offline\n" {
		t.Fatalf("list: %q", r.stdout)
	}
	k.mustRun("uninstall", "offline")
	for _, d := range []string{"bin", "receipts", "store"} {
		if got := names(t, filepath.Join(k.root, d)); len(got) != 0 {
			t.Fatalf("%s after uninstall: %v", d, got)
		}
	}
}

// A tampered archive: krew refuses it naming the sha256 mismatch, and
// $KREW_ROOT/bin, receipts and store stay as they were.
func TestKrewTamperedArchive(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	good := idx.Publish(t, "good", "v1.0.0")
	p := idx.Publish(t, "bad", "v1.0.0")
	k := newKrewCLI(t, onlyGit(t))
	k.mustRun("install", "--manifest="+good.Manifest, "--archive="+good.Archive)
	before := func() [3][]string {
		return [3][]string{names(t, filepath.Join(k.root, "bin")), names(t, filepath.Join(k.root, "receipts")), names(t, filepath.Join(k.root, "store"))}
	}
	was := before()

	tampered := idx.TamperedArchive(t, p)
	if filepath.Base(tampered) != filepath.Base(p.Archive) || tampered == p.Archive {
		t.Fatalf("tampered archive at %s", tampered)
	}
	r := k.run("install", "--manifest="+p.Manifest, "--archive="+tampered)
	want := `failed to install some plugins: [bad]: install failed: failed to unpack into staging dir: failed to unpack the plugin archive: checksum does not match, want: ` +
		p.ArchiveSHA256 + `, got `
	if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), want) || !strings.Contains(r.stderr, testenv.KrewSHA256MismatchText) || r.stdout != "" {
		t.Fatalf("tampered install: exit %d, stdout %q, stderr:\n%s", r.code, r.stdout, r.stderr)
	}
	if idx.Requests() != 0 {
		t.Fatalf("%d requests", idx.Requests())
	}
	if got := before(); !slices.Equal(got[0], was[0]) || !slices.Equal(got[1], was[1]) || !slices.Equal(got[2], was[2]) {
		t.Fatalf("bin, receipts, store: %v, were %v", got, was)
	}

	// The same from the index, the server answering with tampered bytes.
	k.mustRun("index", "add", "test", idx.Dir)
	data, err := os.ReadFile(tampered)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.Archive, data, 0o644); err != nil {
		t.Fatal(err)
	}
	r = k.run("install", "--no-update-index", "test/bad")
	if r.code != 1 || !strings.HasPrefix(lastLine(r.stderr), want) {
		t.Fatalf("tampered install from the index: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	if idx.Requests() != 1 {
		t.Fatalf("%d requests, want 1", idx.Requests())
	}
	if got := before(); !slices.Equal(got[0], was[0]) || !slices.Equal(got[1], was[1]) || !slices.Equal(got[2], was[2]) {
		t.Fatalf("bin, receipts, store: %v, were %v", got, was)
	}
}

// Without git on PATH krew cannot add an index.
func TestKrewNeedsGit(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	k := newKrewCLI(t, t.TempDir())
	r := k.run("index", "add", "test", idx.Dir)
	if r.code != 1 || lastLine(r.stderr) != `command execution failure, output="": exec: "git": executable file not found in $PATH` {
		t.Fatalf("index add without git: exit %d, %q", r.code, lastLine(r.stderr))
	}
}
