// Package krew installs kubectl plugins with the real krew into the
// server's own KREW_ROOT, from the indexes an operator allows or offline
// from a manifest and an archive, with the least environment krew needs.
//
// krew's download and unpacking are the one thing the server runs outside
// a plugin sandbox. They run with no cluster credential in reach: an
// environment of PATH, HOME and KREW_ROOT of their own and proxy settings,
// nothing else of the server's; a time limit; their own process group,
// killed whole when the limit passes. An install that fails leaves the
// root as it found it.
package krew

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/flock"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
)

// Config says which krew runs, where it installs and from where.
type Config struct {
	// Binary is kubectl-krew: a path, or a name looked up on PathEnv.
	Binary string
	// Root is the KREW_ROOT installs go to; its bin folder holds the
	// plugins' links.
	Root string
	// Indexes are the indexes installs by name may come from: name to git
	// URL or folder. Installs by name from any other index are refused.
	Indexes map[string]string
	// Timeout bounds one install, the index's update included.
	Timeout time.Duration
	// PathEnv is the PATH krew and git run with.
	PathEnv string
	Logger  hclog.Logger
}

// Request is one install.
type Request struct {
	// Plugin is NAME or INDEX/NAME. NAME alone takes the index named
	// "default" when there is one, else the only index.
	Plugin string
	// Update installs the newest version of a plugin that is installed
	// already; without it, an installed plugin is left as it is.
	Update bool
	// Manifest and Archive install offline: krew reads the manifest and
	// checks the archive's sha256 against it. Plugin is then ignored.
	Manifest string
	Archive  string
}

// Result says what an install did.
type Result struct {
	Name    string `json:"name"`
	Version string `json:"version"`
	// Index is the index it came from, or "" for an offline install.
	Index string `json:"index,omitempty"`
	// Source is "index" or "manifest".
	Source string `json:"source"`
	// Outcome is "installed", "updated", "already_installed" or
	// "up_to_date".
	Outcome         string `json:"outcome"`
	PreviousVersion string `json:"previous_version,omitempty"`
	// ArchiveSHA256 is the archive's digest krew checked.
	ArchiveSHA256 string `json:"archive_sha256,omitempty"`
	// Path is the plugin's link in Root's bin folder and SHA256 the digest
	// of the file it names, the one discovery and pins see.
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	// Log is what krew printed, trimmed.
	Log string `json:"log,omitempty"`
}

// Installer runs krew installs one at a time.
type Installer struct {
	cfg Config
	log hclog.Logger
	mu  sync.Mutex
}

// New checks a configuration; it runs nothing.
func New(cfg Config) (*Installer, error) {
	if cfg.Root == "" {
		return nil, errors.New("krew: no KREW_ROOT (plugins.krew_root) set")
	}
	if !filepath.IsAbs(cfg.Root) {
		return nil, fmt.Errorf("krew: KREW_ROOT %q is not an absolute path", cfg.Root)
	}
	for name := range cfg.Indexes {
		if err := pluginname.CheckKrewIndex(name); err != nil {
			return nil, fmt.Errorf("krew: %w", err)
		}
	}
	if cfg.Binary == "" {
		cfg.Binary = "kubectl-krew"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Minute
	}
	log := cfg.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	return &Installer{cfg: cfg, log: log}, nil
}

// BinDir is the folder installed plugins are linked in, for discovery.
func (i *Installer) BinDir() string { return filepath.Join(i.cfg.Root, "bin") }

