// Package runscexec lets the server's own executable stand in for runsc as
// the runtime binary of containerd's runc shim, adding the flags the gVisor
// tier needs.
//
// The runc shim runs its BinaryName with runc's arguments and nothing else:
// no extra flags, no environment of ours. runsc of Debian 12 reads its
// settings only from flags (its annotation overrides need a flag too). So
// the server writes, into its state folder, a link named Name to its own
// executable and, beside it, a JSON file with runsc's path and the flags.
// When the shim runs the link, init below reads that file and execs runsc
// with the flags first and the shim's arguments after, unchanged: no shell
// and no parsing of anything the shim passes. This package imports only the
// standard library, so it runs before the heavy packages' initialisation.
package runscexec

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Name is the link's file name; a process started under it is runsc.
const Name = "kubernetes-mcp-server-runsc"

// configName is the file beside the link that says what to run.
const configName = "runsc-exec.json"

// Config is what the link runs: Runsc, with Flags before the shim's own
// arguments.
type Config struct {
	Runsc string   `json:"runsc"`
	Flags []string `json:"flags"`
}

func init() {
	if len(os.Args) == 0 || filepath.Base(os.Args[0]) != Name {
		return
	}
	err := execRunsc(filepath.Join(filepath.Dir(os.Args[0]), configName), os.Args[1:])
	// The shim puts our stderr in its error.
	fmt.Fprintf(os.Stderr, "%s: %v\n", Name, err)
	os.Exit(1)
}

// execRunsc replaces this process with runsc as configFile says; it
// returns only on failure.
func execRunsc(configFile string, args []string) error {
	data, err := os.ReadFile(configFile)
	if err != nil {
		return err
	}
	var cfg Config
	if err := json.Unmarshal(data, &cfg); err != nil {
		return fmt.Errorf("%s: %w", configFile, err)
	}
	if !filepath.IsAbs(cfg.Runsc) {
		return fmt.Errorf("%s: runsc path %q is not absolute", configFile, cfg.Runsc)
	}
	argv := append(append([]string{cfg.Runsc}, cfg.Flags...), args...)
	return fmt.Errorf("exec %s: %w", cfg.Runsc, syscall.Exec(cfg.Runsc, argv, os.Environ()))
}

// Install writes the link to executable and its config into dir, replacing
// what an earlier server wrote there, and returns the link's path: the
// runtime binary to give the shim. Both are root's and not writable by
// anyone else: whoever could change them would choose what the shim runs.
func Install(dir, executable string, cfg Config) (string, error) {
	if !filepath.IsAbs(cfg.Runsc) {
		return "", fmt.Errorf("runsc path %q is not absolute", cfg.Runsc)
	}
	if err := os.MkdirAll(dir, 0o711); err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return "", err
	}
	data = append(data, '\n')
	link, settings := filepath.Join(dir, Name), filepath.Join(dir, configName)
	// A command run beside the server finds the server's files in place
	// and leaves them be.
	if old, err := os.ReadFile(settings); err == nil && string(old) == string(data) {
		if target, err := os.Readlink(link); err == nil && target == executable {
			return link, nil
		}
	}
	if err := replaceFile(settings, func(tmp string) error { return os.WriteFile(tmp, data, 0o644) }); err != nil {
		return "", fmt.Errorf("write the runsc settings: %w", err)
	}
	if err := replaceFile(link, func(tmp string) error { return os.Symlink(executable, tmp) }); err != nil {
		return "", fmt.Errorf("link the runsc stand-in to %s: %w", executable, err)
	}
	return link, nil
}

// replaceFile makes path anew through a temporary name and a rename, so a
// shim starting meanwhile sees the old file or the new one, never neither.
func replaceFile(path string, create func(tmp string) error) error {
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.Remove(tmp); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := create(tmp); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}
