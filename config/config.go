// Package config loads the server's settings from built-in defaults, a TOML
// file, environment variables and flags, in rising order of precedence, and
// remembers where each value came from.
package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy/rulesyntax"
)

// Config is the effective configuration of one server.
type Config struct {
	Plugins  Plugins
	Clusters Clusters
	Sandbox  Sandbox
	Audit    Audit
	Server   Server
	HTTP     HTTPGuard // server.* keys of HTTP authentication and origins
	Log      Log

	// File is the configuration file that was read, or "" for none.
	File string
	// Warnings are settings that loaded but deserve the operator's attention.
	Warnings []string

	values map[string]Value
}

// Plugins is the [plugins] table.
type Plugins struct {
	Enabled          bool
	AutoDiscovery    bool
	RefreshInterval  time.Duration
	AllowedPlugins   []string
	BlockedPlugins   []string
	AllowAnyPlugin   bool
	ExecutionTimeout time.Duration
	MaxConcurrent    int
	// MaxQueue is how many calls may wait for a slot; past it a call is
	// refused at once.
	MaxQueue int
	// MaxOutput caps stdout and stderr of one call, each, in bytes.
	MaxOutput   int
	PluginPaths []string
	KubectlPath string
	// DestructivePatterns are globs of plugin names that change or remove
	// things. An empty list set on purpose stays non-nil: policy reads nil
	// as "use the default list".
	DestructivePatterns []string
	// ReadOnly refuses every destructive plugin.
	ReadOnly bool
	// ClusterPlugins limits, per cluster, which plugins may run there.
	ClusterPlugins map[string][]string
	// Pins maps a plugin name to the "sha256:<hex>" its file must have.
	Pins map[string]string
	// AllowInstall lets plugins be installed with krew (plugins_install,
	// `plugins install`); installed plugins still run only where policy
	// allows them.
	AllowInstall bool
	// KrewBinary is krew's executable, a path or a name looked up on PATH.
	KrewBinary string
	// KrewRoot is the server's own KREW_ROOT: installs go there, and its
	// bin folder is searched for plugins.
	KrewRoot string
	// KrewIndexes are the krew indexes installs may come from: name to git
	// URL or folder.
	KrewIndexes map[string]string
	// InstallTimeout bounds one install, index update included.
	InstallTimeout time.Duration
	// Rules are the [[plugins.rules]] entries, in order: which Kubernetes
	// API requests running plugins may make beyond the default (read-only,
	// no secrets).
	Rules []Rule
}

// Rule is one [[plugins.rules]] entry (see rulesyntax.Rule, its one
// definition). Loading checks it with policy/rulesyntax and fills in the
// defaults: Clusters and Namespaces are ["*"] when not written.
type Rule = rulesyntax.Rule

func cloneRules(rules []Rule) []Rule {
	var out []Rule
	for _, r := range rules {
		out = append(out, r.Clone())
	}
	return out
}

// Clusters is the [clusters] table (also accepted as the proposal's [nsk]).
type Clusters struct {
	KubeconfigDir  string
	DefaultCluster string
	Kubeconfig     string
	// RancherURL, when set, adds every cluster that Rancher server lists,
	// with the kubeconfig it generates for each.
	RancherURL string
	// RancherToken is Rancher's API token (secret: never printed);
	// RancherTokenFile holds it instead, read again at every refresh.
	RancherToken     string
	RancherTokenFile string
	// ConfigDir receives the kubeconfigs of Rancher's clusters.
	ConfigDir string
	// AutoRefresh asks Rancher again every RefreshInterval.
	AutoRefresh     bool
	RefreshInterval time.Duration
}

