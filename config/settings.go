package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy/rulesyntax"
)

// kind is how a setting's value is written and checked.
type kind int

const (
	kindBool kind = iota
	kindInt
	kindString
	kindDuration
	kindStrings    // a list of strings; comma-separated in env and flags
	kindStringsMap // a table of string lists, only in the file
	kindStringMap  // a table of strings, only in the file
	kindPath       // a string with ~ expanded
	kindPaths      // a list of paths
	kindRules      // a list of [[plugins.rules]] tables, only in the file
)

func (k kind) String() string {
	return [...]string{"boolean", "integer", "string", "duration", "list of strings", "table of string lists", "table of strings", "path", "list of paths", "list of tables"}[k]
}

// setting describes one configuration key: where it can be set, its default
// and how it is checked. The table below is the single source for loading,
// flags and `config show`.
type setting struct {
	key    string // dotted TOML path
	kind   kind
	def    string // default, written as in an environment variable
	env    string
	flag   string
	usage  string
	secret bool   // shown redacted
	unused string // accepted for compatibility but not used: why
	alias  string // another TOML key that sets this one
	ptr    func(*Config) any
	check  func(v any) error
}

// settings lists every key the server accepts, in the order `config show`
// prints them.
var settings = []*setting{
	{key: "plugins.enabled", kind: kindBool, def: "true", env: "PLUGINS_ENABLED", flag: "plugins-enabled",
		usage: "Serve kubectl plugins", ptr: func(c *Config) any { return &c.Plugins.Enabled }},
	{key: "plugins.auto_discovery", kind: kindBool, def: "true", env: "PLUGINS_AUTO_DISCOVERY", flag: "plugins-auto-discovery",
		usage: "Rediscover plugins every refresh_interval", ptr: func(c *Config) any { return &c.Plugins.AutoDiscovery }},
	{key: "plugins.refresh_interval", kind: kindDuration, def: "5m", env: "PLUGINS_REFRESH_INTERVAL",
		ptr: func(c *Config) any { return &c.Plugins.RefreshInterval }, check: positiveDuration},
	{key: "plugins.allowed_plugins", kind: kindStrings, env: "PLUGINS_ALLOWED", flag: "plugins-allowed",
		usage: "Plugins that may run (comma-separated names or globs)",
		ptr:   func(c *Config) any { return &c.Plugins.AllowedPlugins }, check: globs},
	{key: "plugins.blocked_plugins", kind: kindStrings,
		ptr: func(c *Config) any { return &c.Plugins.BlockedPlugins }, check: globs},
	{key: "plugins.allow_any_plugin", kind: kindBool, def: "false",
		ptr: func(c *Config) any { return &c.Plugins.AllowAnyPlugin }},
	{key: "plugins.execution_timeout", kind: kindDuration, def: "30s", env: "PLUGINS_EXECUTION_TIMEOUT", flag: "plugins-timeout",
		usage: "Time limit of one plugin call", ptr: func(c *Config) any { return &c.Plugins.ExecutionTimeout }, check: positiveDuration},
	{key: "plugins.max_concurrent", kind: kindInt, def: "3", env: "PLUGINS_MAX_CONCURRENT",
		ptr: func(c *Config) any { return &c.Plugins.MaxConcurrent }, check: atLeast(1)},
	{key: "plugins.max_queue", kind: kindInt, def: "32", env: "PLUGINS_MAX_QUEUE",
		ptr: func(c *Config) any { return &c.Plugins.MaxQueue }, check: atLeast(0)},
	{key: "plugins.max_output", kind: kindInt, def: "1048576", env: "PLUGINS_MAX_OUTPUT",
		ptr: func(c *Config) any { return &c.Plugins.MaxOutput }, check: atLeast(1024)},
	{key: "plugins.plugin_paths", kind: kindPaths, def: "/usr/local/bin,~/.krew/bin,~/go/bin",
		ptr: func(c *Config) any { return &c.Plugins.PluginPaths }},
	{key: "plugins.kubectl_path", kind: kindPath, def: "kubectl",
		ptr: func(c *Config) any { return &c.Plugins.KubectlPath }},
	{key: "plugins.destructive_patterns", kind: kindStrings, def: strings.Join(rulesyntax.DefaultDestructivePatterns(), ","),
		ptr: func(c *Config) any { return (*keptEmpty)(&c.Plugins.DestructivePatterns) }, check: globs},
	{key: "plugins.read_only", kind: kindBool, def: "false", env: "PLUGINS_READ_ONLY",
		ptr: func(c *Config) any { return &c.Plugins.ReadOnly }},
	{key: "plugins.allow_install", kind: kindBool, def: "false", env: "PLUGINS_ALLOW_INSTALL",
		usage: "Let plugins_install and 'plugins install' install plugins with krew",
		ptr:   func(c *Config) any { return &c.Plugins.AllowInstall }},
	{key: "plugins.krew_binary", kind: kindPath, def: "kubectl-krew",
		ptr: func(c *Config) any { return &c.Plugins.KrewBinary }},
	{key: "plugins.krew_root", kind: kindPath, def: "~/.local/share/kubernetes-mcp-server/krew",
		ptr: func(c *Config) any { return &c.Plugins.KrewRoot }},
	{key: "plugins.install_timeout", kind: kindDuration, def: "5m", env: "PLUGINS_INSTALL_TIMEOUT",
		ptr: func(c *Config) any { return &c.Plugins.InstallTimeout }, check: positiveDuration},
	// The tables come last: WriteTOML opens a [[plugins.rules]] or
	// [plugins.*] table for each, and a plain plugins key written after them
	// would land inside one. Empty rules are written `rules = []`, a plain
	// key, so they come first.
	{key: "plugins.rules", kind: kindRules,
		ptr: func(c *Config) any { return &c.Plugins.Rules }},
	{key: "plugins.cluster_plugins", kind: kindStringsMap,
		ptr: func(c *Config) any { return &c.Plugins.ClusterPlugins }, check: clusterPlugins},
	{key: "plugins.pins", kind: kindStringMap,
		ptr: func(c *Config) any { return &c.Plugins.Pins }, check: pins},
	{key: "plugins.krew_indexes", kind: kindStringMap,
		ptr: func(c *Config) any { return &c.Plugins.KrewIndexes }, check: krewIndexes},

	{key: "clusters.kubeconfig_dir", kind: kindPath, alias: "nsk.kubeconfig_dir",
		ptr: func(c *Config) any { return &c.Clusters.KubeconfigDir }},
	{key: "clusters.default_cluster", kind: kindString, alias: "nsk.default_cluster",
		ptr: func(c *Config) any { return &c.Clusters.DefaultCluster }},
	{key: "clusters.kubeconfig", kind: kindPath, env: "KUBECONFIG", flag: "kubeconfig",
		usage: "Kubeconfig whose contexts are clusters too (default ~/.kube/config when it exists)",
		ptr:   func(c *Config) any { return &c.Clusters.Kubeconfig }},
	// Rancher as a source of clusters: the proposal's [nsk] keys. The token
	// has no flag on purpose: argv is readable by every user of the machine.
	{key: "clusters.rancher_url", kind: kindString, alias: "nsk.rancher_url",
		ptr: func(c *Config) any { return &c.Clusters.RancherURL }},
	{key: "clusters.rancher_token", kind: kindString, alias: "nsk.rancher_token", env: "PLUGINS_RANCHER_TOKEN", secret: true,
		ptr: func(c *Config) any { return &c.Clusters.RancherToken }},
	{key: "clusters.rancher_token_file", kind: kindPath, alias: "nsk.rancher_token_file", env: "PLUGINS_RANCHER_TOKEN_FILE",
		ptr: func(c *Config) any { return &c.Clusters.RancherTokenFile }},
	{key: "clusters.config_dir", kind: kindPath, alias: "nsk.config_dir", def: "~/.local/share/kubernetes-mcp-server/rancher",
		ptr: func(c *Config) any { return &c.Clusters.ConfigDir }},
	{key: "clusters.auto_refresh", kind: kindBool, alias: "nsk.auto_refresh", def: "true",
		ptr: func(c *Config) any { return &c.Clusters.AutoRefresh }},
	{key: "clusters.refresh_interval", kind: kindDuration, alias: "nsk.refresh_interval", def: "10m",
		ptr: func(c *Config) any { return &c.Clusters.RefreshInterval }, check: positiveDuration},

	{key: "sandbox.backend", kind: kindString, def: "auto", env: "PLUGINS_SANDBOX_BACKEND",
		ptr: func(c *Config) any { return &c.Sandbox.Backend }, check: oneOf("auto", "container", "kubernetes", "wasm", "none")},
	{key: "sandbox.containerd_address", kind: kindPath, def: "/run/containerd/containerd.sock", env: "PLUGINS_CONTAINERD_ADDRESS",
		ptr: func(c *Config) any { return &c.Sandbox.ContainerdAddress }},
	{key: "sandbox.containerd_namespace", kind: kindString, def: "kubernetes-mcp-server",
		ptr: func(c *Config) any { return &c.Sandbox.ContainerdNamespace }},
	{key: "sandbox.runtime", kind: kindString, def: "io.containerd.runc.v2",
		ptr: func(c *Config) any { return &c.Sandbox.Runtime }},
	{key: "sandbox.runtime_binary", kind: kindPath,
		ptr: func(c *Config) any { return &c.Sandbox.RuntimeBinary }},
	{key: "sandbox.isolation", kind: kindString, def: "runc",
		ptr: func(c *Config) any { return &c.Sandbox.Isolation }, check: oneOf("runc", "gvisor")},
	{key: "sandbox.runsc_binary", kind: kindPath,
		ptr: func(c *Config) any { return &c.Sandbox.RunscBinary }},
	{key: "sandbox.rootfs", kind: kindPath,
		ptr: func(c *Config) any { return &c.Sandbox.Rootfs }},
	{key: "sandbox.state_dir", kind: kindPath, def: "/run/kubernetes-mcp-server",
		ptr: func(c *Config) any { return &c.Sandbox.StateDir }},
	{key: "sandbox.user", kind: kindInt, def: "65534",
		ptr: func(c *Config) any { return &c.Sandbox.User }, check: atLeast(1)},
	{key: "sandbox.memory_mib", kind: kindInt, def: "256",
		ptr: func(c *Config) any { return &c.Sandbox.MemoryMiB }, check: atLeast(16)},
	{key: "sandbox.pids_limit", kind: kindInt, def: "128",
		ptr: func(c *Config) any { return &c.Sandbox.PidsLimit }, check: atLeast(8)},
	{key: "sandbox.cpu_millicores", kind: kindInt, def: "1000",
		ptr: func(c *Config) any { return &c.Sandbox.CPUMillicores }, check: atLeast(10)},
	{key: "sandbox.nofile_limit", kind: kindInt, def: "1024",
		ptr: func(c *Config) any { return &c.Sandbox.NoFileLimit }, check: atLeast(64)},
	{key: "sandbox.tmp_mib", kind: kindInt, def: "64",
		ptr: func(c *Config) any { return &c.Sandbox.TmpMiB }, check: atLeast(1)},
	{key: "sandbox.warm_pool", kind: kindInt, def: "2", env: "PLUGINS_WARM_POOL",
		ptr: func(c *Config) any { return &c.Sandbox.WarmPool }, check: between(0, 16)},
	{key: "sandbox.kubernetes_kubeconfig", kind: kindPath,
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesKubeconfig }},
	{key: "sandbox.kubernetes_context", kind: kindString,
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesContext }},
	{key: "sandbox.kubernetes_namespace", kind: kindString, def: "kubernetes-mcp-server-sandbox", env: "PLUGINS_KUBERNETES_NAMESPACE",
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesNamespace }},
	{key: "sandbox.kubernetes_image", kind: kindString, env: "PLUGINS_KUBERNETES_IMAGE",
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesImage }},
	{key: "sandbox.kubernetes_image_pull_policy", kind: kindString, def: "IfNotPresent",
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesImagePullPolicy }, check: oneOf("IfNotPresent", "Always", "Never")},
	{key: "sandbox.kubernetes_runtime_class", kind: kindString,
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesRuntimeClass }},
	{key: "sandbox.kubernetes_node_name", kind: kindString,
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesNodeName }},
	{key: "sandbox.kubernetes_gateway_listen", kind: kindString,
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesGatewayListen }},
	{key: "sandbox.kubernetes_gateway_host", kind: kindString, env: "PLUGINS_KUBERNETES_GATEWAY_HOST",
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesGatewayHost }},
	{key: "sandbox.kubernetes_instance", kind: kindString,
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesInstance }},
	{key: "sandbox.kubernetes_start_timeout", kind: kindDuration, def: "2m",
		ptr: func(c *Config) any { return &c.Sandbox.KubernetesStartTimeout }, check: positiveDuration},
	{key: "sandbox.wasm_memory_mib", kind: kindInt, def: "512", env: "PLUGINS_WASM_MEMORY_MIB",
		ptr: func(c *Config) any { return &c.Sandbox.WasmMemoryMiB }, check: between(16, 4096)},
	{key: "sandbox.wasm_cache_dir", kind: kindPath,
		ptr: func(c *Config) any { return &c.Sandbox.WasmCacheDir }},

	{key: "audit.file", kind: kindPath, env: "PLUGINS_AUDIT_FILE",
		ptr: func(c *Config) any { return &c.Audit.File }},

	{key: "server.port", kind: kindInt, def: "0", flag: "port",
		usage: "Serve MCP over HTTP on this port; 0 serves stdio", ptr: func(c *Config) any { return &c.Server.Port }, check: port},

	{key: "server.bind_address", kind: kindString, def: "127.0.0.1", flag: "bind-address",
		usage: "Address the HTTP transports listen on", ptr: func(c *Config) any { return &c.Server.BindAddress }},

	{key: "server.shutdown_grace", kind: kindDuration, def: "10s", env: "PLUGINS_SHUTDOWN_GRACE",
		ptr: func(c *Config) any { return &c.Server.ShutdownGrace }, check: positiveDuration},

	{key: "server.auth_token_file", kind: kindPath, env: "PLUGINS_AUTH_TOKEN_FILE", flag: "auth-token-file",
		usage: "File holding the bearer token HTTP clients must send",
		ptr:   func(c *Config) any { return &c.HTTP.AuthTokenFile }},
	{key: "server.insecure_listen", kind: kindBool, def: "false", flag: "insecure-listen",
		usage: "Serve HTTP beyond loopback WITHOUT authentication",
		ptr:   func(c *Config) any { return &c.HTTP.InsecureListen }},
	{key: "server.allowed_origins", kind: kindStrings, env: "PLUGINS_ALLOWED_ORIGINS",
		ptr: func(c *Config) any { return &c.HTTP.AllowedOrigins }},
	{key: "server.oauth_issuer", kind: kindString, env: "PLUGINS_OAUTH_ISSUER",
		ptr: func(c *Config) any { return &c.HTTP.OAuthIssuer }},
	{key: "server.oauth_resource", kind: kindString, env: "PLUGINS_OAUTH_RESOURCE",
		ptr: func(c *Config) any { return &c.HTTP.OAuthResource }},
	{key: "server.oauth_audiences", kind: kindStrings,
		ptr: func(c *Config) any { return &c.HTTP.OAuthAudiences }},
	{key: "server.oauth_jwks_url", kind: kindString,
		ptr: func(c *Config) any { return &c.HTTP.OAuthJWKSURL }},
	{key: "server.oauth_scopes", kind: kindStrings,
		ptr: func(c *Config) any { return &c.HTTP.OAuthScopes }},

	{key: "log.level", kind: kindString, def: "info", flag: "log-level",
		usage: "Log level: trace, debug, info, warn or error", ptr: func(c *Config) any { return &c.Log.Level },
		check: oneOf("trace", "debug", "info", "warn", "error")},
	{key: "log.format", kind: kindString, def: "text", flag: "log-format",
		usage: "Log format: text or json", ptr: func(c *Config) any { return &c.Log.Format }, check: oneOf("text", "json")},
}