// Indexes are the allowed indexes' names, sorted.
func (i *Installer) Indexes() []string {
	names := make([]string, 0, len(i.cfg.Indexes))
	for n := range i.cfg.Indexes {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Target says which plugin a request installs from which index, checking
// the names and the index without running anything.
func (i *Installer) Target(req Request) (index, name string, err error) {
	if req.Manifest != "" {
		m, err := readManifest(req.Manifest)
		if err != nil {
			return "", "", err
		}
		return "", m.Metadata.Name, nil
	}
	if req.Archive != "" {
		return "", "", errors.New("an archive installs only with its manifest (--manifest)")
	}
	index, name, err = pluginname.SplitKrew(req.Plugin)
	if err != nil {
		return "", "", err
	}
	if index == "" {
		switch _, hasDefault := i.cfg.Indexes["default"]; {
		case hasDefault:
			index = "default"
		case len(i.cfg.Indexes) == 1:
			index = i.Indexes()[0]
		case len(i.cfg.Indexes) == 0:
			return "", "", errors.New("no krew index is allowed (plugins.krew_indexes is empty): add one, or install offline from a manifest and an archive")
		default:
			return "", "", fmt.Errorf("say which index %q comes from, as INDEX/%s; allowed indexes: %s", name, name, strings.Join(i.Indexes(), ", "))
		}
	}
	if _, ok := i.cfg.Indexes[index]; !ok {
		return "", "", fmt.Errorf("index %q is not allowed (plugins.krew_indexes allows %s)", index, quoted(i.Indexes()))
	}
	return index, name, nil
}

// Install installs or updates one plugin. On any error the root is left
// as it was: no new link, receipt or version stays behind.
func (i *Installer) Install(ctx context.Context, req Request) (Result, error) {
	index, name, err := i.Target(req)
	if err != nil {
		return Result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, i.cfg.Timeout)
	defer cancel()
	i.mu.Lock()
	defer i.mu.Unlock()
	if err := os.MkdirAll(i.cfg.Root, 0o755); err != nil {
		return Result{}, fmt.Errorf("krew root: %w", err)
	}
	// Another process (a `plugins install` beside the server) may use the
	// same root.
	unlock, err := flock.Lock(ctx, filepath.Join(i.cfg.Root, ".install.lock"))
	if err != nil {
		return Result{}, fmt.Errorf("krew root: %w", err)
	}
	defer unlock()

	before, err := snapshot(i.cfg.Root)
	if err != nil {
		return Result{}, err
	}
	prev, _ := readReceipt(i.cfg.Root, name)
	res, logText, err := i.install(ctx, req, index, name, prev)
	if err != nil {
		if rerr := restore(i.cfg.Root, before); rerr != nil {
			err = errors.Join(err, fmt.Errorf("krew root %s could not be put back as it was: %w", i.cfg.Root, rerr))
		}
		if ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (install_timeout %s passed)", err, i.cfg.Timeout)
		}
		i.log.Debug("install failed", "plugin", name, "krew_output", trim(logText))
		return Result{}, err
	}
	res.Log = trim(logText)
	return res, nil
}

func (i *Installer) install(ctx context.Context, req Request, index, name string, prev *manifest) (Result, string, error) {
	var log bytes.Buffer
	krew, err := i.binary()
	if err != nil {
		return Result{}, "", err
	}
	src := "index"
	wantUpdate := req.Update
	var args []string
	switch {
	case req.Manifest != "":
		src = "manifest"
		if prev != nil && req.Update {
			return Result{}, "", fmt.Errorf("plugin %q is installed (version %s); krew updates only from an index, so an offline update is not possible: uninstall it first", name, prev.Spec.Version)
		}
		args = []string{"install", "--manifest=" + req.Manifest}
		if req.Archive != "" {
			args = append(args, "--archive="+req.Archive)
		}
	default:
		if err := i.ensureIndex(ctx, krew, index, &log); err != nil {
			return Result{}, log.String(), err
		}
		if prev != nil && prev.Status.Source.Name != "" && prev.Status.Source.Name != index {
			return Result{}, log.String(), fmt.Errorf("plugin %q is installed from index %q, not %q", name, prev.Status.Source.Name, index)
		}
		offered, err := readManifest(filepath.Join(i.cfg.Root, "index", index, "plugins", name+".yaml"))
		if errors.Is(err, fs.ErrNotExist) {
			return Result{}, log.String(), fmt.Errorf("plugin %q is not in index %q", name, index)
		}
		if err != nil {
			return Result{}, log.String(), fmt.Errorf("index %q: %w", index, err)
		}
		args = []string{"install", "--no-update-index", index + "/" + name}
		if prev != nil && req.Update {
			args = []string{"upgrade", "--no-update-index", name}
			// krew fails an upgrade to the version installed.
			if offered.Spec.Version == prev.Spec.Version {
				req.Update = false
			}
		}
	}
	if prev == nil || req.Update {
		if err := i.run(ctx, &log, krew, args...); err != nil {
			return Result{}, log.String(), krewError(args[0], err, log.String())
		}
	}
	m, err := readReceipt(i.cfg.Root, name)
	if err != nil {
		return Result{}, log.String(), fmt.Errorf("krew reported success but left no receipt: %w", err)
	}
	res := Result{Name: name, Version: m.Spec.Version, Source: src}
	if src == "index" {
		res.Index = m.Status.Source.Name
	}
	switch {
	case prev == nil:
		res.Outcome = "installed"
	case prev.Spec.Version == m.Spec.Version && wantUpdate:
		res.Outcome = "up_to_date"
	case prev.Spec.Version == m.Spec.Version:
		res.Outcome = "already_installed"
	default:
		res.Outcome, res.PreviousVersion = "updated", prev.Spec.Version
	}
	if p := m.platform(); p != nil {
		res.ArchiveSHA256 = p.SHA256
	}
	res.Path = filepath.Join(i.BinDir(), binName(name))
	sum, err := discovery.FileSHA256(res.Path)
	if err != nil {
		return Result{}, log.String(), fmt.Errorf("installed plugin %q: %w", name, err)
	}
	res.SHA256 = sum
	return res, log.String(), nil
}

// ensureIndex clones an allowed index, or brings its clone up to date, as
// krew's own update does: fetch, reset to upstream, clean. A clone whose
// origin is not the configured location is made again.
func (i *Installer) ensureIndex(ctx context.Context, krew, index string, log *bytes.Buffer) error {
	url := i.cfg.Indexes[index]
	dir := filepath.Join(i.cfg.Root, "index", index)
	if _, err := os.Stat(filepath.Join(dir, ".git")); err == nil {
		origin, err := i.output(ctx, dir, "git", "config", "--get", "remote.origin.url")
		if err == nil && origin == url {
			for _, args := range [][]string{{"fetch", "-v"}, {"reset", "--hard", "@{upstream}"}, {"clean", "-xfd"}} {
				if err := i.runIn(ctx, dir, log, "git", args...); err != nil {
					return fmt.Errorf("update index %q from %s: git %s: %w", index, url, args[0], err)
				}
			}
			return nil
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("index %q: remove the clone of another location: %w", index, err)
		}
	}
	if err := i.run(ctx, log, krew, "index", "add", index, url); err != nil {
		return fmt.Errorf("add index %q from %s: %w", index, url, krewError("index add", err, log.String()))
	}
	return nil
}

func (i *Installer) binary() (string, error) {
	b := i.cfg.Binary
	if strings.ContainsRune(b, '/') {
		if _, err := os.Stat(b); err != nil {
			return "", fmt.Errorf("krew (plugins.krew_binary): %w", err)
		}
		return b, nil
	}
	for _, dir := range filepath.SplitList(i.cfg.PathEnv) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, b)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("krew (plugins.krew_binary %q) is not on PATH: install krew or set plugins.krew_binary to its path", b)
}

