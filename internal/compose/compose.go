// Package compose is the composition root's code: from a loaded
// configuration it builds the policy and the sandbox backends that cmd
// hands to the runtime. Tests build their runtimes through it too, so they
// run what the server runs.
package compose

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/images"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/krew"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// Env is what the parts need of the process besides the configuration.
type Env struct {
	// PathEnv is the process's PATH: searched first for plugins, as
	// kubectl searches it, and the base of the PATH plugins get.
	PathEnv string
	// KrewRoot is $KREW_ROOT; "" means ~/.krew.
	KrewRoot string
	// Server marks the one long-running server, which owns the sandboxes
	// and removes what an earlier one left; commands run beside it do not.
	Server bool
}

// Parts are what a runtime is made of; runtime.Options has a field for each.
type Parts struct {
	Policy   *policy.Policy
	Backends sandbox.Backends
	// Dirs are the folders discovery searches, in order.
	Dirs []string
	// Container is the container sandbox's configuration, which
	// `profile show` prints whether or not containerd answers.
	Container container.Config
	// Wasm is the wasm sandbox's configuration, for `profile show`.
	Wasm wasm.Config
	// Kubernetes is the kubernetes sandbox's configuration, for `profile
	// show`; its REST is nil unless backend is "kubernetes".
	Kubernetes kubernetes.Config
	// Installer installs plugins with krew; nil unless allow_install.
	Installer *krew.Installer
	// NoNative says why native plugins cannot run (no container sandbox
	// under "auto", or backend "wasm"); nil when they can.
	NoNative error
}

// Build makes the parts a configuration describes. It fails where serving
// would fail; a backend that cannot start under "auto" is left out with a
// warning. The caller closes Backends.
func Build(ctx context.Context, cfg *config.Config, env Env, log hclog.Logger) (*Parts, error) {
	if log == nil {
		log = hclog.NewNullLogger()
	}
	pol, err := Policy(cfg)
	if err != nil {
		return nil, err
	}
	ccfg := ContainerConfig(cfg, log)
	ccfg.Sweep = env.Server
	if !env.Server {
		// A command runs one call: a container made for a next call would
		// only be removed again.
		ccfg.WarmPool = 0
	}
	wcfg := WasmConfig(cfg, log)
	kcfg := KubernetesConfig(cfg, log)
	kcfg.Sweep = env.Server
	if !env.Server {
		kcfg.WarmPool = 0
	}
	if cfg.Sandbox.Backend == "kubernetes" {
		rest, err := SandboxCluster(cfg)
		if err != nil {
			return nil, fmt.Errorf("sandbox backend kubernetes: %w", err)
		}
		kcfg.REST = rest
	}
	backends, noNative, err := Backends(ctx, cfg.Sandbox.Backend, ccfg, kcfg, wcfg, pluginPath(cfg.Plugins.KubectlPath, env.PathEnv), log)
	if err != nil {
		return nil, err
	}
	installer, err := Installer(cfg, env, log)
	if err != nil {
		backends.Close()
		return nil, err
	}
	dirs := discovery.SearchDirs(env.PathEnv, cfg.Plugins.PluginPaths, env.KrewRoot)
	// The server's own krew root is searched last, so that what an
	// operator put on PATH wins, as it does for kubectl. It is searched
	// while it exists even with installs off: what was installed stays.
	if bin := filepath.Join(cfg.Plugins.KrewRoot, "bin"); cfg.Plugins.KrewRoot != "" && !slices.Contains(dirs, bin) {
		if _, err := os.Stat(bin); err == nil || installer != nil {
			dirs = append(dirs, bin)
		}
	}
	return &Parts{
		Policy:     pol,
		Backends:   backends,
		Dirs:       dirs,
		Container:  ccfg,
		Wasm:       wcfg,
		Kubernetes: kcfg,
		Installer:  installer,
		NoNative:   noNative,
	}, nil
}

// Installer is the krew installer of a configuration, or nil when
// installs are off.
func Installer(cfg *config.Config, env Env, log hclog.Logger) (*krew.Installer, error) {
	p := cfg.Plugins
	if !p.AllowInstall {
		return nil, nil
	}
	in, err := krew.New(krew.Config{
		Binary:  p.KrewBinary,
		Root:    p.KrewRoot,
		Indexes: p.KrewIndexes,
		Timeout: p.InstallTimeout,
		// krew needs git, and finds nothing it should not on the
		// standard folders.
		PathEnv: pluginPath(p.KubectlPath, env.PathEnv),
		Logger:  log.Named("krew"),
	})
	if err != nil {
		return nil, fmt.Errorf("plugins.allow_install: %w", err)
	}
	return in, nil
}