// Sandbox is the [sandbox] table.
type Sandbox struct {
	// Backend is how native plugins run: "auto" (container when containerd
	// answers and the image exists, else not at all), "container", "wasm"
	// (not at all: only WebAssembly plugins run), or "none" (plain
	// processes, the operator's explicit choice). WebAssembly plugins
	// always run in the wasm sandbox.
	Backend             string
	ContainerdAddress   string
	ContainerdNamespace string
	Runtime             string
	RuntimeBinary       string
	// Isolation is the container sandbox's tier: "runc" (the host's
	// kernel, seccomp-filtered) or "gvisor" (gVisor's runsc, a user-space
	// kernel in between).
	Isolation string
	// RunscBinary is gVisor's runsc for isolation "gvisor"; "" is runsc
	// on PATH.
	RunscBinary string
	// Rootfs is the sandbox image; "" means the one `make images` builds.
	Rootfs        string
	StateDir      string
	User          int
	MemoryMiB     int
	PidsLimit     int
	CPUMillicores int
	NoFileLimit   int
	TmpMiB        int
	// WarmPool is how many containers per plugin are created ahead of its
	// calls, each for one call; 0 makes each when its call comes.
	WarmPool int
	// The kubernetes backend's sandbox cluster: kubeconfig and context
	// ("" for the server's in-cluster configuration), the namespace of its
	// Pods, their image and how it is pulled, an optional RuntimeClass
	// and node, where the server listens for the Pods' gateways and the
	// address the Pods dial, how long a Pod may take to run, and the name
	// of this server among those sharing the namespace ("" for the host's).
	KubernetesKubeconfig      string
	KubernetesContext         string
	KubernetesNamespace       string
	KubernetesImage           string
	KubernetesImagePullPolicy string
	KubernetesRuntimeClass    string
	KubernetesNodeName        string
	KubernetesGatewayListen   string
	KubernetesGatewayHost     string
	KubernetesStartTimeout    time.Duration
	KubernetesInstance        string
	// WasmMemoryMiB bounds the linear memory of one WebAssembly guest.
	WasmMemoryMiB int
	// WasmCacheDir keeps compiled modules; "" is the user's cache folder.
	WasmCacheDir string
}

// Audit is the [audit] table.
type Audit struct {
	// File receives one JSON line per API request and per call; "" logs only.
	File string
}

// Server is the [server] table.
type Server struct {
	Port        int
	BindAddress string
	// ShutdownGrace is how long calls in flight get to finish after
	// SIGTERM or SIGINT before they are cancelled.
	ShutdownGrace time.Duration
}

// HTTPGuard is the [server] keys that guard the HTTP transports, apart
// from Server so that Server stays comparable.
type HTTPGuard struct {
	// AuthTokenFile holds the bearer token of the HTTP transports.
	AuthTokenFile string
	// InsecureListen serves HTTP beyond loopback without authentication.
	InsecureListen bool
	// AllowedOrigins are the browser origins accepted; empty means
	// loopback origins.
	AllowedOrigins []string
	// OAuth 2.1 resource server: tokens from OAuthIssuer for
	// OAuthResource (or one of OAuthAudiences), keys from OAuthJWKSURL or
	// the issuer's metadata; OAuthScopes are advertised.
	OAuthIssuer    string
	OAuthResource  string
	OAuthAudiences []string
	OAuthJWKSURL   string
	OAuthScopes    []string
}

// Log is the [log] table.
type Log struct {
	Level  string
	Format string
}

// Source says which layer a value came from.
type Source string

const (
	SourceDefault Source = "default"
	SourceFile    Source = "file"
	SourceEnv     Source = "env"
	SourceFlag    Source = "flag"
)

// Value is one effective setting as `config show` reports it.
type Value struct {
	Value  any    `json:"value"`
	Source Source `json:"source"`
	// Origin is the file and line, the environment variable or the flag.
	Origin string `json:"origin,omitempty"`
	// Note tells an operator something about the key, such as that it is not used.
	Note string `json:"note,omitempty"`
}

