package discovery

import (
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
)

// Kind says how a plugin runs.
type Kind string

const (
	// KindExec is a native executable or script.
	KindExec Kind = "exec"
	// KindWasm is a WebAssembly module, kubectl-<name>.wasm.
	KindWasm Kind = "wasm"
)

// Parameter is one flag a plugin accepts, as its --help describes it.
type Parameter = helpparse.Parameter

// Plugin is one discovered plugin: the file that wins its name.
type Plugin struct {
	// Name is the file name without "kubectl-" (and ".wasm"): "get_all", "foo-bar".
	Name string `json:"name"`
	// Command is how kubectl runs it: "get-all", "foo bar".
	Command string `json:"command"`
	// Path is where it was found, as kubectl plugin list prints it.
	Path string `json:"path"`
	// ResolvedPath is Path with every symlink resolved: the file that runs.
	ResolvedPath string    `json:"resolved_path"`
	Kind         Kind      `json:"kind"`
	SHA256       string    `json:"sha256"`
	Size         int64     `json:"size"`
	ModTime      time.Time `json:"mod_time"`
	// Description is the plugin's short help.
	Description string `json:"description,omitempty"`
	Version     string `json:"version,omitempty"`
	// Aliases are other names agents and configs may use for it.
	Aliases    []string    `json:"aliases,omitempty"`
	Parameters []Parameter `json:"parameters"`
	// HelpWarning says why Parameters may be missing or incomplete.
	HelpWarning string `json:"help_warning,omitempty"`
	// ToolName is the MCP tool that serves it, or "" when its name cannot form one.
	ToolName string `json:"tool_name,omitempty"`

	identity identity
	cacheKey string // identity.key(): the cache's name for this version of the file
}

// Warning is something discovery noticed, in kubectl plugin list's words.
type Warning struct {
	Plugin  string `json:"plugin,omitempty"`
	Path    string `json:"path"`
	Message string `json:"message"`
}

// identity is what tells one version of a plugin file from another without
// reading it. The change time is in it because it cannot be set back: a
// file rewritten in place with its size kept and its mtime restored still
// gets a new ctime.
type identity struct {
	Path    string `json:"path"` // resolved
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"`
	Ctime   int64  `json:"ctime_ns"`
	Inode   uint64 `json:"inode"`
}

// identityOf is the identity of the file at resolved path, from its stat.
func identityOf(resolved string, st *unix.Stat_t) identity {
	return identity{Path: resolved, Size: st.Size, ModTime: st.Mtim.Nano(), Ctime: st.Ctim.Nano(), Inode: st.Ino}
}

// statAt is os.Stat of name in the folder open as dirfd (unix.AT_FDCWD
// for a name that is a path), keeping the whole stat for identityOf. In a
// folder it spares the kernel the folder's path for each of its files;
// full names the file in errors.
func statAt(dirfd int, full, name string) (*unix.Stat_t, error) {
	var st unix.Stat_t
	for {
		err := unix.Fstatat(dirfd, name, &st, 0) // follows symlinks, as os.Stat does
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, &fs.PathError{Op: "stat", Path: full, Err: err}
		}
		return &st, nil
	}
}

func (id identity) key() string {
	return id.Path + "\x00" + itoa(id.Size) + "\x00" + itoa(id.ModTime) + "\x00" + itoa(id.Ctime) + "\x00" + itoa(int64(id.Inode))
}

func itoa(n int64) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	neg := n < 0
	if neg {
		n = -n
	}
	for ; n > 0; n /= 10 {
		i--
		b[i] = byte('0' + n%10)
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// Verify checks that the plugin's file is still the one discovery saw, so a
// file swapped or rewritten after discovery (and after policy read its
// digest) never runs. It costs one stat.
func (p *Plugin) Verify() error {
	st, err := statAt(unix.AT_FDCWD, p.ResolvedPath, p.ResolvedPath)
	if err != nil {
		return fmt.Errorf("plugin %s: %w", p.Name, err)
	}
	if identityOf(p.ResolvedPath, st) != p.identity {
		return fmt.Errorf("plugin %s changed on disk since it was discovered; run plugins_discover to check it again", p.Name)
	}
	return nil
}
