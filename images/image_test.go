package images

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// The image, built (or found in the cache) once per test binary.
var pluginRootfs = sync.OnceValues(PluginRootfs)

func rootfs(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("building the image and entering it need root")
	}
	dir, err := pluginRootfs()
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// run runs argv in the image the way a sandbox does, without touching the
// cached tree: in a private mount namespace, the root bind-mounted read-only,
// a tmpfs on /tmp, kubeDir (if any) read-only on /run/kube, as nobody with
// HOME=/tmp and an empty environment otherwise.
func run(t *testing.T, root, kubeDir string, stdin []byte, argv ...string) (stdout, stderr string, err error) {
	t.Helper()
	script := `set -e
mount --bind "$1" "$1"
mount -o remount,bind,ro "$1"
mount -t tmpfs -o mode=1777,size=16m tmpfs "$1/tmp"
if [ -n "$2" ]; then mount --bind -o ro "$2" "$1/run/kube"; fi
root=$1; shift 2
exec chroot --userspec=65534:65534 "$root" /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin HOME=/tmp KUBECONFIG=/run/kube/config "$@"`
	args := append([]string{"--mount", "--propagation", "private", "sh", "-c", script, "sh", root, kubeDir}, argv...)
	cmd := exec.Command("unshare", args...)
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.String(), errb.String(), err
}

func TestPluginRootfsIsTheDefault(t *testing.T) {
	root := rootfs(t)
	if root != DefaultRootfs() {
		t.Errorf("hack/build-image.sh built %s, DefaultRootfs is %s: keep version and kubectl_version in step with images.go", root, DefaultRootfs())
	}
	again, err := PluginRootfs() // cached now: same path, no rebuild
	if err != nil || again != root {
		t.Errorf("second PluginRootfs = %q, %v; want %q", again, err, root)
	}
}

func TestBash(t *testing.T) {
	root := rootfs(t)
	out, stderr, err := run(t, root, "", nil, "bash", "-c", "echo ok; id -u; id -g; echo $HOME; touch /tmp/x && echo tmp-writable; touch /x 2>/dev/null || echo root-read-only")
	want := "ok\n65534\n65534\n/tmp\ntmp-writable\nroot-read-only\n"
	if err != nil || out != want {
		t.Errorf("bash in the image: %v\n%s\ngot %q, want %q", err, stderr, out, want)
	}
}

func TestKubectl(t *testing.T) {
	root := rootfs(t)
	out, stderr, err := run(t, root, "", nil, "/usr/local/bin/kubectl", "version", "--client", "-o", "json")
	if err != nil {
		t.Fatalf("kubectl version: %v\n%s", err, stderr)
	}
	var v struct {
		ClientVersion struct {
			GitVersion, Major, Minor, Platform string
		}
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("kubectl version output: %v\n%s", err, out)
	}
	if c := v.ClientVersion; c.GitVersion != KubectlVersion || c.Major != "1" || c.Minor != "37" || c.Platform != "linux/amd64" {
		t.Errorf("kubectl client version = %+v, want %s (1.37, linux/amd64)", c, KubectlVersion)
	}
}

