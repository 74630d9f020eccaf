package krew_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/krew"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// newInstaller is an installer of the real krew on a fresh root, allowing
// the index "test".
func newInstaller(t *testing.T, idx *testenv.KrewIndex) (*krew.Installer, string) {
	t.Helper()
	root := filepath.Join(t.TempDir(), "krew")
	indexes := map[string]string{}
	if idx != nil {
		indexes["test"] = idx.Dir
	}
	in, err := krew.New(krew.Config{
		Binary:  filepath.Join(testenv.RealPlugins(t), "kubectl-krew"),
		Root:    root,
		Indexes: indexes,
		Timeout: 2 * time.Minute,
		PathEnv: "/usr/local/bin:/usr/bin:/bin",
	})
	if err != nil {
		t.Fatal(err)
	}
	return in, root
}

// tree lists every path under root with its link target or size, so two
// calls tell whether anything changed.
func tree(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	filepath.Walk(root, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(root, path)
		if strings.HasPrefix(rel, "index") || strings.HasPrefix(rel, ".") {
			return nil // the index clone and krew's scratch folders are not plugins
		}
		entry := rel
		if info.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(path)
			entry += " -> " + target
		} else if info.Mode().IsRegular() {
			entry += " " + info.ModTime().String()
		}
		out = append(out, entry)
		return nil
	})
	sort.Strings(out)
	return out
}

func runPlugin(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", path, err, out)
	}
	return string(out)
}

