package testenv

// A local krew index for tests: no public index (github.com/kubernetes-sigs/
// krew-index) is reachable here, so KrewIndex is a git repository of plugin
// manifests whose archives an HTTP server on 127.0.0.1 serves, enough for the
// real krew v0.4.3 (RealPlugins(t)/kubectl-krew) to index-add, install,
// upgrade and verify plugins offline.
//
// What krew v0.4.3 does, observed here by krew_test.go (KREW_ROOT and HOME
// temporary, KREW_NO_UPGRADE_CHECK=1, nothing else of the environment but
// PATH, stdin /dev/null, stdout and stderr pipes). "(source)" marks what was
// read in krew's code rather than run.
//
// Programs on PATH:
//   - krew never needs kubectl: every command below ran with a PATH that
//     held git alone, or nothing at all.
//   - git is needed by `index add` (a clone), `update`, and by `install` and
//     `upgrade` WITHOUT --no-update-index (they update every index first:
//     `git fetch -v`, `reset --hard @{upstream}`, `clean -xfd`; and with no
//     index at all they add "default" from github.com first (source), which
//     fails offline). `install --no-update-index INDEX/NAME`, `upgrade
//     --no-update-index NAME`, `install --manifest --archive`, `list` and
//     `uninstall` ran with an empty PATH. Without git, `index add` fails
//     with exit 1 and `command execution failure, output="": exec: "git":
//     executable file not found in $PATH`; `update` with `failed to retrieve
//     plugin indexes: failed to list the remote URL for index test: command
//     execution failure, ...` (same tail).
//
// Output and exit codes:
//   - stdout is empty for index add, install, upgrade, uninstall and update;
//     everything they say is on stderr. Only `list` writes stdout: piped,
//     one "INDEX/NAME" a line, sorted ("test/hello"; "detached/NAME" for a
//     --manifest install; a plain NAME only for the index "default"); on a
//     terminal a PLUGIN/VERSION table (source).
//   - Success is exit 0; every failure seen is exit 1, with the error as the
//     LAST line of stderr, plain (no "Error:" prefix; cobra's own printing is
//     off, krew's main does fmt.Fprintln(os.Stderr, err)). Lines seen:
//     `plugin "test/nosuch" does not exist in the plugin index` (also for an
//     unqualified `install hello`: a plain name means the index "default"),
//     `failed to upgrade plugin "test/hello": can't upgrade, the newest
//     version is already installed`, `upgrade command does not support
//     INDEX/PLUGIN syntax; just specify PLUGIN` (uninstall says the same
//     with "uninstall command"), `krew local plugin index is not initialized
//     (run "kubectl krew update")`.
//   - The sha256 mismatch (exit 1), from a --archive file or from the
//     server alike, prints a klog warning then the error:
//     W1202 12:23:07.972698   14235 install.go:164] failed to install plugin "bad": install failed: failed to unpack into staging dir: failed to unpack the plugin archive: checksum does not match, want: <manifest sha256>, got <archive sha256>
//     failed to install some plugins: [bad]: install failed: failed to unpack into staging dir: failed to unpack the plugin archive: checksum does not match, want: <manifest sha256>, got <archive sha256>
//     ("got" has no colon). $KREW_ROOT/bin, receipts and store are unchanged:
//     krew checks the archive in a staging folder under os.TempDir()
//     ($TMPDIR, else /tmp; "krew-downloads*", source) before it touches the store.
//   - Installing what is installed is exit 0 with the klog line
//     `W... install.go:160] Skipping plugin "hello", it is already installed`
//     and nothing downloaded.
//   - Noise on stderr to expect: unless $KREW_ROOT/bin is on PATH every
//     command starts with a 7-line "WARNING: To be able to run kubectl
//     plugins, you need to add ..." block; install prints "WARNING: Detected
//     stdin, but discarding it because of --manifest or args" whenever stdin
//     is not a terminal (/dev/null included) - and with no plugin names and
//     no --manifest it READS plugin names from stdin (source); index add
//     warns "WARNING: You have added a new index from "DIR"" (not audited);
//     install prints "Installing plugin: NAME", "Installed plugin: NAME" and
//     a boxed "Use this plugin / Documentation / Caveats" text; upgrade
//     "Upgrading plugin: test/hello", "Upgraded plugin: test/hello";
//     uninstall "Uninstalled plugin: NAME"; update "Updated the local copy
//     of plugin index "test"." and "New plugins available: * test/second".
//
// Names and indexes:
//   - `index add NAME DIR` clones DIR (a plain local path works) into
//     $KREW_ROOT/index/NAME; the clone tracks DIR's branch, so `git -C
//     $KREW_ROOT/index/NAME fetch` then `reset --hard @{upstream}` (what
//     `update` does, plus `clean -xfd` (source)) brings it to DIR's latest commit.
//     A manifest published after the clone is not found until then.
//   - install takes INDEX/NAME; upgrade and uninstall take NAME only (they
//     find the index in the receipt). `upgrade` of a --manifest install
//     (index "detached") is exit 0 with `Skipping upgrade for "NAME" because
//     it was installed via manifest`.
//   - list, uninstall (and info, search: source) need at least one index
//     clone under $KREW_ROOT/index: after a --manifest install into an
//     empty KREW_ROOT, uninstall fails (exit 1, "krew local plugin index is
//     not initialized") until some index is added.
//
// Files:
//   - $KREW_ROOT is made absolute (filepath.Abs, symbolic links not
//     resolved) and the bin link $KREW_ROOT/bin/kubectl-NAME is a symbolic
//     link with an ABSOLUTE target, $KREW_ROOT/store/NAME/VERSION/<bin>:
//     moving KREW_ROOT or mounting it elsewhere in a sandbox breaks it.
//   - store/NAME/VERSION holds the files of the manifest's `files` (here
//     LICENSE and kubectl-NAME); upgrade removes the old version's folder
//     and uninstall removes the link, receipt and store folder.
//   - The receipt $KREW_ROOT/receipts/NAME.yaml is the manifest as
//     installed (keys sorted, metadata.creationTimestamp the install time)
//     plus status.source.name: the index name ("test" for `install
//     test/NAME`, kept across upgrades), "detached" for --manifest:
//
//	apiVersion: krew.googlecontainertools.github.com/v1alpha2
//	kind: Plugin
//	metadata:
//	  creationTimestamp: "2026-12-02T12:23:16Z"
//	  name: hello
//	spec:
//	  caveats: |
//	    This is a test fixture.
//	  description: |
//	    ...
//	  homepage: https://example.invalid/hello
//	  platforms:
//	  - bin: kubectl-hello
//	    files:
//	    - from: kubectl-hello
//	      to: .
//	    - from: LICENSE
//	      to: .
//	    selector:
//	      matchLabels:
//	        arch: amd64
//	        os: linux
//	    sha256: 9f6dac40d58b187f4b1f3d6189ddf7013adef32610e9095885334da8af47642d
//	    uri: http://127.0.0.1:44625/hello/v1.0.0/kubectl-hello-linux-amd64.tar.gz
//	  shortDescription: Prints its name and version (a krew test fixture)
//	  version: v1.0.0
//	status:
//	  source:
//	    name: test
//
//   - The build of hack/build-plugins.sh (go install, no ldflags) reports
//     GitTag "unknown" in `kubectl krew version`, so krew counts itself a
//     development build and never runs its upgrade check (source), with or
//     without KREW_NO_UPGRADE_CHECK.
//
// krew_test.go checks what is not marked "(source)".

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
)