// The proposal's [nsk] table has two keys that mean nothing here: profile
// (the proposal's tool picks a Rancher by it; this server is given
// rancher_url) and auto_discovery (plugins.auto_discovery is the one that
// counts). They load, so its files work unchanged.
func init() {
	const why = "kept for compatibility with the proposal's [nsk] table; this server does not use it"
	for _, key := range []string{"nsk.profile", "nsk.auto_discovery"} {
		k := kindString
		if key == "nsk.auto_discovery" {
			k = kindBool
		}
		settings = append(settings, &setting{key: key, kind: k, unused: why})
	}
}

func lookupSetting(key string) *setting {
	for _, s := range settings {
		if s.key == key {
			return s
		}
	}
	return nil
}

// lookupAlias finds the setting another key stands for.
func lookupAlias(key string) *setting {
	for _, s := range settings {
		if s.alias == key {
			return s
		}
	}
	return nil
}

// isTable reports whether key is a table that holds settings.
func isTable(key string) bool {
	for _, s := range settings {
		for _, k := range []string{s.key, s.alias} {
			if len(k) > len(key) && k[:len(key)] == key && k[len(key)] == '.' {
				return true
			}
		}
	}
	return false
}

func positiveDuration(v any) error {
	if d := v.(time.Duration); d <= 0 {
		return fmt.Errorf("must be greater than zero, got %s", d)
	}
	return nil
}