// Options says where Load looks.
type Options struct {
	// File is the TOML file to read; "" means embedded defaults only.
	File string
	// LookupEnv reads the environment; os.LookupEnv when nil.
	LookupEnv func(string) (string, bool)
	// Flags holds the flags registered by AddFlags; nil means none.
	Flags *pflag.FlagSet
}

// Load builds the effective configuration. It either returns a complete,
// checked configuration or an error naming every bad key, never a part.
func Load(opts Options) (*Config, error) {
	if opts.LookupEnv == nil {
		opts.LookupEnv = os.LookupEnv
	}
	l := &loader{opts: opts, typed: map[string]any{}, values: map[string]Value{}}
	for _, s := range settings {
		v, disp, err := l.parseText(s, s.def)
		if err != nil {
			panic(fmt.Sprintf("default of %s: %v", s.key, err)) // a bug in the table above
		}
		l.set(s, v, disp, SourceDefault, "")
	}
	if opts.File != "" {
		l.loadFile(opts.File)
	}
	l.loadEnv()
	l.loadFlags()
	for _, s := range settings {
		v := l.values[s.key]
		if s.check != nil && v.Source != SourceDefault {
			if err := s.check(l.typed[s.key]); err != nil {
				l.fail(v.Origin, s.key, err)
			}
		}
	}
	if len(l.errs) > 0 {
		return nil, errors.Join(l.errs...)
	}

	c := &Config{File: opts.File, values: l.values}
	for _, s := range settings {
		if s.unused != "" && l.values[s.key].Source != SourceDefault {
			c.Warnings = append(c.Warnings, fmt.Sprintf("%s (%s) is %s", s.key, l.values[s.key].Origin, s.unused))
		}
		if s.ptr != nil {
			assign(s.ptr(c), l.typed[s.key])
		}
	}
	return c, nil
}

// Values returns every effective setting by its dotted key.
func (c *Config) Values() map[string]Value {
	out := make(map[string]Value, len(c.values))
	for k, v := range c.values {
		out[k] = v
	}
	return out
}

// Keys returns the dotted keys in the order the settings table lists them.
func Keys() []string {
	keys := make([]string, len(settings))
	for i, s := range settings {
		keys[i] = s.key
	}
	return keys
}

type loader struct {
	opts   Options
	typed  map[string]any
	values map[string]Value
	errs   []error
}

func (l *loader) set(s *setting, v, disp any, src Source, origin string) {
	l.typed[s.key] = v
	if s.secret {
		if str, _ := disp.(string); str != "" {
			disp = "<redacted>"
		}
	}
	val := Value{Value: disp, Source: src, Origin: origin}
	if s.unused != "" {
		val.Note = "not used by this server"
	}
	l.values[s.key] = val
}

func (l *loader) fail(origin, key string, err error) {
	if origin == "" {
		l.errs = append(l.errs, fmt.Errorf("%s: %w", key, err))
		return
	}
	l.errs = append(l.errs, fmt.Errorf("%s: %s: %w", origin, key, err))
}

func (l *loader) loadEnv() {
	for _, s := range settings {
		if s.env == "" {
			continue
		}
		// An empty variable counts as unset, as kubectl treats KUBECONFIG.
		raw, ok := l.opts.LookupEnv(s.env)
		if !ok || raw == "" {
			continue
		}
		v, disp, err := l.parseText(s, raw)
		if err != nil {
			l.fail("environment variable "+s.env, s.key, err)
			continue
		}
		l.set(s, v, disp, SourceEnv, s.env)
	}
}

func (l *loader) loadFlags() {
	if l.opts.Flags == nil {
		return
	}
	for _, s := range settings {
		if s.flag == "" {
			continue
		}
		f := l.opts.Flags.Lookup(s.flag)
		if f == nil || !f.Changed {
			continue
		}
		var v, disp any
		var err error
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			v, disp, err = l.parseList(s, trimItems(sv.GetSlice()))
		} else {
			v, disp, err = l.parseText(s, f.Value.String())
		}
		if err != nil {
			l.fail("flag --"+s.flag, s.key, err)
			continue
		}
		l.set(s, v, disp, SourceFlag, "--"+s.flag)
	}
}

