package images

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// The plugin image's version and the kubectl it carries: the same as
// version and kubectl_version in hack/build-image.sh, which names the image's
// folder after both (the tests check the two agree).
const (
	pluginRootfsVersion = "4"
	KubectlVersion      = "v1.37.2"
)

// ManifestPath is where, inside the root filesystem, the image lists its
// Debian packages ("name version architecture" lines, after "#" comments).
const ManifestPath = "/etc/kmcp-image-manifest"

const modulePath = "github.com/kubernetes-mcp-server/kubernetes-mcp-server"

// CacheDir is the folder the hack/ build scripts cache their output in:
// $KMCP_CACHE, else $XDG_CACHE_HOME/kubernetes-mcp-server, else
// $HOME/.cache/kubernetes-mcp-server.
func CacheDir() string {
	if dir := os.Getenv("KMCP_CACHE"); dir != "" {
		return dir
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		base = filepath.Join(os.Getenv("HOME"), ".cache")
	}
	return filepath.Join(base, "kubernetes-mcp-server")
}

// DefaultRootfs is where hack/build-image.sh puts the current plugin root
// filesystem. It builds nothing: the folder exists once `make images` (or
// PluginRootfs) has run on this machine.
func DefaultRootfs() string {
	return filepath.Join(CacheDir(), "images",
		"plugin-rootfs-"+pluginRootfsVersion+"-kubectl-"+KubectlVersion, "rootfs")
}

// PluginRootfs returns the plugin sandbox's root filesystem, a folder to use
// read-only, building it with the repository's hack/build-image.sh the first
// time on this machine (as root; under a minute with kubectl cached, a few
// minutes without). The repository is found above the working directory.
func PluginRootfs() (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.Command("bash", filepath.Join(root, "hack", "build-image.sh"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/build-image.sh: %w", err)
	}
	path := strings.TrimSpace(string(out))
	if fi, err := os.Stat(path); err != nil || !fi.IsDir() {
		return "", fmt.Errorf("hack/build-image.sh printed %q, not a folder", path)
	}
	return path, nil
}

// RepoRoot is the top folder of this repository: the first folder above the
// working directory whose go.mod declares this module. Build scripts and
// tests find hack/ through it.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil {
			first, _, _ := bytes.Cut(data, []byte("\n"))
			if strings.TrimSpace(string(first)) == "module "+modulePath {
				return dir, nil
			}
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("images: no go.mod of " + modulePath + " above the working directory")
		}
		dir = parent
	}
}
