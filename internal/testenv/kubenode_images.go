package testenv

import (
	"archive/tar"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
)

// nodeImage is an image for the test node: a docker-archive tar in the
// cache, imported into each node's containerd.
type nodeImage struct {
	Name string // with its tag, as Pods and CRI name it
	Tar  string
}

// kubenodeCache holds the built pause program and the image tars, keyed by
// what went into them, so a second run builds nothing.
func kubenodeCache() (string, error) {
	dir := filepath.Join(images.CacheDir(), "kubenode")
	return dir, os.MkdirAll(dir, 0o755)
}

// lockCache serialises builds into the cache between test binaries.
func lockCache(dir string) (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil
}

// pauseProgram builds kubepause (static) once per source, and returns the
// binary and its image.
func pauseProgram() (bin string, img nodeImage, err error) {
	root, err := images.RepoRoot()
	if err != nil {
		return "", img, err
	}
	src, err := os.ReadFile(filepath.Join(root, "internal", "testenv", "kubepause", "main.go"))
	if err != nil {
		return "", img, err
	}
	sum := sha256.Sum256(append(src, runtime.Version()...))
	key := hex.EncodeToString(sum[:])[:16]
	cache, err := kubenodeCache()
	if err != nil {
		return "", img, err
	}
	bin = filepath.Join(cache, "kubepause-"+key)
	img = nodeImage{Name: "kmcp.local/pause:" + key, Tar: bin + ".tar"}
	if fileExists(bin) && fileExists(img.Tar) {
		return bin, img, nil
	}
	unlock, err := lockCache(cache)
	if err != nil {
		return "", img, err
	}
	defer unlock()
	if !fileExists(bin) {
		tmp := bin + ".tmp"
		build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, "./internal/testenv/kubepause")
		build.Dir = root
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			return "", img, fmt.Errorf("build kubepause: %v\n%s", err, out)
		}
		if err := os.Rename(tmp, bin); err != nil {
			return "", img, err
		}
	}
	if !fileExists(img.Tar) {
		layer, err := os.MkdirTemp(cache, ".pause-layer-")
		if err != nil {
			return "", img, err
		}
		defer os.RemoveAll(layer)
		data, err := os.ReadFile(bin)
		if err != nil {
			return "", img, err
		}
		if err := os.WriteFile(filepath.Join(layer, "pause"), data, 0o755); err != nil {
			return "", img, err
		}
		if err := writeDockerArchive(img, layer, []string{"/pause"}); err != nil {
			return "", img, fmt.Errorf("pause image: %w", err)
		}
	}
	return bin, img, nil
}

// sandboxImage packs the plugin sandbox's root filesystem (the folder
// hack/build-image.sh printed, whose parent is named after the image
// version) as an image named after that version.
func sandboxImage(rootfs string) (nodeImage, error) {
	version := filepath.Base(filepath.Dir(rootfs))
	manifest, err := os.ReadFile(filepath.Join(rootfs, images.ManifestPath))
	if err != nil {
		return nodeImage{}, fmt.Errorf("sandbox image: %w", err)
	}
	// The folder's name carries the version; the manifest guards against a
	// folder rebuilt in place.
	sum := sha256.Sum256(append([]byte(rootfs+"\n"), manifest...))
	cache, err := kubenodeCache()
	if err != nil {
		return nodeImage{}, err
	}
	img := nodeImage{
		Name: "kmcp.local/plugin-sandbox:" + version,
		Tar:  filepath.Join(cache, "sandbox-"+version+"-"+hex.EncodeToString(sum[:])[:16]+".tar"),
	}
	if fileExists(img.Tar) {
		return img, nil
	}
	unlock, err := lockCache(cache)
	if err != nil {
		return img, err
	}
	defer unlock()
	if fileExists(img.Tar) {
		return img, nil
	}
	if err := writeDockerArchive(img, rootfs, nil); err != nil {
		return img, fmt.Errorf("sandbox image from %s: %w", rootfs, err)
	}
	return img, nil
}

// writeDockerArchive writes img.Tar: a one-layer docker-archive
// (manifest.json, a config, layer.tar) of the folder dir, which
// `ctr images import` reads. GNU tar writes the layer: it keeps owners,
// modes, hard links and device files as they are.
func writeDockerArchive(img nodeImage, dir string, entrypoint []string) error {
	work, err := os.MkdirTemp(filepath.Dir(img.Tar), ".archive-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	layer := filepath.Join(work, "layer.tar")
	if out, err := exec.Command("tar", "--create", "--file", layer, "--numeric-owner", "--sort=name",
		"--directory", dir, ".").CombinedOutput(); err != nil {
		return fmt.Errorf("tar %s: %v\n%s", dir, err, out)
	}
	diffID, err := fileSHA256(layer)
	if err != nil {
		return err
	}
	config, err := json.Marshal(map[string]any{
		"architecture": runtime.GOARCH,
		"os":           "linux",
		"config":       map[string]any{"Entrypoint": entrypoint, "Env": []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}},
		"rootfs":       map[string]any{"type": "layers", "diff_ids": []string{"sha256:" + diffID}},
	})
	if err != nil {
		return err
	}
	configSum := sha256.Sum256(config)
	configName := hex.EncodeToString(configSum[:]) + ".json"
	manifest, err := json.Marshal([]map[string]any{{"Config": configName, "RepoTags": []string{img.Name}, "Layers": []string{"layer.tar"}}})
	if err != nil {
		return err
	}

	tmp := filepath.Join(work, "image.tar")
	out, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer out.Close()
	tw := tar.NewWriter(out)
	for _, f := range []struct {
		name string
		data []byte
	}{{"manifest.json", manifest}, {configName, config}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	lf, err := os.Open(layer)
	if err != nil {
		return err
	}
	defer lf.Close()
	fi, err := lf.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "layer.tar", Mode: 0o644, Size: fi.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, lf); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := out.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, img.Tar)
}

// fileSHA256 is discovery.FileSHA256, which testenv cannot import:
// discovery's own tests import testenv.
func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