// env is all krew and git get of the server's environment: no KUBECONFIG,
// no token, no cloud credentials.
func (i *Installer) env() []string {
	home := filepath.Join(i.cfg.Root, ".home")
	env := []string{
		// krew warns at length unless its bin folder is on PATH; nothing
		// krew or git runs is named kubectl-*.
		"PATH=" + i.cfg.PathEnv + string(filepath.ListSeparator) + i.BinDir(),
		"HOME=" + home,
		"KREW_ROOT=" + i.cfg.Root,
		"KREW_NO_UPGRADE_CHECK=1",
		"KUBECONFIG=" + os.DevNull,
		"TMPDIR=" + filepath.Join(i.cfg.Root, ".tmp"),
		"GIT_TERMINAL_PROMPT=0",
		"GIT_CONFIG_NOSYSTEM=1",
	}
	for _, k := range []string{"HTTPS_PROXY", "HTTP_PROXY", "NO_PROXY", "https_proxy", "http_proxy", "no_proxy"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (i *Installer) run(ctx context.Context, log *bytes.Buffer, name string, args ...string) error {
	return i.runIn(ctx, i.cfg.Root, log, name, args...)
}

func (i *Installer) runIn(ctx context.Context, dir string, log *bytes.Buffer, name string, args ...string) error {
	for _, d := range []string{filepath.Join(i.cfg.Root, ".home"), filepath.Join(i.cfg.Root, ".tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir, cmd.Env = dir, i.env()
	cmd.Stdin = nil
	capped := &capWriter{w: log, left: maxLog}
	cmd.Stdout, cmd.Stderr = capped, capped
	// Its own process group: at the time limit, git's and krew's children
	// go with them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	i.log.Debug("running", "command", name, "args", strings.Join(args, " "))
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("stopped: %w", context.Cause(ctx))
	}
	return err
}

func (i *Installer) output(ctx context.Context, dir, name string, args ...string) (string, error) {
	var out bytes.Buffer
	err := i.runIn(ctx, dir, &out, name, args...)
	return strings.TrimSpace(out.String()), err
}

// maxLog bounds what an install keeps of krew's and git's output.
const maxLog = 64 << 10

type capWriter struct {
	w    io.Writer
	left int
}

func (c *capWriter) Write(p []byte) (int, error) {
	n := len(p)
	if c.left > 0 {
		q := p
		if len(q) > c.left {
			q = q[:c.left]
		}
		c.w.Write(q)
		c.left -= len(q)
	}
	return n, nil
}

// binName is the link krew makes for a plugin (krew's pluginNameToBin).
func binName(name string) string {
	return pluginname.Prefix + strings.ReplaceAll(name, "-", "_")
}

// manifest is what a krew manifest or receipt holds that installs read.
type manifest struct {
	Metadata struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		Version   string     `json:"version"`
		Platforms []platform `json:"platforms"`
	} `json:"spec"`
	Status struct {
		Source struct {
			Name string `json:"name"`
		} `json:"source"`
	} `json:"status"`
}

type platform struct {
	Selector *metav1.LabelSelector `json:"selector"`
	SHA256   string                `json:"sha256"`
}

// platform is the one this machine matches, as krew chooses it: the first.
func (m *manifest) platform() *platform {
	set := labels.Set{"os": runtime.GOOS, "arch": runtime.GOARCH}
	for i := range m.Spec.Platforms {
		p := &m.Spec.Platforms[i]
		sel, err := metav1.LabelSelectorAsSelector(p.Selector)
		if err == nil && sel.Matches(set) {
			return p
		}
	}
	return nil
}

func readManifest(path string) (*manifest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("manifest: %w", err)
	}
	var m manifest
	if err := yaml.Unmarshal(data, &m); err != nil {
		return nil, fmt.Errorf("manifest %s: %w", path, err)
	}
	if _, _, err := pluginname.SplitKrew(m.Metadata.Name); err != nil || m.Metadata.Name == "" {
		return nil, fmt.Errorf("manifest %s: metadata.name %q is not a plugin name krew takes", path, m.Metadata.Name)
	}
	return &m, nil
}

func readReceipt(root, name string) (*manifest, error) {
	return readManifest(filepath.Join(root, "receipts", name+".yaml"))
}

func quoted(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return `"` + strings.Join(names, `", "`) + `"`
}

func trim(s string) string { return strings.TrimSpace(s) }

// krewError is krew's own error, the last line it printed, in place of
// an exit status; a sha256 mismatch is named as one.
func krewError(command string, err error, log string) error {
	var last string
	for _, line := range strings.Split(trim(log), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			last = line
		}
	}
	if last == "" {
		return fmt.Errorf("krew %s: %w", command, err)
	}
	if strings.Contains(last, "checksum does not match") {
		return fmt.Errorf("krew %s: the archive's sha256 does not match its manifest's (%s)", command, last)
	}
	return fmt.Errorf("krew %s: %s (%w)", command, last, err)
}
