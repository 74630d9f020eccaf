package discovery

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
)

// SearchDirs lists the folders searched, in order: those of PATH (as
// kubectl searches them), then plugin_paths, then krew's bin folder. A
// folder listed twice is searched once, where it first appears.
func SearchDirs(pathEnv string, pluginPaths []string, krewRoot string) []string {
	dirs := filepath.SplitList(pathEnv)
	dirs = append(dirs, pluginPaths...)
	if krewRoot == "" {
		if home, err := os.UserHomeDir(); err == nil {
			krewRoot = filepath.Join(home, ".krew")
		}
	}
	if krewRoot != "" {
		dirs = append(dirs, filepath.Join(krewRoot, "bin"))
	}
	seen := map[string]bool{}
	var out []string
	for _, d := range dirs {
		if strings.TrimSpace(d) == "" || seen[d] {
			continue
		}
		seen[d] = true
		out = append(out, d)
	}
	return out
}

// scan walks the folders the way `kubectl plugin list` does and returns the
// file that wins each plugin name, with kubectl's warnings.
func scan(dirs []string) ([]*Plugin, []Warning) {
	var plugins []*Plugin
	var warnings []Warning
	seenFile := map[string]string{} // base name -> first path, as kubectl keys it
	winner := map[string]*Plugin{}  // plugin name -> the file that runs
	for _, dir := range dirs {
		folder, entries, err := readDir(dir)
		if err != nil {
			warnings = append(warnings, Warning{Path: dir, Message: fmt.Sprintf("unable to read directory %q: %v; skipping it", dir, err)})
			continue
		}
		dirfd := int(folder.Fd())
		resolvedDir, err := filepath.EvalSymlinks(dir)
		if err != nil {
			resolvedDir = dir
		}
		if writableByOthers(resolvedDir) {
			warnings = append(warnings, Warning{Path: dir, Message: fmt.Sprintf("%s is writable by every user of this machine: any of them can add or replace plugins there; make it writable by its owner only", dir)})
		}
		for _, e := range entries {
			file := e.Name()
			if e.IsDir() || !strings.HasPrefix(file, "kubectl-") {
				continue
			}
			full := filepath.Join(dir, file)
			name, kind := strings.TrimPrefix(file, "kubectl-"), KindExec
			if strings.HasSuffix(name, ".wasm") {
				name, kind = strings.TrimSuffix(name, ".wasm"), KindWasm
			}
			warn := func(format string, args ...any) {
				warnings = append(warnings, Warning{Plugin: name, Path: full, Message: fmt.Sprintf(format, args...)})
			}

			st, err := statAt(dirfd, full, file)
			runnable := err == nil
			switch {
			case err != nil:
				warn("unable to identify %s as an executable file: %v", full, err)
			case kind == KindExec && (st.Mode&unix.S_IFMT == unix.S_IFDIR || st.Mode&0o111 == 0):
				warn("%s identified as a kubectl plugin, but it is not executable", full)
				runnable = false
			case kind == KindWasm && st.Mode&unix.S_IFMT != unix.S_IFREG:
				warn("%s is not a regular file", full)
				runnable = false
			}
			if runnable && st.Mode&0o002 != 0 {
				warn("%s is writable by every user of this machine: any of them can change what runs; make it writable by its owner only", full)
			}
			if prev, ok := seenFile[file]; ok {
				warn("%s is overshadowed by a similarly named plugin: %s", full, prev)
			} else {
				seenFile[file] = full
			}
			checked := file
			if kind == KindWasm {
				checked = "kubectl-" + name
			}
			if cmd := overwrittenCommand(checked); cmd != "" {
				warn("%s overwrites existing command: %q", file, cmd)
			}
			if !runnable {
				continue
			}
			if prev, ok := winner[name]; ok {
				if prev.Kind != kind {
					warn("%s is overshadowed by plugin %q at %s", full, name, prev.Path)
				}
				continue
			}

			resolved := full
			if resolvedDir != dir {
				resolved = filepath.Join(resolvedDir, file)
			}
			if e.Type()&os.ModeSymlink != 0 {
				if resolved, err = filepath.EvalSymlinks(full); err != nil {
					warn("unable to resolve %s: %v", full, err)
					continue
				}
			}
			id := identityOf(resolved, st)
			p := &Plugin{
				Name:         name,
				Command:      pluginname.Command(name),
				Path:         full,
				ResolvedPath: resolved,
				Kind:         kind,
				Size:         st.Size,
				ModTime:      time.Unix(st.Mtim.Unix()),
				Parameters:   []Parameter{},
				ToolName:     pluginname.ToolName(name),
				identity:     id,
				cacheKey:     id.key(),
			}
			if alias := pluginname.Normalize(name); alias != name {
				p.Aliases = []string{alias}
			}
			if p.ToolName == "" {
				warn("plugin name %q cannot form an MCP tool name (letters, digits, '-' and '_' only, at most 57 characters); it is listed but gets no tool", name)
			}
			winner[name] = p
			plugins = append(plugins, p)
		}
		folder.Close()
	}
	return plugins, warnings
}

// readDir opens a folder and lists it sorted by name, as os.ReadDir does;
// the open folder is for statAt.
func readDir(dir string) (*os.File, []os.DirEntry, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, nil, err
	}
	entries, err := f.ReadDir(-1)
	if err != nil {
		f.Close()
		return nil, nil, err
	}
	slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return f, entries, nil
}

// writableByOthers reports whether every user may write to dir; the
// sticky bit does not help, since others may still add files.
func writableByOthers(dir string) bool {
	info, err := os.Stat(dir)
	return err == nil && info.Mode().Perm()&0o002 != 0
}
