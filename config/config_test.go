package config

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
	"sigs.k8s.io/yaml"
)

// load runs Load the way the command does: file (written to a temporary
// config.toml unless empty), an injected environment, and flags parsed from
// args. It returns the file's path so tests can expect it in messages.
func load(t *testing.T, file string, env map[string]string, args ...string) (*Config, string, error) {
	t.Helper()
	path := ""
	if file != "" {
		path = filepath.Join(t.TempDir(), "config.toml")
		if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg, err := Load(Options{File: path, LookupEnv: lookup(env), Flags: flags(t, args...)})
	return cfg, path, err
}

// lookup stands in for os.LookupEnv so the real environment (say a
// developer's KUBECONFIG) cannot leak into a test.
func lookup(env map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		v, ok := env[name]
		return v, ok
	}
}

func flags(t *testing.T, args ...string) *pflag.FlagSet {
	t.Helper()
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return fs
}

func home(t *testing.T) string {
	t.Helper()
	h, err := os.UserHomeDir()
	if err != nil {
		t.Skipf("no home directory: %v", err)
	}
	return h
}

// layer is what one layer sets and what Load must then report.
type layer struct {
	set   string // a file line under [plugins], an environment value, or a flag
	disp  any    // Values()[key].Value
	typed any    // the field of Config
}

func TestPrecedence(t *testing.T) {
	tests := []struct {
		key   string
		env   string // variable name
		field func(*Config) any
		def   layer // set is unused
		file  layer
		envL  layer
		flag  layer // set == "" means the key has no flag
	}{
		{
			key: "plugins.execution_timeout", env: "PLUGINS_EXECUTION_TIMEOUT",
			field: func(c *Config) any { return c.Plugins.ExecutionTimeout },
			def:   layer{disp: "30s", typed: 30 * time.Second},
			file:  layer{set: `execution_timeout = "30s"`, disp: "30s", typed: 30 * time.Second},
			envL:  layer{set: "45s", disp: "45s", typed: 45 * time.Second},
			// Kept as written: `config show` should echo the operator's text.
			flag: layer{set: "--plugins-timeout=60s", disp: "60s", typed: time.Minute},
		},
		{
			key: "plugins.allowed_plugins", env: "PLUGINS_ALLOWED",
			field: func(c *Config) any { return c.Plugins.AllowedPlugins },
			def:   layer{disp: []string{}, typed: []string(nil)},
			file:  layer{set: `allowed_plugins = ["get_all", "cnpg*"]`, disp: []string{"get_all", "cnpg*"}, typed: []string{"get_all", "cnpg*"}},
			envL:  layer{set: " neat , ctx,, ", disp: []string{"neat", "ctx"}, typed: []string{"neat", "ctx"}},
			flag:  layer{set: "--plugins-allowed=evict,ns", disp: []string{"evict", "ns"}, typed: []string{"evict", "ns"}},
		},
		{
			key: "plugins.enabled", env: "PLUGINS_ENABLED",
			field: func(c *Config) any { return c.Plugins.Enabled },
			def:   layer{disp: true, typed: true},
			file:  layer{set: "enabled = false", disp: false, typed: false},
			envL:  layer{set: "true", disp: true, typed: true},
			flag:  layer{set: "--plugins-enabled=false", disp: false, typed: false},
		},
		{
			key: "plugins.auto_discovery", env: "PLUGINS_AUTO_DISCOVERY",
			field: func(c *Config) any { return c.Plugins.AutoDiscovery },
			def:   layer{disp: true, typed: true},
			file:  layer{set: "auto_discovery = false", disp: false, typed: false},
			envL:  layer{set: "true", disp: true, typed: true},
			flag:  layer{set: "--plugins-auto-discovery=false", disp: false, typed: false},
		},
		{
			key: "plugins.max_concurrent", env: "PLUGINS_MAX_CONCURRENT",
			field: func(c *Config) any { return c.Plugins.MaxConcurrent },
			def:   layer{disp: 3, typed: 3},
			file:  layer{set: "max_concurrent = 5", disp: 5, typed: 5},
			envL:  layer{set: "7", disp: 7, typed: 7},
		},
		{
			key: "plugins.read_only", env: "PLUGINS_READ_ONLY",
			field: func(c *Config) any { return c.Plugins.ReadOnly },
			def:   layer{disp: false, typed: false},
			file:  layer{set: "read_only = true", disp: true, typed: true},
			envL:  layer{set: "false", disp: false, typed: false},
		},
		{
			key: "plugins.refresh_interval", env: "PLUGINS_REFRESH_INTERVAL",
			field: func(c *Config) any { return c.Plugins.RefreshInterval },
			def:   layer{disp: "5m", typed: 5 * time.Minute},
			file:  layer{set: `refresh_interval = "10m"`, disp: "10m", typed: 10 * time.Minute},
			envL:  layer{set: "90s", disp: "90s", typed: 90 * time.Second},
		},
	}
	for _, tt := range tests {
		type step struct {
			name               string
			file, env, flag    bool
			want               layer
			source             Source
			origin, originPart string
		}
		steps := []step{
			{name: "default", want: tt.def, source: SourceDefault},
			{name: "file", file: true, want: tt.file, source: SourceFile, originPart: "config.toml:2"},
			{name: "env", file: true, env: true, want: tt.envL, source: SourceEnv, origin: tt.env},
		}
		if tt.flag.set != "" {
			name := strings.SplitN(tt.flag.set, "=", 2)[0]
			steps = append(steps, step{name: "flag", file: true, env: true, flag: true, want: tt.flag, source: SourceFlag, origin: name})
		}
		for _, st := range steps {
			t.Run(tt.key+"/"+st.name, func(t *testing.T) {
				var file string
				env := map[string]string{}
				var args []string
				if st.file {
					file = "[plugins]\n" + tt.file.set + "\n"
				}
				if st.env {
					env[tt.env] = tt.envL.set
				}
				if st.flag {
					args = []string{tt.flag.set}
				}
				cfg, _, err := load(t, file, env, args...)
				if err != nil {
					t.Fatal(err)
				}
				got := cfg.Values()[tt.key]
				if !reflect.DeepEqual(got.Value, st.want.disp) || got.Source != st.source {
					t.Errorf("Values()[%q] = {%#v, %s}, want {%#v, %s}", tt.key, got.Value, got.Source, st.want.disp, st.source)
				}
				if st.origin != "" && got.Origin != st.origin {
					t.Errorf("origin = %q, want %q", got.Origin, st.origin)
				}
				if st.originPart != "" && !strings.HasSuffix(got.Origin, st.originPart) {
					t.Errorf("origin = %q, want it to end in %q", got.Origin, st.originPart)
				}
				if typed := tt.field(cfg); !reflect.DeepEqual(typed, st.want.typed) {
					t.Errorf("typed = %#v, want %#v", typed, st.want.typed)
				}
			})
		}
	}
}