func TestCACertificates(t *testing.T) {
	root := rootfs(t)
	data, err := os.ReadFile(filepath.Join(root, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(data, []byte("-----BEGIN CERTIFICATE-----")); n < 50 {
		t.Errorf("ca-certificates.crt holds %d certificates (%d bytes), want Debian's bundle", n, len(data))
	}
}

func TestNobody(t *testing.T) {
	root := rootfs(t)
	// base-passwd's entries; an Essential-only system has no shadow file, so
	// the password field is "*" rather than "x".
	for file, want := range map[string][]string{
		"etc/passwd": {"nobody", "*", "65534", "65534"},
		"etc/group":  {"nogroup", "*", "65534"},
	} {
		data, err := os.ReadFile(filepath.Join(root, file))
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Split(line, ":")
			if len(f) >= len(want) && f[0] == want[0] {
				found = slicesEqual(f[:len(want)], want)
				if !found {
					t.Errorf("%s: %q, want %s", file, line, strings.Join(want, ":"))
				}
			}
		}
		if !found {
			t.Errorf("%s has no %s entry", file, want[0])
		}
	}
}

func slicesEqual(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

func TestMountPointsAndCleanup(t *testing.T) {
	root := rootfs(t)
	for dir, mode := range map[string]os.FileMode{
		"plugin":   0o755,
		"run/kube": 0o755,
		"tmp":      0o777 | os.ModeSticky,
	} {
		fi, err := os.Stat(filepath.Join(root, dir))
		if err != nil || !fi.IsDir() || fi.Mode().Perm()|fi.Mode()&os.ModeSticky != mode {
			t.Errorf("/%s: %v %v, want a folder with mode %v", dir, fi.Mode(), err, mode)
			continue
		}
		if entries, _ := os.ReadDir(filepath.Join(root, dir)); len(entries) != 0 {
			// runc creates a missing mount target in the root before it makes
			// the root read-only: a sandbox that bind-mounts a file at
			// /plugin/<file> must mount a tmpfs on /plugin first.
			t.Errorf("/%s in the cached image is not empty (%d entries, first %s): something wrote into it; see images/README.md",
				dir, len(entries), entries[0].Name())
		}
	}
	for _, file := range []string{"etc/machine-id", "etc/hostname", "etc/resolv.conf"} {
		if fi, err := os.Stat(filepath.Join(root, file)); err != nil || fi.Size() != 0 {
			t.Errorf("/%s should be an empty file: %v", file, err)
		}
	}
	for _, dir := range []string{"var/lib/apt/lists", "var/cache/apt", "var/log"} {
		entries, err := os.ReadDir(filepath.Join(root, dir))
		if err != nil && !os.IsNotExist(err) {
			t.Error(err)
		}
		for _, e := range entries {
			if e.Name() != "partial" && e.Name() != "lock" {
				t.Errorf("/%s should be empty, has %s", dir, e.Name())
			}
		}
	}
}

// The commands the kubectx and kubens scripts (Debian's kubectx 0.9.3) run,
// other than bash builtins.
var scriptCommands = []string{"kubectl", "basename", "cat", "mkdir", "grep", "sort", "tput", "sed", "awk", "tr", "head", "printf"}

func TestScriptPluginCommands(t *testing.T) {
	root := rootfs(t)
	args := append([]string{"bash", "-c", `for c in "$@"; do command -v "$c" || echo "missing $c"; done`, "bash"}, scriptCommands...)
	out, stderr, err := run(t, root, "", nil, args...)
	if err != nil || strings.Contains(out, "missing") {
		t.Errorf("commands in the image: %v\n%s%s", err, out, stderr)
	}
}

// TestKubectxKubens runs this machine's kubectx and kubens scripts (fed to
// bash on stdin, so nothing is copied into the image) against a kubeconfig
// mounted at /run/kube/config, as the sandbox will.
func TestKubectxKubens(t *testing.T) {
	root := rootfs(t)
	kube := t.TempDir()
	config := `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster: {server: "https://127.0.0.1:1"}
users:
- name: u
  user: {token: t}
contexts:
- name: alpha
  context: {cluster: c, user: u, namespace: team-a}
- name: beta
  context: {cluster: c, user: u}
current-context: alpha
`
	if err := os.WriteFile(filepath.Join(kube, "config"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(kube, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		script string
		args   []string
		want   string
	}{
		{"/usr/bin/kubens", []string{"--help"}, "list the namespaces in the current context"},
		{"/usr/bin/kubens", []string{"-c"}, "team-a\n"},
		{"/usr/bin/kubectx", []string{"--help"}, "switch to context <NAME>"},
		{"/usr/bin/kubectx", []string{"-c"}, "alpha\n"},
		{"/usr/bin/kubectx", nil, "alpha\nbeta\n"},
	} {
		name := filepath.Base(tc.script) + " " + strings.Join(tc.args, " ")
		script, err := os.ReadFile(tc.script)
		if err != nil {
			t.Skipf("%v (package kubectx; make test-deps installs it)", err)
		}
		out, stderr, err := run(t, root, kube, script, append([]string{"env", "TERM=dumb", "bash", "-s", "--"}, tc.args...)...)
		if err != nil || !strings.Contains(out, tc.want) {
			t.Errorf("%s: %v\nstdout: %q, want it to hold %q\nstderr: %s", name, err, out, tc.want, stderr)
		}
	}
}

func TestManifest(t *testing.T) {
	root := rootfs(t)
	f, err := os.Open(filepath.Join(root, ManifestPath))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	versions := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			t.Errorf("manifest line %q, want: package version architecture", line)
			continue
		}
		versions[fields[0]] = fields[1]
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	for _, pkg := range []string{"bash", "ca-certificates", "base-passwd", "coreutils", "mawk", "ncurses-bin"} {
		if v := versions[pkg]; v == "" || !strings.ContainsAny(v, "0123456789") {
			t.Errorf("manifest: %s has version %q", pkg, v)
		}
	}
	// merged-/usr without the usrmerge package, which would pull in perl.
	if _, ok := versions["usrmerge"]; ok {
		t.Error("manifest lists usrmerge")
	}
	if len(versions) < 30 || len(versions) > 120 {
		t.Errorf("manifest lists %d packages; an Essential-only bookworm has about 64", len(versions))
	}
}

// The image's launchers are built from the sources in this tree: a change
// to one without a version bump would leave machines on the old one.
func TestLauncherIsCurrent(t *testing.T) {
	root := rootfs(t)
	repo, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	manifest, err := os.ReadFile(filepath.Join(root, ManifestPath))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []struct {
		name    string
		sources []string // hashed as one, in this order
	}{
		{"kmcp-launch", []string{"sandbox/container/internal/launcher/main.go"}},
		{"kmcp-pod", []string{"sandbox/kubernetes/internal/podlauncher/main.go", "sandbox/kubernetes/internal/launch/launch.go"}},
	} {
		if fi, err := os.Stat(filepath.Join(root, "usr/local/libexec", l.name)); err != nil || fi.Mode().Perm() != 0o755 {
			t.Fatalf("%s in the image: %v %v", l.name, fi, err)
		}
		h := sha256.New()
		for _, src := range l.sources {
			data, err := os.ReadFile(filepath.Join(repo, src))
			if err != nil {
				t.Fatal(err)
			}
			h.Write(data)
		}
		want := fmt.Sprintf("# %s source sha256 %x\n", l.name, h.Sum(nil))
		if !strings.Contains(string(manifest), want) {
			t.Errorf("the image's %s was built from other sources than %v: bump version in hack/build-image.sh and images.go", l.name, l.sources)
		}
	}
}