// Policy is the plugin and request policy of a configuration.
func Policy(cfg *config.Config) (*policy.Policy, error) {
	p := cfg.Plugins
	pol, err := policy.New(policy.Rules{
		Allowed:        p.AllowedPlugins,
		Blocked:        p.BlockedPlugins,
		AllowAny:       p.AllowAnyPlugin,
		ClusterPlugins: p.ClusterPlugins,
		Destructive:    p.DestructivePatterns,
		ReadOnly:       p.ReadOnly,
		Pins:           p.Pins,
		Requests:       p.Rules,
	})
	if err != nil {
		return nil, fmt.Errorf("plugin policy: %w", err)
	}
	return pol, nil
}

// Backends chooses the sandbox backends, the one place that reads
// [sandbox] backend. WebAssembly plugins always run in the wasm sandbox,
// which needs nothing of the host; for native plugins:
//   - "none": plain processes with the server's rights, the operator's
//     explicit choice;
//   - "container": the container sandbox, or an error;
//   - "auto": the container sandbox when containerd answers and the image
//     exists; else native plugins are listed but never run, and a server
//     that would serve one refuses to start (Unservable);
//   - "kubernetes": one Pod per call in the sandbox cluster, or an error;
//   - "wasm": nothing; native plugins are listed but never run, and
//     containerd is not asked (a server in an unprivileged pod).
//
// noNative says why native plugins cannot run, nil when they can.
func Backends(ctx context.Context, choice string, ccfg container.Config, kcfg kubernetes.Config, wcfg wasm.Config, pluginPATH string, log hclog.Logger) (backends sandbox.Backends, noNative error, err error) {
	var native sandbox.Backend
	switch choice {
	case "none":
		log.Warn(`sandbox backend is "none": native plugins run as plain processes with this server's own rights, files and network`)
		native = sandbox.None{PathEnv: pluginPATH}
	case "container", "auto":
		b, err := container.New(ctx, ccfg)
		switch {
		case err == nil:
			native = b
		case choice == "container":
			return sandbox.Backends{}, nil, fmt.Errorf("sandbox backend container: %w. %s", err, containerNeeds)
		default:
			noNative = fmt.Errorf("no container sandbox: %w", err)
			log.Warn(`no container sandbox available, so native plugins are listed but do not run; set [sandbox] backend = "container" to require it`, "reason", err)
		}
	case "kubernetes":
		b, err := kubernetes.New(ctx, kcfg)
		if err != nil {
			return sandbox.Backends{}, nil, fmt.Errorf("sandbox backend kubernetes: %w", err)
		}
		native = b
	case "wasm":
		noNative = errors.New(`[sandbox] backend is "wasm"`)
		log.Info(`sandbox backend is "wasm": only WebAssembly plugins run; native plugins are listed but do not run`)
	default:
		return sandbox.Backends{}, nil, fmt.Errorf("sandbox backend %q is not available", choice)
	}
	w, err := wasm.New(ctx, wcfg)
	if err != nil {
		if c, ok := native.(interface{ Close() error }); ok {
			c.Close()
		}
		return sandbox.Backends{}, nil, fmt.Errorf("sandbox backend wasm: %w", err)
	}
	return sandbox.Backends{Native: native, Wasm: w}, noNative, nil
}

// containerNeeds is what the container sandbox asks of the host, as the
// README's "Which sandbox works where" says it.
const containerNeeds = "The container sandbox needs a containerd the server can reach (containerd_address; `make run` starts a private one), " +
	"root or the rights to create containers, cgroups and network namespaces through it, and the sandbox image (`make images`)"

// Unservable is the start-up refusal of a server under backend "auto"
// whose allowed plugins include native ones that nothing can sandbox:
// serving them would offer tools that can never run. native names them;
// why is Parts.NoNative.
func Unservable(native []string, why error) error {
	const most = 5
	names := strings.Join(native, ", ")
	if len(native) > most {
		names = strings.Join(native[:most], ", ") + fmt.Sprintf(" and %d more", len(native)-most)
	}
	return fmt.Errorf("this configuration allows native plugins (%s) but cannot sandbox them: %w. %s. "+
		`Or set [sandbox] backend = "wasm" to serve WebAssembly plugins only (native ones are then listed, not run), `+
		"or allow only WebAssembly plugins (plugins.allowed_plugins), "+
		`or set backend = "none" to run native plugins WITHOUT a sandbox. See "Which sandbox works where" in the README`,
		names, why, containerNeeds)
}