// An empty variable is treated as unset, so `PLUGINS_ENABLED= cmd` cannot
// silently switch plugins off.
func TestEmptyEnvIsUnset(t *testing.T) {
	cfg, _, err := load(t, "[plugins]\nenabled = false\n", map[string]string{"PLUGINS_ENABLED": ""})
	if err != nil {
		t.Fatal(err)
	}
	if v := cfg.Values()["plugins.enabled"]; v.Value != false || v.Source != SourceFile {
		t.Errorf("plugins.enabled = %+v, want false from file", v)
	}
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		args []string
		// want are substrings of the error; FILE stands for the file's path.
		want []string
		// ordered: want appear in this order (file order for the file's own
		// type and syntax errors; range checks run after all layers load).
		ordered bool
	}{
		{name: "unknown key", file: "[plugins]\nmax_concurent = 3\n",
			want: []string{"FILE:2: plugins.max_concurent: unknown key", "did you mean plugins.max_concurrent?"}},
		{name: "unknown table", file: "[plugins]\nenabled = true\n\n[rancher]\nurl = \"x\"\n",
			want: []string{"FILE:4: rancher: unknown key"}},
		{name: "value where a table belongs", file: "plugins = 3\n",
			want: []string{"FILE:1: plugins: want a table, got an integer"}},
		{name: "string for integer", file: "[plugins]\nmax_concurrent = \"three\"\n",
			want: []string{"FILE:2: plugins.max_concurrent: want a integer, got a string"}},
		{name: "string for boolean", file: "[plugins]\n\nenabled = \"yes\"\n",
			want: []string{"FILE:3: plugins.enabled: want a boolean, got a string"}},
		{name: "string for list", file: "[plugins]\nallowed_plugins = \"x\"\n",
			want: []string{"FILE:2: plugins.allowed_plugins: want a list of strings, got a string"}},
		{name: "number in list", file: "[plugins]\nallowed_plugins = [\"x\", 1]\n",
			want: []string{"FILE:2: plugins.allowed_plugins: want a list of strings"}},
		{name: "unparsable duration", file: "[plugins]\nexecution_timeout = \"soon\"\n",
			want: []string{"FILE:2: plugins.execution_timeout: invalid duration \"soon\""}},
		{name: "integer duration", file: "[plugins]\nexecution_timeout = 30\n",
			want: []string{"FILE:2: plugins.execution_timeout: want a duration string such as \"30s\", got an integer"}},
		{name: "zero duration", file: "[plugins]\nrefresh_interval = \"0s\"\n",
			want: []string{"FILE:2: plugins.refresh_interval: must be greater than zero"}},
		{name: "negative max_concurrent", file: "[plugins]\nmax_concurrent = -1\n",
			want: []string{"FILE:2: plugins.max_concurrent: must be at least 1, got -1"}},
		{name: "zero max_concurrent", file: "[plugins]\nmax_concurrent = 0\n",
			want: []string{"FILE:2: plugins.max_concurrent: must be at least 1, got 0"}},
		{name: "bad glob", file: "[plugins]\nallowed_plugins = [\"[x\"]\n",
			want: []string{"FILE:2: plugins.allowed_plugins: bad pattern \"[x\""}},
		{name: "empty plugin name", file: "[plugins]\nblocked_plugins = [\"\"]\n",
			want: []string{"FILE:2: plugins.blocked_plugins: empty plugin name"}},
		{name: "bad glob in cluster_plugins", file: "[plugins.cluster_plugins]\n\"c1-sv5\" = [\"[x\"]\n",
			want: []string{"FILE:1: plugins.cluster_plugins: cluster \"c1-sv5\": bad pattern"}},
		{name: "pin without sha256: prefix", file: "[plugins]\nenabled = true\n\n[plugins.pins]\nevict = \"" + strings.Repeat("a", 64) + "\"\n",
			want: []string{"FILE:4: plugins.pins: \"evict\": want \"sha256:\" and 64 lowercase hex digits"}},
		{name: "pin with uppercase hex", file: "[plugins.pins]\nevict = \"sha256:" + strings.Repeat("A", 64) + "\"\n",
			want: []string{"FILE:1: plugins.pins: \"evict\": want \"sha256:\""}},
		{name: "short pin", file: "[plugins]\npins = { get_all = \"sha256:abc\" }\n",
			want: []string{"FILE:2: plugins.pins: \"get_all\": want \"sha256:\"", "got \"sha256:abc\""}},
		{name: "pin not a string", file: "[plugins.pins]\nevict = 1\n",
			want: []string{"FILE:1: plugins.pins: \"evict\": want a string, got an integer"}},
		{name: "pins not a table", file: "[plugins]\npins = [\"evict\"]\n",
			want: []string{"FILE:2: plugins.pins: want a table of strings, got an array"}},
		{name: "unset variable in pins", file: "[plugins.pins]\nevict = \"${NO_SUCH_PIN}\"\n",
			want: []string{"plugins.pins: \"evict\": environment variable NO_SUCH_PIN is not set"}},
		{name: "bad glob in destructive_patterns", file: "[plugins]\ndestructive_patterns = [\"*delete*\", \"[x\"]\n",
			want: []string{"FILE:2: plugins.destructive_patterns: bad pattern \"[x\""}},
		{name: "bad env read_only", env: map[string]string{"PLUGINS_READ_ONLY": "yes"},
			want: []string{"environment variable PLUGINS_READ_ONLY: plugins.read_only: invalid boolean \"yes\""}},
		{name: "TOML syntax error", file: "[plugins]\nenabled = true\nmax_concurrent = \n",
			want: []string{"FILE:3:"}},
		{name: "unset variable in string", file: "[nsk]\nrancher_token = \"${NO_SUCH_TOKEN}\"\n",
			want: []string{"FILE:2: nsk.rancher_token: environment variable NO_SUCH_TOKEN is not set"}},
		{name: "unset variable in list", file: "[plugins]\nplugin_paths = [\"$NO_SUCH_DIR/bin\"]\n",
			want: []string{"FILE:2: plugins.plugin_paths: environment variable NO_SUCH_DIR is not set"}},
		{name: "unset variable in cluster_plugins", file: "[plugins.cluster_plugins]\nc1 = [\"${NO_SUCH_PLUGIN}\"]\n",
			want: []string{"plugins.cluster_plugins: \"c1\": environment variable NO_SUCH_PLUGIN is not set"}},
		{name: "kubeconfig_dir in [clusters] and [nsk]",
			file: "[clusters]\nkubeconfig_dir = \"/a\"\n\n[nsk]\nkubeconfig_dir = \"/b\"\n",
			want: []string{"FILE:5: nsk.kubeconfig_dir: set clusters.kubeconfig_dir or nsk.kubeconfig_dir, not both"}},
		{name: "bad env value", env: map[string]string{"PLUGINS_MAX_CONCURRENT": "abc"},
			want: []string{"environment variable PLUGINS_MAX_CONCURRENT: plugins.max_concurrent: invalid integer \"abc\""}},
		{name: "env value out of range", env: map[string]string{"PLUGINS_MAX_CONCURRENT": "0"},
			want: []string{"PLUGINS_MAX_CONCURRENT: plugins.max_concurrent: must be at least 1"}},
		{name: "bad env boolean", env: map[string]string{"PLUGINS_ENABLED": "yes"},
			want: []string{"environment variable PLUGINS_ENABLED: plugins.enabled: invalid boolean \"yes\""}},
		{name: "bad log.format in file", file: "[log]\nformat = \"xml\"\n",
			want: []string{"FILE:2: log.format: must be one of", "\"xml\""}},
		{name: "bad log.format flag", args: []string{"--log-format=xml"},
			want: []string{"--log-format: log.format: must be one of"}},
		{name: "bad port flag", args: []string{"--port=70000"},
			want: []string{"--port: server.port: must be a port"}},
		{name: "several errors in one file",
			file: "[plugins]\nmax_concurent = 3\nenabled = \"yes\"\nexecution_timeout = \"soon\"\n\n[log]\nformat = \"xml\"\n",
			want: []string{
				"FILE:2: plugins.max_concurent",
				"FILE:3: plugins.enabled",
				"FILE:4: plugins.execution_timeout",
				"FILE:7: log.format",
			}, ordered: true},
		{name: "errors in file and env together", file: "[plugins]\nmax_concurrent = 0\n",
			env:  map[string]string{"PLUGINS_EXECUTION_TIMEOUT": "soon"},
			want: []string{"FILE:2: plugins.max_concurrent", "environment variable PLUGINS_EXECUTION_TIMEOUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, path, err := load(t, tt.file, tt.env, tt.args...)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if cfg != nil {
				t.Error("Load returned a configuration along with its error")
			}
			assertErrorSays(t, err, path, tt.want, tt.ordered)
		})
	}
}

func TestMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	cfg, err := Load(Options{File: path, LookupEnv: lookup(nil)})
	if err == nil || cfg != nil {
		t.Fatalf("Load(%s) = %v, %v; want nil and an error", path, cfg, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
}

func TestExpansion(t *testing.T) {
	h := home(t)
	file := `
[nsk]
rancher_token = "${TOKEN}"
rancher_url = "https://${HOST}/v3"

[plugins]
plugin_paths = ["$HOME_X/bin", "~/.krew/bin", "~", "/usr/local/bin"]
allowed_plugins = ["${PREFIX}-*", "neat"]
kubectl_path = "~/bin/kubectl"

[plugins.cluster_plugins]
"c1-sv5" = ["${PREFIX}-get"]
`
	env := map[string]string{"TOKEN": "t0ken", "HOST": "rancher.example", "HOME_X": "/opt/x", "PREFIX": "cnpg"}
	cfg, _, err := load(t, file, env)
	if err != nil {
		t.Fatal(err)
	}
	p := cfg.Plugins
	if want := []string{"/opt/x/bin", filepath.Join(h, ".krew/bin"), h, "/usr/local/bin"}; !reflect.DeepEqual(p.PluginPaths, want) {
		t.Errorf("PluginPaths = %q, want %q", p.PluginPaths, want)
	}
	if want := []string{"cnpg-*", "neat"}; !reflect.DeepEqual(p.AllowedPlugins, want) {
		t.Errorf("AllowedPlugins = %q, want %q", p.AllowedPlugins, want)
	}
	if want := filepath.Join(h, "bin/kubectl"); p.KubectlPath != want {
		t.Errorf("KubectlPath = %q, want %q", p.KubectlPath, want)
	}
	if want := map[string][]string{"c1-sv5": {"cnpg-get"}}; !reflect.DeepEqual(p.ClusterPlugins, want) {
		t.Errorf("ClusterPlugins = %q, want %q", p.ClusterPlugins, want)
	}
	if got := cfg.Values()["clusters.rancher_url"].Value; got != "https://rancher.example/v3" {
		t.Errorf("clusters.rancher_url = %q", got)
	}
	// The point of ${TOKEN}: the secret lives in the environment, and is
	// still redacted once expanded.
	if got := cfg.Values()["clusters.rancher_token"].Value; got != "<redacted>" {
		t.Errorf("clusters.rancher_token = %q, want <redacted>", got)
	}
}

// ~ in a default or a flag is expanded too, not only in the file.
func TestHomeExpansionOutsideFile(t *testing.T) {
	h := home(t)
	cfg, _, err := load(t, "", nil, "--kubeconfig=~/.kube/other")
	if err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(h, ".kube/other"); cfg.Clusters.Kubeconfig != want {
		t.Errorf("Kubeconfig = %q, want %q", cfg.Clusters.Kubeconfig, want)
	}
	if want := filepath.Join(h, ".krew/bin"); cfg.Plugins.PluginPaths[1] != want {
		t.Errorf("default PluginPaths[1] = %q, want %q", cfg.Plugins.PluginPaths[1], want)
	}
}

func TestNSKAlias(t *testing.T) {
	cfg, path, err := load(t, "[nsk]\nkubeconfig_dir = \"/etc/k\"\ndefault_cluster = \"c1\"\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Clusters.KubeconfigDir != "/etc/k" || cfg.Clusters.DefaultCluster != "c1" {
		t.Errorf("Clusters = %+v", cfg.Clusters)
	}
	v := cfg.Values()["clusters.kubeconfig_dir"]
	if v.Source != SourceFile || v.Origin != path+":2 (nsk.kubeconfig_dir)" {
		t.Errorf("clusters.kubeconfig_dir = %+v, want origin %s:2 (nsk.kubeconfig_dir)", v, path)
	}
	// Aliases are real settings, not [nsk] leftovers: no warning.
	if len(cfg.Warnings) != 0 {
		t.Errorf("Warnings = %q, want none", cfg.Warnings)
	}
}

func TestUnusedNSKKeysWarn(t *testing.T) {
	cfg, path, err := load(t, "[nsk]\nprofile = \"prod\"\nauto_discovery = true\nauto_refresh = false\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	// auto_refresh is the Rancher source's, an alias of clusters.auto_refresh.
	if len(cfg.Warnings) != 2 || cfg.Clusters.AutoRefresh {
		t.Fatalf("Warnings = %q, want 2; AutoRefresh = %v", cfg.Warnings, cfg.Clusters.AutoRefresh)
	}
	for i, want := range []string{"nsk.profile (" + path + ":2)", "nsk.auto_discovery (" + path + ":3)"} {
		if !strings.HasPrefix(cfg.Warnings[i], want) {
			t.Errorf("Warnings[%d] = %q, want it to start with %q", i, cfg.Warnings[i], want)
		}
	}
	if v := cfg.Values()["nsk.profile"]; v.Note == "" {
		t.Errorf("nsk.profile has no note: %+v", v)
	}
}

func TestSecretRedacted(t *testing.T) {
	const token = "s3cr3t-rancher-token"
	cfg, _, err := load(t, "[nsk]\nrancher_token = \"${TOKEN}\"\n", map[string]string{"TOKEN": token})
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Values()["clusters.rancher_token"].Value; got != "<redacted>" {
		t.Errorf("Values: clusters.rancher_token = %q, want <redacted>", got)
	}
	var js, tm bytes.Buffer
	if err := cfg.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	if err := cfg.WriteTOML(&tm); err != nil {
		t.Fatal(err)
	}
	for name, out := range map[string]string{"JSON": js.String(), "TOML": tm.String(), "warnings": strings.Join(cfg.Warnings, "\n")} {
		if strings.Contains(out, token) {
			t.Errorf("%s output contains the token:\n%s", name, out)
		}
	}
	var decoded struct{ Values map[string]Value }
	if err := json.Unmarshal(js.Bytes(), &decoded); err != nil {
		t.Fatal(err)
	}
	if got := decoded.Values["clusters.rancher_token"].Value; got != "<redacted>" {
		t.Errorf("JSON: clusters.rancher_token = %q, want <redacted>", got)
	}
	if !strings.Contains(tm.String(), `# rancher_token = <redacted>`) {
		t.Errorf("TOML does not show the token as <redacted>:\n%s", tm.String())
	}
	// An unset secret shows as empty, so an operator can tell it is missing.
	cfg, _, err = load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Values()["clusters.rancher_token"].Value; got != "" {
		t.Errorf("unset clusters.rancher_token = %q, want empty", got)
	}
}

func TestWriteTOMLRoundTrip(t *testing.T) {
	file := `
[plugins]
enabled = false
blocked_plugins = ["legacy_*"]
allow_any_plugin = true
plugin_paths = ["/opt/plugins", "~/bin"]
kubectl_path = "/usr/bin/kubectl"

[plugins.cluster_plugins]
"c1-sv5" = ["cnpg", "rook_ceph"]
"odd \"name\"\\" = ["get_all"]

[nsk]
kubeconfig_dir = "/etc/kubernetes/clusters"
default_cluster = "c1-sv5"

[log]
level = "debug"
`
	env := map[string]string{"PLUGINS_MAX_CONCURRENT": "9", "PLUGINS_REFRESH_INTERVAL": "90s", "KUBECONFIG": "/tmp/kc"}
	first, _, err := load(t, file, env, "--plugins-timeout=1m30s", "--plugins-allowed=get_*,neat", "--port=8080", "--log-format=json")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := first.WriteTOML(&out); err != nil {
		t.Fatal(err)
	}
	// Reload with nothing else set, so every used value must come from the file.
	second, path, err := load(t, out.String(), nil)
	if err != nil {
		t.Fatalf("written TOML does not load: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(first.Plugins, second.Plugins) || first.Clusters != second.Clusters ||
		first.Server != second.Server || first.Log != second.Log {
		t.Errorf("round trip changed the configuration:\nfirst  %+v\nsecond %+v\nTOML:\n%s", first, second, out.String())
	}
	if len(second.Warnings) != 0 {
		t.Errorf("written TOML warns on reload: %v", second.Warnings)
	}
	for key, v := range second.Values() {
		// Unused [nsk] keys left at their defaults are not written.
		if lookupSetting(key).unused != "" {
			continue
		}
		if v.Source != SourceFile || !strings.HasPrefix(v.Origin, path+":") {
			t.Errorf("%s = %+v after the round trip, want it from a line of %s", key, v, path)
		}
	}
}

func TestWriteJSON(t *testing.T) {
	cfg, path, err := load(t, "[plugins]\nexecution_timeout = \"30s\"\n", nil, "--plugins-timeout", "60s")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := cfg.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var got struct {
		ConfigFile string `json:"config_file"`
		Values     map[string]struct {
			Value  any    `json:"value"`
			Source string `json:"source"`
			Origin string `json:"origin"`
		} `json:"values"`
	}
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if got.ConfigFile != path {
		t.Errorf("config_file = %q, want %q", got.ConfigFile, path)
	}
	v := got.Values["plugins.execution_timeout"]
	if v.Value != "60s" || v.Source != "flag" || v.Origin != "--plugins-timeout" {
		t.Errorf("values[plugins.execution_timeout] = %+v, want 60s from flag --plugins-timeout", v)
	}
	if len(got.Values) != len(Keys()) {
		t.Errorf("JSON has %d values, want one per key (%d)", len(got.Values), len(Keys()))
	}
}

// exampleDir holds the configurations the documentation points operators to;
// they must keep loading as the settings table changes.
var exampleDir = filepath.Join("..", "examples", "config")

func TestExamples(t *testing.T) {
	h := home(t)
	tests := map[string]func(t *testing.T, c *Config){
		"basic.toml": func(t *testing.T, c *Config) {
			p := c.Plugins
			check(t, "Enabled", p.Enabled, true)
			check(t, "AutoDiscovery", p.AutoDiscovery, true)
			check(t, "RefreshInterval", p.RefreshInterval, 5*time.Minute)
			check(t, "ExecutionTimeout", p.ExecutionTimeout, 30*time.Second)
			check(t, "MaxConcurrent", p.MaxConcurrent, 3)
			check(t, "AllowAnyPlugin", p.AllowAnyPlugin, false)
			check(t, "AllowedPlugins", p.AllowedPlugins, []string{"evict", "get_all", "cnpg", "rook_ceph", "csi_scan"})
			check(t, "BlockedPlugins", p.BlockedPlugins, []string{"dangerous_plugin", "legacy_tool"})
			check(t, "PluginPaths", p.PluginPaths, []string{"/usr/local/bin", filepath.Join(h, ".krew/bin"), filepath.Join(h, "go/bin")})
			check(t, "source of execution_timeout", c.Values()["plugins.execution_timeout"].Source, SourceFile)
		},
		"production.toml": func(t *testing.T, c *Config) {
			p := c.Plugins
			check(t, "AutoDiscovery", p.AutoDiscovery, false)
			check(t, "AllowAnyPlugin", p.AllowAnyPlugin, false)
			check(t, "ExecutionTimeout", p.ExecutionTimeout, time.Minute)
			v := c.Values()["plugins.execution_timeout"]
			check(t, "execution_timeout", v.Value, any("60s"))
			check(t, "source of execution_timeout", v.Source, SourceFile)
			check(t, "AllowedPlugins", p.AllowedPlugins, []string{"get_all", "cnpg", "rook_ceph"})
			check(t, "ClusterPlugins", p.ClusterPlugins, map[string][]string{
				"c1-sv5":  {"cnpg", "rook_ceph"},
				"c1-dfw1": {"get_all", "evict"},
			})
		},
		"development.toml": func(t *testing.T, c *Config) {
			p := c.Plugins
			check(t, "AllowAnyPlugin", p.AllowAnyPlugin, true)
			check(t, "AutoDiscovery", p.AutoDiscovery, true)
			check(t, "ExecutionTimeout", p.ExecutionTimeout, 5*time.Minute)
			check(t, "RefreshInterval", p.RefreshInterval, time.Minute)
			check(t, "BlockedPlugins", p.BlockedPlugins, []string{"kubectl-delete_everything"})
		},
	}
	for name, verify := range tests {
		t.Run(name, func(t *testing.T) {
			cfg, err := Load(Options{File: filepath.Join(exampleDir, name), LookupEnv: lookup(nil)})
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Warnings) != 0 {
				t.Errorf("Warnings = %q, want none", cfg.Warnings)
			}
			verify(t, cfg)
		})
	}
	// A new example without a test here would go unchecked.
	files, err := filepath.Glob(filepath.Join(exampleDir, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if name := filepath.Base(f); tests[name] == nil && name != "configmap.yaml" {
			t.Errorf("example %s is not tested", f)
		}
	}
}

func TestExampleConfigMap(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(exampleDir, "configmap.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		APIVersion string                `json:"apiVersion"`
		Kind       string                `json:"kind"`
		Metadata   struct{ Name string } `json:"metadata"`
		Data       map[string]string     `json:"data"`
	}
	if err := yaml.UnmarshalStrict(data, &cm); err != nil {
		t.Fatal(err)
	}
	if cm.Kind != "ConfigMap" || cm.Metadata.Name != "mcp-config-plugins" {
		t.Errorf("kind %q name %q, want ConfigMap mcp-config-plugins", cm.Kind, cm.Metadata.Name)
	}
	const token = "prod-token-value"
	cfg, path, err := load(t, cm.Data["config.toml"], map[string]string{"PROD_RANCHER_TOKEN": token})
	if err != nil {
		t.Fatal(err)
	}
	check(t, "KubeconfigDir", cfg.Clusters.KubeconfigDir, "/etc/kubernetes/clusters")
	check(t, "DefaultCluster", cfg.Clusters.DefaultCluster, "c1-sv5")
	check(t, "kubeconfig_dir origin", cfg.Values()["clusters.kubeconfig_dir"].Origin, path+":9 (nsk.kubeconfig_dir)")
	check(t, "ExecutionTimeout", cfg.Plugins.ExecutionTimeout, time.Minute)
	check(t, "AllowedPlugins", cfg.Plugins.AllowedPlugins, []string{"get_all", "cnpg", "rook_ceph", "neat", "ctx", "ns"})
	check(t, "PluginPaths", cfg.Plugins.PluginPaths, []string{"/usr/local/bin", "/home/mcp/.krew/bin"})
	check(t, "rancher_token", cfg.Values()["clusters.rancher_token"].Value, any("<redacted>"))
	check(t, "RancherURL", cfg.Clusters.RancherURL, "https://rancher.netskope.io")
	check(t, "RancherToken", cfg.Clusters.RancherToken, token)
	check(t, "ConfigDir", cfg.Clusters.ConfigDir, "/etc/kubernetes/clusters")
	check(t, "AutoRefresh", cfg.Clusters.AutoRefresh, true)
	check(t, "RefreshInterval", cfg.Clusters.RefreshInterval, time.Hour)
	// Only profile and auto_discovery of [nsk] are accepted yet unused.
	if len(cfg.Warnings) != 2 || !strings.HasPrefix(cfg.Warnings[0], "nsk.profile") || !strings.HasPrefix(cfg.Warnings[1], "nsk.auto_discovery") {
		t.Errorf("Warnings = %q, want nsk.profile and nsk.auto_discovery", cfg.Warnings)
	}
	// Without the variable the server must refuse to start, not use "".
	if _, _, err := load(t, cm.Data["config.toml"], nil); err == nil || !strings.Contains(err.Error(), "PROD_RANCHER_TOKEN") {
		t.Errorf("Load without PROD_RANCHER_TOKEN: %v, want an error naming it", err)
	}
}

func check[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func TestDollarEscapes(t *testing.T) {
	env := map[string]string{"TOKEN": "t0k"}
	cfg, _, err := load(t, "[nsk]\nrancher_url = \"a$$b-${TOKEN}-$TOKEN.x\"\n[plugins]\nkubectl_path = \"/opt/$$kubectl\"\n", env)
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Values()["clusters.rancher_url"].Value; got != "a$b-t0k-t0k.x" {
		t.Errorf("rancher_url = %q", got)
	}
	// The written file keeps the literal $ literal when it loads again.
	var out bytes.Buffer
	cfg.WriteTOML(&out)
	again, _, err := load(t, out.String(), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if again.Plugins.KubectlPath != "/opt/$kubectl" {
		t.Errorf("kubectl_path after the round trip = %q", again.Plugins.KubectlPath)
	}
}

func TestMisspeltTableIsSuggested(t *testing.T) {
	_, _, err := load(t, "[plugin]\nenabled = true\n", nil)
	if err == nil || !strings.Contains(err.Error(), "did you mean plugins?") {
		t.Fatalf("err = %v", err)
	}
}

func TestListItemsAreTrimmedFromEverySource(t *testing.T) {
	cfg, _, err := load(t, "", map[string]string{"PLUGINS_ENABLED": " false "}, "--plugins-allowed=a, b,,c")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(cfg.Plugins.AllowedPlugins, []string{"a", "b", "c"}) || cfg.Plugins.Enabled {
		t.Errorf("allowed = %q, enabled = %v", cfg.Plugins.AllowedPlugins, cfg.Plugins.Enabled)
	}
}

var (
	pinA = "sha256:" + strings.Repeat("a", 64)
	pinB = "sha256:" + strings.Repeat("0123456789abcdef", 4)
)

func TestPins(t *testing.T) {
	cfg, path, err := load(t, "[plugins.pins]\nevict = \""+pinA+"\"\n\"get_all\" = \"${PIN}\"\n", map[string]string{"PIN": pinB})
	if err != nil {
		t.Fatal(err)
	}
	check(t, "Pins", cfg.Plugins.Pins, map[string]string{"evict": pinA, "get_all": pinB})
	v := cfg.Values()["plugins.pins"]
	check(t, "source", v.Source, SourceFile)
	check(t, "origin", v.Origin, path+":1")

	// Pins are file only: no environment variable or flag, and none by default.
	cfg, _, err = load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "default Pins", cfg.Plugins.Pins, map[string]string{})
}

func TestDestructivePatterns(t *testing.T) {
	cfg, _, err := load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "default", cfg.Plugins.DestructivePatterns,
		[]string{"*delete*", "*remove*", "*destroy*", "*evict*", "*drain*", "*cordon*", "*terminate*"})

	cfg, path, err := load(t, "[plugins]\ndestructive_patterns = [\"*scale*\", \"kubectl-purge\"]\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "from file", cfg.Plugins.DestructivePatterns, []string{"*scale*", "kubectl-purge"})
	check(t, "origin", cfg.Values()["plugins.destructive_patterns"].Origin, path+":2")

	// An operator who lists none means none; nil would read as the default.
	cfg, _, err = load(t, "[plugins]\ndestructive_patterns = []\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	if p := cfg.Plugins.DestructivePatterns; p == nil || len(p) != 0 {
		t.Errorf("DestructivePatterns = %#v, want a non-nil empty list", p)
	}
}

func TestWriteTOMLRoundTripPins(t *testing.T) {
	file := `
[plugins]
destructive_patterns = []

[plugins.cluster_plugins]
"c1-sv5" = ["cnpg"]

[plugins.pins]
evict = "` + pinA + `"
"odd \"name\"" = "` + pinB + `"
`
	first, _, err := load(t, file, map[string]string{"PLUGINS_READ_ONLY": "true"})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := first.WriteTOML(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\n[plugins.pins] # file ") {
		t.Errorf("no [plugins.pins] table in:\n%s", out.String())
	}
	second, _, err := load(t, out.String(), nil)
	if err != nil {
		t.Fatalf("written TOML does not load: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(first.Plugins, second.Plugins) {
		t.Errorf("round trip changed the plugins:\nfirst  %+v\nsecond %+v\nTOML:\n%s", first.Plugins, second.Plugins, out.String())
	}
	check(t, "ReadOnly", second.Plugins.ReadOnly, true)
	check(t, "Pins", second.Plugins.Pins, map[string]string{"evict": pinA, `odd "name"`: pinB})
}

const rulesFile = `[plugins]
allowed_plugins = ["evict"]

[[plugins.rules]]
name = "evictions"
plugins = ["evict", "drain*"]
clusters = ["staging-*"]
verbs = ["create"]
resources = ["pods/eviction"]

[[plugins.rules]]
plugins = ["${PLUGIN}"]
verbs = ["get", "list"]
resources = ["secrets", "deployments.apps/scale", "*"]
namespaces = ["team-a", ""]

[plugins.pins]
evict = "` + "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + `"
`

func TestRules(t *testing.T) {
	cfg, path, err := load(t, rulesFile, map[string]string{"PLUGIN": "get_all"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Rule{
		{Name: "evictions", Plugins: []string{"evict", "drain*"}, Clusters: []string{"staging-*"}, Verbs: []string{"create"},
			Resources: []string{"pods/eviction"}, Namespaces: []string{"*"}},
		{Plugins: []string{"get_all"}, Clusters: []string{"*"}, Verbs: []string{"get", "list"},
			Resources: []string{"secrets", "deployments.apps/scale", "*"}, Namespaces: []string{"team-a", ""}},
	}
	check(t, "Rules", cfg.Plugins.Rules, want)
	v := cfg.Values()["plugins.rules"]
	check(t, "source", v.Source, SourceFile)
	check(t, "origin", v.Origin, path+":4")
	check(t, "value", v.Value, any(want))
	check(t, "Pins still load after the rules", cfg.Plugins.Pins["evict"], pinA)

	// The typed rules are a copy: changing them changes no Value.
	cfg.Plugins.Rules[0].Verbs[0] = "delete"
	check(t, "value after a change", cfg.Values()["plugins.rules"].Value.([]Rule)[0].Verbs[0], "create")

	// None by default, and only the file can set them.
	cfg, _, err = load(t, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "default Rules", cfg.Plugins.Rules, []Rule(nil))
	check(t, "default value", cfg.Values()["plugins.rules"].Value, any([]Rule{}))
}

// Rules may also be written inline, as an array of inline tables.
func TestRulesInline(t *testing.T) {
	cfg, path, err := load(t, "[plugins]\nrules = [\n  { plugins = [\"a\"], verbs = [\"*\"], resources = [\"*\"] },\n]\n", nil)
	if err != nil {
		t.Fatal(err)
	}
	check(t, "Rules", cfg.Plugins.Rules, []Rule{{Plugins: []string{"a"}, Clusters: []string{"*"}, Verbs: []string{"*"},
		Resources: []string{"*"}, Namespaces: []string{"*"}}})
	check(t, "origin", cfg.Values()["plugins.rules"].Origin, path+":2")
}

func TestRulesErrors(t *testing.T) {
	const head = "[plugins]\nenabled = true\n\n[[plugins.rules]]\n" // the entry opens on line 4
	const ok = "plugins = [\"a\"]\nverbs = [\"get\"]\nresources = [\"pods\"]\n"
	tests := []struct {
		name    string
		file    string
		want    []string // FILE stands for the file's path
		ordered bool
	}{
		{name: "unknown key", file: head + ok + "verb = [\"get\"]\n",
			want: []string{"FILE:8: plugins.rules[0].verb: unknown key (did you mean verbs?)"}},
		{name: "unknown key far from any", file: head + ok + "apiGroups = [\"apps\"]\n",
			want: []string{"FILE:8: plugins.rules[0].apiGroups: unknown key (want name, plugins, clusters, verbs, resources, namespaces)"}},
		{name: "sub-table", file: head + ok + "[plugins.rules.extra]\nx = 1\n",
			want: []string{"FILE:8: plugins.rules[0].extra: unknown key"}},
		{name: "string for list", file: head + "plugins = [\"a\"]\nverbs = \"get\"\nresources = [\"pods\"]\n",
			want: []string{"FILE:6: plugins.rules[0].verbs: want a list of strings, got a string"}},
		{name: "number in list", file: head + "plugins = [\"a\", 1]\nverbs = [\"get\"]\nresources = [\"pods\"]\n",
			want: []string{"FILE:5: plugins.rules[0].plugins: want a list of strings, got an array"}},
		{name: "name not a string", file: head + ok + "name = 1\n",
			want: []string{"FILE:8: plugins.rules[0].name: want a string, got an integer"}},
		{name: "empty plugins", file: head + "plugins = []\nverbs = [\"get\"]\nresources = [\"pods\"]\n",
			want: []string{"FILE:5: plugins.rules[0].plugins: empty list; name the plugins"}},
		{name: "empty verbs", file: head + "plugins = [\"a\"]\nverbs = []\nresources = [\"pods\"]\n",
			want: []string{"FILE:6: plugins.rules[0].verbs: empty list"}},
		{name: "empty resources", file: head + "plugins = [\"a\"]\nverbs = [\"get\"]\nresources = []\n",
			want: []string{"FILE:7: plugins.rules[0].resources: empty list"}},
		{name: "empty clusters", file: head + ok + "clusters = []\n",
			want: []string{"FILE:8: plugins.rules[0].clusters: empty list; leave clusters out"}},
		{name: "empty namespaces", file: head + ok + "namespaces = []\n",
			want: []string{"FILE:8: plugins.rules[0].namespaces: empty list; leave namespaces out"}},
		{name: "missing plugins, verbs and resources", file: head + "name = \"x\"\n",
			want:    []string{"FILE:4: plugins.rules[0].plugins: missing", "FILE:4: plugins.rules[0].verbs: missing", "FILE:4: plugins.rules[0].resources: missing"},
			ordered: true},
		{name: "unknown verb", file: head + "plugins = [\"a\"]\nverbs = [\"get\", \"destroy\"]\nresources = [\"pods\"]\n",
			want: []string{"FILE:6: plugins.rules[0].verbs: unknown verb \"destroy\""}},
		{name: "exec as a verb", file: head + "plugins = [\"a\"]\nverbs = [\"exec\"]\nresources = [\"pods\"]\n",
			want: []string{`resources = ["pods/exec"]`}},
		{name: "short resource name", file: head + "plugins = [\"a\"]\nverbs = [\"get\"]\nresources = [\"po\"]\n",
			want: []string{"FILE:7: plugins.rules[0].resources: resource \"po\"", `"pods"`}},
		{name: "group first", file: head + "plugins = [\"a\"]\nverbs = [\"get\"]\nresources = [\"apps/deployments\"]\n",
			want: []string{"FILE:7: plugins.rules[0].resources:", `"deployments.apps"`}},
		{name: "bad plugin glob", file: head + "plugins = [\"[x\"]\nverbs = [\"get\"]\nresources = [\"pods\"]\n",
			want: []string{"FILE:5: plugins.rules[0].plugins: bad pattern \"[x\""}},
		{name: "bad cluster glob", file: head + ok + "clusters = [\"[x\"]\n",
			want: []string{"FILE:8: plugins.rules[0].clusters: bad pattern \"[x\""}},
		{name: "empty cluster", file: head + ok + "clusters = [\"\"]\n",
			want: []string{"FILE:8: plugins.rules[0].clusters: empty cluster name"}},
		{name: "bad namespace glob", file: head + ok + "namespaces = [\"team-[\"]\n",
			want: []string{"FILE:8: plugins.rules[0].namespaces: bad pattern"}},
		{name: "reserved name", file: head + ok + "name = \"default_deny\"\n",
			want: []string{"FILE:8: plugins.rules[0].name: name \"default_deny\" is reserved"}},
		{name: "empty name", file: head + ok + "name = \"\"\n",
			want: []string{"FILE:8: plugins.rules[0].name: empty name"}},
		{name: "duplicate name", file: head + ok + "name = \"x\"\n\n[[plugins.rules]]\n" + ok + "name = \"x\"\n",
			want: []string{"FILE:14: plugins.rules[1].name: \"x\" is also the name of plugins.rules[0]"}},
		{name: "unset variable", file: head + "plugins = [\"${NO_SUCH_PLUGIN}\"]\nverbs = [\"get\"]\nresources = [\"pods\"]\n",
			want: []string{"FILE:5: plugins.rules[0].plugins: environment variable NO_SUCH_PLUGIN is not set"}},
		{name: "a table, not a list of tables", file: "[plugins.rules]\nplugins = [\"a\"]\n",
			want: []string{"FILE:1: plugins.rules: want a list of tables, written [[plugins.rules]], got a table"}},
		{name: "a list of strings", file: "[plugins]\nrules = [\"a\"]\n",
			want: []string{"FILE:2: plugins.rules[0]: want a table, got a string"}},
		{name: "inline entry", file: "[plugins]\nrules = [\n  { plugins = [\"a\"], verbs = [\"get\"], resources = [\"pods\"] },\n  { plugins = [\"a\"],\n verbs = [\"x\"], resources = [\"pods\"] },\n]\n",
			want: []string{"FILE:5: plugins.rules[1].verbs: unknown verb \"x\""}},
		{name: "errors in several entries, in file order",
			file: head + "plugins = [\"a\"]\nverbs = [\"destroy\"]\nresources = [\"pods\"]\n\n[[plugins.rules]]\n" +
				"plugins = [\"a\"]\nverbs = [\"get\"]\nresources = [\"pod\"]\n\n[log]\nformat = \"xml\"\n",
			want: []string{
				"FILE:6: plugins.rules[0].verbs",
				"FILE:12: plugins.rules[1].resources",
				"FILE:15: log.format",
			}, ordered: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, path, err := load(t, tt.file, nil)
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if cfg != nil {
				t.Error("Load returned a configuration along with its error")
			}
			assertErrorSays(t, err, path, tt.want, tt.ordered)
		})
	}
}

func TestWriteTOMLRoundTripRules(t *testing.T) {
	file := rulesFile + `
[[plugins.rules]]
name = "odd \"name\" $$x"
plugins = ["*"]
verbs = ["*"]
resources = ["*/scale"]
`
	first, _, err := load(t, file, map[string]string{"PLUGIN": "get_all", "PLUGINS_READ_ONLY": "true"}, "--plugins-allowed=neat")
	if err != nil {
		t.Fatal(err)
	}
	check(t, "third rule's name", first.Plugins.Rules[2].Name, `odd "name" $x`)
	var out bytes.Buffer
	if err := first.WriteTOML(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "\n[[plugins.rules]] # plugins.rules[0]; file ") {
		t.Errorf("no [[plugins.rules]] in:\n%s", out.String())
	}
	second, path, err := load(t, out.String(), nil)
	if err != nil {
		t.Fatalf("written TOML does not load: %v\n%s", err, out.String())
	}
	if !reflect.DeepEqual(first.Plugins, second.Plugins) {
		t.Errorf("round trip changed the plugins:\nfirst  %+v\nsecond %+v\nTOML:\n%s", first.Plugins, second.Plugins, out.String())
	}
	for key, v := range second.Values() {
		if lookupSetting(key).unused != "" {
			continue
		}
		if v.Source != SourceFile || !strings.HasPrefix(v.Origin, path+":") {
			t.Errorf("%s = %+v after the round trip, want it from a line of %s", key, v, path)
		}
	}

	// JSON shows the rules as data, with the defaults filled in.
	var js bytes.Buffer
	if err := first.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Values map[string]struct {
			Value json.RawMessage `json:"value"`
		} `json:"values"`
	}
	var rules []map[string]any
	if err := json.Unmarshal(js.Bytes(), &got); err != nil {
		t.Fatalf("%v\n%s", err, js.String())
	}
	if err := json.Unmarshal(got.Values["plugins.rules"].Value, &rules); err != nil {
		t.Fatalf("%v\n%s", err, js.String())
	}
	if len(rules) != 3 || rules[0]["name"] != "evictions" || rules[1]["name"] != nil ||
		!reflect.DeepEqual(rules[0]["namespaces"], []any{"*"}) || !reflect.DeepEqual(rules[1]["verbs"], []any{"get", "list"}) {
		t.Errorf("JSON rules = %v", rules)
	}
}

func TestKeyLines(t *testing.T) {
	doc := `[plugins]
enabled = true

[[plugins.rules]]
plugins = ["a"]

[[plugins.rules]]
verbs = ["get"]
[plugins.rules.sub]
x = 1

[other]
list = [
  { a = 1 },
  {
    b = 2 },
]
`
	want := map[string]int{
		"plugins": 1, "plugins.enabled": 2,
		"plugins.rules": 4, "plugins.rules[0]": 4, "plugins.rules[0].plugins": 5,
		"plugins.rules[1]": 7, "plugins.rules[1].verbs": 8,
		"plugins.rules[1].sub": 9, "plugins.rules[1].sub.x": 10,
		"other": 12, "other.list": 13, "other.list[0]": 14, "other.list[0].a": 14,
		"other.list[1]": 15, "other.list[1].b": 16,
	}
	check(t, "keyLines", keyLines([]byte(doc)), want)
}

// assertErrorSays checks that err names each of want (FILE stands for the
// config file's path), in that order when ordered.
func assertErrorSays(t *testing.T, err error, path string, want []string, ordered bool) {
	t.Helper()
	msg := err.Error()
	last := -1
	for _, w := range want {
		w = strings.ReplaceAll(w, "FILE", path)
		i := strings.Index(msg, w)
		if i < 0 {
			t.Errorf("error %q does not contain %q", msg, w)
			continue
		}
		if ordered && i < last {
			t.Errorf("error %q: %q is out of order", msg, w)
		}
		last = i
	}
}

// The Rancher keys load from [nsk] or [clusters]; PLUGINS_RANCHER_TOKEN
// beats the file's token and is redacted like it.
func TestRancherKeys(t *testing.T) {
	file := "[nsk]\nrancher_url = \"https://rancher.example\"\nrancher_token = \"from-file\"\nconfig_dir = \"~/rancher\"\nrefresh_interval = \"1m\"\n"
	cfg, _, err := load(t, file, map[string]string{"PLUGINS_RANCHER_TOKEN": "from-env-token"})
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Clusters
	check(t, "RancherToken", c.RancherToken, "from-env-token")
	check(t, "ConfigDir", c.ConfigDir, filepath.Join(home(t), "rancher"))
	check(t, "RefreshInterval", c.RefreshInterval, time.Minute)
	check(t, "AutoRefresh", c.AutoRefresh, true)
	v := cfg.Values()["clusters.rancher_token"]
	check(t, "token value", v, Value{Value: "<redacted>", Source: SourceEnv, Origin: "PLUGINS_RANCHER_TOKEN"})
	if len(cfg.Warnings) != 0 {
		t.Errorf("Warnings = %q", cfg.Warnings)
	}
	cfg, _, err = load(t, "", map[string]string{"PLUGINS_RANCHER_TOKEN_FILE": "/run/secrets/rancher"})
	if err != nil {
		t.Fatal(err)
	}
	check(t, "RancherTokenFile", cfg.Clusters.RancherTokenFile, "/run/secrets/rancher")
	if _, _, err := load(t, "[clusters]\nrefresh_interval = \"0s\"\n", nil); err == nil || !strings.Contains(err.Error(), "clusters.refresh_interval") {
		t.Errorf("refresh_interval 0s: %v", err)
	}
}