func atLeast(min int) func(any) error {
	return func(v any) error {
		if n := v.(int); n < min {
			return fmt.Errorf("must be at least %d, got %d", min, n)
		}
		return nil
	}
}

func between(min, max int) func(any) error {
	return func(v any) error {
		if n := v.(int); n < min || n > max {
			return fmt.Errorf("must be from %d to %d, got %d", min, max, n)
		}
		return nil
	}
}

func port(v any) error {
	if n := v.(int); n < 0 || n > 65535 {
		return fmt.Errorf("must be a port from 0 to 65535, got %d", n)
	}
	return nil
}

func oneOf(choices ...string) func(any) error {
	return func(v any) error {
		for _, c := range choices {
			if v.(string) == c {
				return nil
			}
		}
		return fmt.Errorf("must be one of %q, got %q", choices, v)
	}
}

func globs(v any) error {
	for _, p := range v.([]string) {
		if err := glob(p); err != nil {
			return err
		}
	}
	return nil
}

// glob checks a plugin name or glob as policy reads it.
func glob(p string) error {
	if p == "" {
		return fmt.Errorf("empty plugin name or pattern")
	}
	return rulesyntax.CheckPluginGlob(p)
}

// clusterPlugins checks in key order, so the same file always gives the
// same error.
func clusterPlugins(v any) error {
	m := v.(map[string][]string)
	for _, cluster := range sortedKeys(m) {
		plugins := m[cluster]
		if cluster == "" {
			return fmt.Errorf("empty cluster name")
		}
		for _, p := range plugins {
			if err := glob(p); err != nil {
				return fmt.Errorf("cluster %q: %w", cluster, err)
			}
		}
	}
	return nil
}

func pins(v any) error {
	m := v.(map[string]string)
	for _, name := range sortedKeys(m) {
		if name == "" {
			return fmt.Errorf("empty plugin name")
		}
		if err := rulesyntax.CheckPluginGlob(name); err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
		if err := rulesyntax.CheckPin(m[name]); err != nil {
			return fmt.Errorf("%q: %w", name, err)
		}
	}
	return nil
}

// krewIndexes checks index names as krew does (it makes each a folder) and
// that every index has a location.
func krewIndexes(v any) error {
	m := v.(map[string]string)
	for _, name := range sortedKeys(m) {
		if err := pluginname.CheckKrewIndex(name); err != nil {
			return err
		}
		if strings.TrimSpace(m[name]) == "" {
			return fmt.Errorf("index %q: empty location; give its git URL or folder", name)
		}
	}
	return nil
}