// WasmConfig is the wasm sandbox a configuration describes.
func WasmConfig(cfg *config.Config, log hclog.Logger) wasm.Config {
	s := cfg.Sandbox
	dir := s.WasmCacheDir
	if dir == "" {
		dir = DefaultWasmCacheDir()
	}
	return wasm.Config{
		CacheDir: dir,
		Limits:   wasm.Limits{MemoryMiB: int64(s.WasmMemoryMiB), TmpMiB: int64(s.TmpMiB), OpenFiles: int64(s.NoFileLimit)},
		Logger:   log.Named("wasm"),
	}
}

// ContainerConfig is the container sandbox a configuration describes.
func ContainerConfig(cfg *config.Config, log hclog.Logger) container.Config {
	s := cfg.Sandbox
	rootfs := s.Rootfs
	if rootfs == "" {
		rootfs = images.DefaultRootfs()
	}
	return container.Config{
		Address:       s.ContainerdAddress,
		Namespace:     s.ContainerdNamespace,
		Runtime:       s.Runtime,
		RuntimeBinary: s.RuntimeBinary,
		Isolation:     container.Isolation(s.Isolation),
		RunscBinary:   s.RunscBinary,
		Rootfs:        rootfs,
		StateDir:      s.StateDir,
		User:          uint32(s.User),
		Limits: container.Limits{
			MemoryMiB: int64(s.MemoryMiB), Pids: int64(s.PidsLimit), CPUMillicores: int64(s.CPUMillicores),
			NoFile: uint64(s.NoFileLimit), TmpMiB: int64(s.TmpMiB),
		},
		WarmPool: s.WarmPool,
		Logger:   log.Named("container"),
	}
}

// KubernetesConfig is the kubernetes sandbox's configuration, without its
// cluster (SandboxCluster): enough for `profile show`.
func KubernetesConfig(cfg *config.Config, log hclog.Logger) kubernetes.Config {
	s := cfg.Sandbox
	return kubernetes.Config{
		Namespace:     s.KubernetesNamespace,
		Image:         s.KubernetesImage,
		PullPolicy:    corev1.PullPolicy(s.KubernetesImagePullPolicy),
		RuntimeClass:  s.KubernetesRuntimeClass,
		NodeName:      s.KubernetesNodeName,
		User:          int64(s.User),
		GatewayListen: s.KubernetesGatewayListen,
		GatewayHost:   s.KubernetesGatewayHost,
		StartTimeout:  s.KubernetesStartTimeout,
		WarmPool:      s.WarmPool,
		Instance:      s.KubernetesInstance,
		Limits: container.Limits{
			MemoryMiB: int64(s.MemoryMiB), Pids: int64(s.PidsLimit), CPUMillicores: int64(s.CPUMillicores),
			NoFile: uint64(s.NoFileLimit), TmpMiB: int64(s.TmpMiB),
		},
		Logger: log.Named("kubernetes"),
	}
}

// SandboxCluster is the kubernetes sandbox's cluster: kubernetes_kubeconfig
// (and kubernetes_context), or the server's in-cluster configuration.
func SandboxCluster(cfg *config.Config) (*rest.Config, error) {
	s := cfg.Sandbox
	if s.KubernetesKubeconfig == "" {
		rc, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("no kubernetes_kubeconfig, and not in a cluster: %w", err)
		}
		return rc, nil
	}
	rc, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(
		&clientcmd.ClientConfigLoadingRules{ExplicitPath: s.KubernetesKubeconfig},
		&clientcmd.ConfigOverrides{CurrentContext: s.KubernetesContext}).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("kubernetes_kubeconfig %s: %w", s.KubernetesKubeconfig, err)
	}
	return rc, nil
}

// pluginPath is the PATH a plugin runs with under "none": the folder of
// kubectl_path when that is a path, the server's PATH, then the standard
// folders, so script plugins find kubectl and the usual tools.
func pluginPath(kubectl, pathEnv string) string {
	dirs := filepath.SplitList(pathEnv)
	if filepath.IsAbs(kubectl) {
		dirs = append([]string{filepath.Dir(kubectl)}, dirs...)
	}
	dirs = append(dirs, "/usr/local/bin", "/usr/bin", "/bin")
	var out []string
	for _, d := range dirs {
		if d != "" && !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	return strings.Join(out, string(filepath.ListSeparator))
}

// DefaultWasmCacheDir is where compiled WebAssembly modules are kept unless
// told otherwise; "" (no cache folder) keeps them in memory only.
func DefaultWasmCacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "kubernetes-mcp-server", "wasm")
}

// DefaultCacheFile is where the plugin cache lives unless told otherwise.
func DefaultCacheFile() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "kubernetes-mcp-server", "plugins-cache.json")
}