// parseText reads a value written as in an environment variable.
func (l *loader) parseText(s *setting, text string) (any, any, error) {
	switch s.kind {
	case kindBool:
		if text == "" {
			return false, false, nil
		}
		b, err := strconv.ParseBool(strings.TrimSpace(text))
		if err != nil {
			return nil, nil, fmt.Errorf("invalid boolean %q (want true or false)", text)
		}
		return b, b, nil
	case kindInt:
		if text == "" {
			return 0, 0, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(text))
		if err != nil {
			return nil, nil, fmt.Errorf("invalid integer %q", text)
		}
		return n, n, nil
	case kindString:
		return text, text, nil
	case kindPath:
		p, err := expandHome(text)
		return p, p, err
	case kindDuration:
		if text == "" {
			return time.Duration(0), "", nil
		}
		d, err := parseDuration(text)
		return d, strings.TrimSpace(text), err
	case kindStrings, kindPaths:
		return l.parseList(s, trimItems(strings.Split(text, ",")))
	case kindStringsMap:
		if text != "" {
			return nil, nil, fmt.Errorf("can only be set in the configuration file")
		}
		return map[string][]string{}, map[string][]string{}, nil
	case kindStringMap:
		if text != "" {
			return nil, nil, fmt.Errorf("can only be set in the configuration file")
		}
		return map[string]string{}, map[string]string{}, nil
	case kindRules:
		if text != "" {
			return nil, nil, fmt.Errorf("can only be set in the configuration file")
		}
		return []Rule{}, []Rule{}, nil
	}
	return nil, nil, fmt.Errorf("unknown kind %v", s.kind)
}

// trimItems tidies a comma-separated list from the environment or a flag,
// where "a, b," is a typing habit, not a plugin named " b" or "".
func trimItems(items []string) []string {
	out := items[:0:0]
	for _, item := range items {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func (l *loader) parseList(s *setting, items []string) (any, any, error) {
	out := make([]string, 0, len(items))
	for _, item := range items {
		if s.kind == kindPaths {
			p, err := expandHome(item)
			if err != nil {
				return nil, nil, err
			}
			item = p
		}
		out = append(out, item)
	}
	return out, out, nil
}

func parseDuration(text string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(text))
	if err != nil {
		return 0, fmt.Errorf("invalid duration %q (write it like \"30s\", \"5m\" or \"1h\")", text)
	}
	return d, nil
}

// expandHome turns a leading ~ into the user's home directory.
func expandHome(p string) (string, error) {
	if p != "~" && !strings.HasPrefix(p, "~/") {
		return p, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("expand %q: %w", p, err)
	}
	return filepath.Join(home, p[1:]), nil
}

// keptEmpty marks a list field whose empty value must stay non-nil, so that
// "set to nothing" differs from "not set".
type keptEmpty []string

func assign(dst, v any) {
	switch d := dst.(type) {
	case *bool:
		*d = v.(bool)
	case *int:
		*d = v.(int)
	case *string:
		*d = v.(string)
	case *time.Duration:
		*d = v.(time.Duration)
	case *[]string:
		*d = append([]string(nil), v.([]string)...)
	case *keptEmpty:
		*d = append([]string{}, v.([]string)...)
	case *map[string][]string:
		m := map[string][]string{}
		for k, list := range v.(map[string][]string) {
			m[k] = append([]string(nil), list...)
		}
		*d = m
	case *[]Rule:
		*d = cloneRules(v.([]Rule))
	case *map[string]string:
		m := make(map[string]string, len(v.(map[string]string)))
		for k, s := range v.(map[string]string) {
			m[k] = s
		}
		*d = m
	default:
		panic(fmt.Sprintf("config: cannot assign to %T", dst))
	}
}

// sortedKeys returns a map's keys in order.
func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