// KrewSHA256MismatchText is in the error krew v0.4.3 prints (stderr, exit
// 1) when an archive does not have the sha256 of its manifest.
const KrewSHA256MismatchText = "checksum does not match"

// KrewIndex is a local krew index: a git repository of plugin manifests
// whose archives a local HTTP server on 127.0.0.1 serves.
type KrewIndex struct {
	// Dir is the index's git repository (krew clones it: `kubectl krew
	// index add NAME Dir`); its manifests are Dir/plugins/NAME.yaml.
	Dir string
	// URL is the archive server's base URL, http://127.0.0.1:PORT.
	URL string

	served   string // the folder the server serves (archives only)
	store    string // per-version manifests and other files not served
	srv      *httptest.Server
	requests atomic.Int64
	mu       sync.Mutex // one Publish at a time (the git repository)
}

// KrewPlugin is what Publish published.
type KrewPlugin struct {
	Name, Version string
	// Manifest is the path of this version's manifest (a copy of what was
	// committed as Dir/plugins/NAME.yaml, which a later Publish of NAME
	// overwrites; this file stays), named NAME.yaml.
	Manifest string
	// Archive is the path of the .tar.gz the server serves for this version.
	Archive string
	// ArchiveSHA256 is the archive's sha256 (the manifest's sha256), hex.
	ArchiveSHA256 string
	// BinarySHA256 is the sha256 of the plugin binary in the archive, hex:
	// what $KREW_ROOT/bin/kubectl-NAME resolves to after an install.
	BinarySHA256 string
}