func TestInstallFromAnIndexAndUpdate(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	v1 := idx.Publish(t, "hello", "v1.0.0")
	in, _ := newInstaller(t, idx)
	ctx := context.Background()

	res, err := in.Install(ctx, krew.Request{Plugin: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "installed" || res.Version != "v1.0.0" || res.Index != "test" || res.Source != "index" {
		t.Errorf("result = %+v", res)
	}
	if res.SHA256 != v1.BinarySHA256 || res.ArchiveSHA256 != v1.ArchiveSHA256 {
		t.Errorf("sha256 = %s, archive %s; want %s, %s", res.SHA256, res.ArchiveSHA256, v1.BinarySHA256, v1.ArchiveSHA256)
	}
	if got := runPlugin(t, res.Path); !strings.Contains(got, "v1.0.0") {
		t.Errorf("installed plugin printed %q", got)
	}
	if res.Path != filepath.Join(in.BinDir(), "kubectl-hello") {
		t.Errorf("path = %s", res.Path)
	}

	// Installed already: left as it is, nothing downloaded.
	downloads := idx.Requests()
	idx.Publish(t, "hello", "v1.1.0")
	res, err = in.Install(ctx, krew.Request{Plugin: "test/hello"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "already_installed" || res.Version != "v1.0.0" || idx.Requests() != downloads {
		t.Errorf("second install = %+v, downloads %d -> %d", res, downloads, idx.Requests())
	}

	// update fetches the index and installs the new version in place.
	res, err = in.Install(ctx, krew.Request{Plugin: "hello", Update: true})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "updated" || res.Version != "v1.1.0" || res.PreviousVersion != "v1.0.0" {
		t.Errorf("update = %+v", res)
	}
	if got := runPlugin(t, res.Path); !strings.Contains(got, "v1.1.0") {
		t.Errorf("updated plugin printed %q", got)
	}
	res, err = in.Install(ctx, krew.Request{Plugin: "hello", Update: true})
	if err != nil || res.Outcome != "up_to_date" {
		t.Errorf("update again = %+v, %v", res, err)
	}
}

func TestInstallOfflineFromAManifest(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	p := idx.Publish(t, "offline", "v2.0.0")
	in, _ := newInstaller(t, nil)
	downloads := idx.Requests()
	res, err := in.Install(context.Background(), krew.Request{Manifest: p.Manifest, Archive: p.Archive})
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome != "installed" || res.Name != "offline" || res.Source != "manifest" || res.Index != "" || res.SHA256 != p.BinarySHA256 {
		t.Errorf("result = %+v", res)
	}
	if idx.Requests() != downloads {
		t.Errorf("an offline install downloaded %d archives", idx.Requests()-downloads)
	}
	if _, err := in.Install(context.Background(), krew.Request{Manifest: p.Manifest, Archive: p.Archive, Update: true}); err == nil ||
		!strings.Contains(err.Error(), "offline update is not possible") {
		t.Errorf("offline update: %v", err)
	}
}

func TestATamperedArchiveChangesNothing(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	good := idx.Publish(t, "first", "v1.0.0")
	bad := idx.Publish(t, "second", "v1.0.0")
	in, root := newInstaller(t, idx)
	if _, err := in.Install(context.Background(), krew.Request{Manifest: good.Manifest, Archive: good.Archive}); err != nil {
		t.Fatal(err)
	}
	before := tree(t, root)
	_, err := in.Install(context.Background(), krew.Request{Manifest: bad.Manifest, Archive: idx.TamperedArchive(t, bad)})
	if err == nil {
		t.Fatal("a tampered archive installed")
	}
	if !strings.Contains(strings.ToLower(err.Error()), "sha256") {
		t.Errorf("the error does not name the sha256 mismatch: %v", err)
	}
	if after := tree(t, root); strings.Join(after, "\n") != strings.Join(before, "\n") {
		t.Errorf("the root changed:\nbefore %q\nafter  %q", before, after)
	}
}

func TestRefusedBeforeKrewRuns(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	in, root := newInstaller(t, idx)
	for _, tc := range []struct{ plugin, want string }{
		{"other/hello", `index "other" is not allowed`},
		{"../hello", "krew index name"},
		{"hello world", "krew plugin name"},
		{"", "krew plugin name"},
	} {
		_, err := in.Install(context.Background(), krew.Request{Plugin: tc.plugin})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.plugin, err, tc.want)
		}
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("a refused install made the root: %v", err)
	}
	if idx.Requests() != 0 {
		t.Errorf("refused installs downloaded %d archives", idx.Requests())
	}
}

func TestAMissingPluginNamesKrewsAnswer(t *testing.T) {
	idx := testenv.NewKrewIndex(t)
	idx.Publish(t, "hello", "v1.0.0")
	in, root := newInstaller(t, idx)
	_, err := in.Install(context.Background(), krew.Request{Plugin: "nosuch"})
	if err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Fatalf("error %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(root, "bin")); len(entries) != 0 {
		t.Errorf("bin holds %d entries", len(entries))
	}
}

// fakeKrew writes a script in place of krew, to see what krew is given and
// how a krew that hangs is stopped.
func fakeKrew(t *testing.T, body string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	script := filepath.Join(dir, "kubectl-krew")
	if err := os.WriteFile(script, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, dir
}

func TestKrewRunsWithoutTheServersEnvironment(t *testing.T) {
	script, dir := fakeKrew(t, `env > "$(dirname "$0")/env.txt"; exit 3`)
	t.Setenv("KUBECONFIG", "/secret/kubeconfig")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "canary-aws")
	t.Setenv("PLUGINS_RANCHER_TOKEN", "canary-rancher")
	t.Setenv("HTTPS_PROXY", "http://proxy.example:3128")
	root := filepath.Join(t.TempDir(), "krew")
	in, err := krew.New(krew.Config{Binary: script, Root: root, Indexes: map[string]string{"default": t.TempDir()}, PathEnv: "/usr/bin:/bin"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.Install(context.Background(), krew.Request{Plugin: "hello"}); err == nil {
		t.Fatal("a krew that exits 3 succeeded")
	}
	data, err := os.ReadFile(filepath.Join(dir, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		k, v, _ := strings.Cut(line, "=")
		got[k] = v
	}
	// The shell adds PWD, SHLVL and _ of its own.
	for _, k := range []string{"PWD", "SHLVL", "_", "OLDPWD"} {
		delete(got, k)
	}
	want := map[string]string{
		"PATH": "/usr/bin:/bin:" + filepath.Join(root, "bin"), "HOME": filepath.Join(root, ".home"), "KREW_ROOT": root, "KREW_NO_UPGRADE_CHECK": "1",
		"KUBECONFIG": os.DevNull, "TMPDIR": filepath.Join(root, ".tmp"), "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1",
		"HTTPS_PROXY": "http://proxy.example:3128",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
		delete(got, k)
	}
	if len(got) > 0 {
		t.Errorf("krew got more of the environment: %v", got)
	}
}

func TestAHangingKrewIsStoppedAtTheTimeLimit(t *testing.T) {
	script, dir := fakeKrew(t, `sleep 300 & echo $! > "$(dirname "$0")/child.pid"; wait`)
	root := filepath.Join(t.TempDir(), "krew")
	in, err := krew.New(krew.Config{Binary: script, Root: root, Indexes: map[string]string{"default": t.TempDir()},
		PathEnv: "/usr/bin:/bin", Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = in.Install(context.Background(), krew.Request{Plugin: "hello"})
	if err == nil || !strings.Contains(err.Error(), "install_timeout") {
		t.Fatalf("error %v, want the time limit named", err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "child.pid"))
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	for _, c := range strings.TrimSpace(string(data)) {
		pid = pid*10 + int(c-'0')
	}
	deadline := time.Now().Add(5 * time.Second)
	for testenv.ProcessAlive(pid) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if testenv.ProcessAlive(pid) {
		t.Errorf("krew's child %d outlived the install", pid)
	}
}
