package wasm

import (
	"fmt"
	"path"
	"strings"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

// Paths inside every guest.
const (
	TmpDir         = "/tmp"      // the call's own empty folder, writable
	KubeconfigDir  = "/run/kube" // holds the call's kubeconfig, read-only
	KubeconfigPath = KubeconfigDir + "/config"
)

// Limits bound what one guest may use.
type Limits struct {
	MemoryMiB int64 // linear memory
	TmpMiB    int64 // what the guest may write to /tmp
	// OpenFiles bounds the files a guest holds open at once. Each is a
	// file descriptor of the server's own process, so without it one guest
	// could leave the server none.
	OpenFiles int64
}

// Call is what the profile needs to know of one call.
type Call struct {
	ID string
	// Plugin is the plugin file; argv[0] is its name.
	Plugin string
	Args   []string
	// Env holds extra variables, after HOME, TMPDIR and KUBECONFIG.
	Env []string
	// Cluster says whether the call has a cluster, through the gateway.
	Cluster bool
	// Timeout is how long the guest may run, 0 for as long as the call's
	// context lives; `profile show` fills in the call timeout it would get.
	Timeout time.Duration
	Limits  Limits
}

// Settings is what one guest runs with, the counterpart of the container
// sandbox's OCI spec: the backend builds wazero's module configuration from
// it alone, and `profile show` prints it.
type Settings struct {
	Args []string `json:"args"`
	Env  []string `json:"env"`
	// Mounts are the only folders a guest sees; there is no other.
	Mounts []Mount `json:"mounts"`
	// MemoryLimitMiB bounds the guest's linear memory; growing past it fails.
	MemoryLimitMiB int64 `json:"memory_limit_mib"`
	// OpenFiles bounds the files the guest holds open at once, in all its
	// folders together; past it an open fails (EAGAIN).
	OpenFiles int64 `json:"open_files"`
	// Timeout ends the guest, mid-instruction, as does the call's end.
	Timeout string `json:"timeout"`
	// HostFunctions are the host modules a guest may import, and nothing else.
	HostFunctions []string `json:"host_functions"`
	// Cluster says where round_trip sends requests: "gateway" or "none".
	Cluster string `json:"cluster"`
	Stdio   string `json:"stdio"`
	Clock   string `json:"clock"`
	Random  string `json:"random"`
}

// Mount is one folder of the guest's.
type Mount struct {
	Guest    string `json:"guest"`
	ReadOnly bool   `json:"read_only"`
	// LimitMiB bounds what the guest may write there; 0 for read-only.
	LimitMiB int64 `json:"limit_mib,omitempty"`
	// Holds says what is in it.
	Holds string `json:"holds"`
}

// Option is one named step of the wasm sandbox profile, as for containers:
// read top to bottom, the options are all a guest is given.
type Option struct {
	Name  string
	Apply func(*Settings)
}

// Wasi is the WASI module every guest may import.
const Wasi = "wasi_snapshot_preview1"

// Profile is the sandbox of one call, as a list of small named options.
func Profile(c Call) []Option {
	env := []string{"HOME=" + TmpDir, "TMPDIR=" + TmpDir}
	kubeStep := "no cluster: no kubeconfig, and round_trip answers that there is none"
	kubeApply := func(s *Settings) { s.Cluster = "none" }
	if c.Cluster {
		env = append(env, "KUBECONFIG="+KubeconfigPath)
		kubeStep = "the call's kubeconfig, with no secret in it, read-only at " + KubeconfigPath + "; round_trip serves requests through the call's API gateway"
		kubeApply = func(s *Settings) {
			s.Cluster = "gateway"
			s.Mounts = append(s.Mounts, Mount{Guest: KubeconfigDir, ReadOnly: true, Holds: "the call's kubeconfig, naming the gateway and no credential"})
		}
	}
	timeout := "the call's"
	if c.Timeout > 0 {
		timeout = c.Timeout.String()
	}
	return []Option{
		{"nothing of the host's filesystem: only the folders below", func(s *Settings) { s.Mounts = nil }},
		{fmt.Sprintf("%s: the call's own empty folder, writable, at most %d MiB, no links", TmpDir, c.Limits.TmpMiB), func(s *Settings) {
			s.Mounts = append(s.Mounts, Mount{Guest: TmpDir, LimitMiB: c.Limits.TmpMiB, Holds: "nothing, at the start of each call"})
		}},
		{kubeStep, kubeApply},
		{"the plugin's name (kubectl-NAME) and its arguments as argv", func(s *Settings) {
			s.Args = append([]string{strings.TrimSuffix(path.Base(c.Plugin), ".wasm")}, c.Args...)
		}},
		{"environment: HOME=/tmp, TMPDIR=/tmp, KUBECONFIG when there is a cluster; nothing of the server's", func(s *Settings) {
			s.Env = append(env, c.Env...)
		}},
		{"stdin, stdout and stderr of the call, capped by the runtime", func(s *Settings) { s.Stdio = "the call's stdin; stdout and stderr capped at max_output" }},
		{"host functions: " + Wasi + " and " + abi.Module + "." + abi.RoundTrip + "; nothing else may be imported", func(s *Settings) {
			s.HostFunctions = []string{Wasi, abi.Module}
		}},
		{"the host's wall and monotonic clocks, sleep, and random bytes from crypto/rand", func(s *Settings) {
			s.Clock, s.Random = "host wall and monotonic clocks; sleep", "crypto/rand"
		}},
		{fmt.Sprintf("at most %d MiB of linear memory, fresh each call: the module's data, the rest zeros", c.Limits.MemoryMiB), func(s *Settings) { s.MemoryLimitMiB = c.Limits.MemoryMiB }},
		{fmt.Sprintf("at most %d files open at once, in all its folders together", c.Limits.OpenFiles), func(s *Settings) { s.OpenFiles = c.Limits.OpenFiles }},
		{"one thread: a guest uses at most one CPU core", func(*Settings) {}},
		{"ended mid-instruction when " + timeout + " timeout passes or the call is cancelled", func(s *Settings) { s.Timeout = timeout }},
	}
}

// Spec applies a profile: the settings the backend runs a guest with, and
// the ones `profile show` prints.
func Spec(c Call) *Settings {
	s := &Settings{}
	for _, o := range Profile(c) {
		o.Apply(s)
	}
	return s
}