// NewKrewIndex makes an empty index (a git repository with one commit and
// no plugins) and starts its archive server, closed at t.Cleanup. It needs
// git on PATH (Debian's git, which make test-deps installs).
func NewKrewIndex(t testing.TB) *KrewIndex {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("krew index: %v (run `make test-deps`, which installs git)", err)
	}
	base := t.TempDir()
	k := &KrewIndex{
		Dir:    filepath.Join(base, "index"),
		served: filepath.Join(base, "served"),
		store:  filepath.Join(base, "store"),
	}
	for _, d := range []string{filepath.Join(k.Dir, "plugins"), k.served, k.store} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	k.git(t, "init", "-q", "-b", "main")
	if err := os.WriteFile(filepath.Join(k.Dir, "README.md"), []byte("A krew index for tests (internal/testenv).\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	k.git(t, "add", "-A")
	k.git(t, "commit", "-q", "-m", "empty index")

	files := http.FileServer(http.Dir(k.served))
	k.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		k.requests.Add(1)
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(k.srv.Close)
	k.URL = k.srv.URL
	return k
}

// Requests counts the requests the archive server answered (every request,
// whatever its path or outcome: the server serves nothing but archives).
func (k *KrewIndex) Requests() int { return int(k.requests.Load()) }

// Publish builds plugin name at version (krew wants a "vMAJOR.MINOR.PATCH"
// version), packs it as a .tar.gz the server serves, writes
// Dir/plugins/NAME.yaml and commits it to the index. The plugin binary,
// kubectl-NAME, is static (CGO_ENABLED=0) and prints "NAME VERSION" then its
// arguments one a line (after --greeting's value, when given); --help prints
// a cobra-style help with one flag, `--greeting string`.
func (k *KrewIndex) Publish(t testing.TB, name, version string) KrewPlugin {
	t.Helper()
	k.mu.Lock()
	defer k.mu.Unlock()
	bin, err := fixtureBinary(name, version)
	if err != nil {
		t.Fatalf("krew fixture %s %s: %v", name, version, err)
	}
	archive, err := krewArchive(name, bin, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := KrewPlugin{Name: name, Version: version, ArchiveSHA256: sha256Hex(archive), BinarySHA256: sha256Hex(bin)}
	rel := fmt.Sprintf("%s/%s/kubectl-%s-%s-%s.tar.gz", name, version, name, "linux", runtime.GOARCH)
	p.Archive = filepath.Join(k.served, filepath.FromSlash(rel))
	writeFile(t, p.Archive, archive)

	manifest := krewManifest(name, version, k.URL+"/"+rel, p.ArchiveSHA256)
	p.Manifest = filepath.Join(k.store, name, version, name+".yaml")
	writeFile(t, p.Manifest, []byte(manifest))
	writeFile(t, filepath.Join(k.Dir, "plugins", name+".yaml"), []byte(manifest))
	k.git(t, "add", "-A")
	k.git(t, "commit", "-q", "--allow-empty", "-m", "publish "+name+" "+version)
	return p
}

// TamperedArchive returns a copy of p's archive with changed bytes, under
// the same file name in a folder of its own (not served), for the
// sha256-mismatch case. It is still a valid archive: the same files plus
// one more, so only the checksum gives it away.
func (k *KrewIndex) TamperedArchive(t testing.TB, p KrewPlugin) string {
	t.Helper()
	bin, err := fixtureBinary(p.Name, p.Version)
	if err != nil {
		t.Fatal(err)
	}
	data, err := krewArchive(p.Name, bin, map[string]string{"TAMPERED": "not what the manifest's sha256 is of\n"})
	if err != nil {
		t.Fatal(err)
	}
	if sha256Hex(data) == p.ArchiveSHA256 {
		t.Fatal("tampered archive has the original's sha256")
	}
	dir, err := os.MkdirTemp(k.store, "tampered-")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, filepath.Base(p.Archive))
	writeFile(t, path, data)
	return path
}

func (k *KrewIndex) git(t testing.TB, args ...string) {
	t.Helper()
	cmd := exec.Command("git", append([]string{"-C", k.Dir}, args...)...)
	// The caller's git configuration stays out (signing, hooks, templates).
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=testenv", "GIT_AUTHOR_EMAIL=testenv@example.invalid",
		"GIT_COMMITTER_NAME=testenv", "GIT_COMMITTER_EMAIL=testenv@example.invalid")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func krewManifest(name, version, uri, sha string) string {
	return fmt.Sprintf(`apiVersion: krew.googlecontainertools.github.com/v1alpha2
kind: Plugin
metadata:
  name: %[1]s
spec:
  version: %[2]s
  homepage: https://example.invalid/%[1]s
  shortDescription: Prints its name and version (a krew test fixture)
  description: |
    kubectl-%[1]s prints "%[1]s %[2]s" and its arguments. It is built by
    internal/testenv for tests of krew installs.
  caveats: |
    This is a test fixture.
  platforms:
  - selector:
      matchLabels:
        os: linux
        arch: %[5]s
    uri: %[3]s
    sha256: %[4]s
    bin: kubectl-%[1]s
    files:
    - from: kubectl-%[1]s
      to: .
    - from: LICENSE
      to: .
`, name, version, uri, sha, runtime.GOARCH)
}

// krewArchive packs kubectl-NAME (bin), a LICENSE and extra files as a
// .tar.gz, byte for byte the same for the same input.
func krewArchive(name string, bin []byte, extra map[string]string) ([]byte, error) {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	mtime := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	add := func(path string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: path, Mode: mode, Size: int64(len(data)), ModTime: mtime, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	if err := add("kubectl-"+name, 0o755, bin); err != nil {
		return nil, err
	}
	if err := add("LICENSE", 0o644, []byte("Apache-2.0 (test fixture)\n")); err != nil {
		return nil, err
	}
	for path, data := range extra {
		if err := add(path, 0o644, []byte(data)); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	if err := gz.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// The fixture binary is built once per test binary with a stamp (marker then
// padding) that fixtureBinary overwrites in place with "NAME VERSION".
const (
	fixtureMarker  = "KMCPKREWFIXTURE:" // 16 bytes, krewfixture's markerLen
	fixturePayload = 112
)

var fixture struct {
	once sync.Once
	bin  []byte
	at   int // offset of the payload in bin
	err  error
}

func fixtureBinary(name, version string) ([]byte, error) {
	fixture.once.Do(func() {
		fixture.bin, fixture.at, fixture.err = buildFixture()
	})
	if fixture.err != nil {
		return nil, fixture.err
	}
	payload := name + " " + version
	if len(payload) > fixturePayload || len(strings.Fields(payload)) != 2 || strings.ContainsAny(payload, "\t\n\x00") {
		return nil, fmt.Errorf("name and version %q: need two words of at most %d bytes in all", payload, fixturePayload)
	}
	bin := bytes.Clone(fixture.bin)
	copy(bin[fixture.at:fixture.at+fixturePayload], payload+strings.Repeat(" ", fixturePayload-len(payload)))
	return bin, nil
}

func buildFixture() ([]byte, int, error) {
	root, err := images.RepoRoot()
	if err != nil {
		return nil, 0, err
	}
	dir, err := os.MkdirTemp("", "krewfixture-")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "kubectl-fixture")
	stamp := fixtureMarker + strings.Repeat("_", fixturePayload)
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w -X main.stamp="+stamp,
		"-o", out, "./internal/testenv/krewfixture")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, 0, fmt.Errorf("go build krewfixture: %v\n%s", err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, 0, err
	}
	if n := bytes.Count(bin, []byte(stamp)); n != 1 {
		return nil, 0, fmt.Errorf("krewfixture: its stamp is in the binary %d times, want once", n)
	}
	return bin, bytes.Index(bin, []byte(stamp)) + len(fixtureMarker), nil
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}
