package policy

import (
	"errors"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
)

var (
	digestA = strings.Repeat("a", 64)
	digestB = strings.Repeat("0123456789abcdef", 4)
)

func TestDecide(t *testing.T) {
	tests := []struct {
		name    string
		rules   Rules
		plugin  Plugin
		cluster string
		allowed bool
		rule    string
		destr   bool
		reason  []string // substrings of Reason
	}{
		// blocked_plugins
		{name: "blocked beats allowed",
			rules:  Rules{Allowed: []string{"evict"}, Blocked: []string{"evi*"}},
			plugin: Plugin{Name: "evict"}, rule: "blocked_plugins[0]", destr: true,
			reason: []string{`plugin "evict" is blocked by blocked_plugins pattern "evi*"`}},
		{name: "blocked beats allow_any",
			rules:  Rules{AllowAny: true, Blocked: []string{"neat", "legacy-*"}},
			plugin: Plugin{Name: "legacy-tool"}, rule: "blocked_plugins[1]",
			reason: []string{`"legacy-*"`}},
		{name: "blocked beats a matching pin",
			rules:  Rules{AllowAny: true, Blocked: []string{"neat"}, Pins: map[string]string{"neat": "sha256:" + digestA}},
			plugin: Plugin{Name: "neat", SHA256: digestA}, rule: "blocked_plugins[0]"},
		{name: "kubectl- prefix in a blocked pattern",
			rules:  Rules{AllowAny: true, Blocked: []string{"kubectl-delete_everything"}},
			plugin: Plugin{Name: "delete-everything"}, rule: "blocked_plugins[0]", destr: true,
			reason: []string{`"kubectl-delete_everything"`}},
		{name: "kubectl- prefix in the plugin name",
			rules:  Rules{AllowAny: true, Blocked: []string{"delete-everything"}},
			plugin: Plugin{Name: "kubectl-delete_everything"}, rule: "blocked_plugins[0]", destr: true,
			reason: []string{`plugin "kubectl-delete_everything"`}},
		{name: "underscore pattern blocks dash name",
			rules:  Rules{AllowAny: true, Blocked: []string{"get_all"}},
			plugin: Plugin{Name: "get-all"}, rule: "blocked_plugins[0]"},
		{name: "dash pattern blocks underscore name",
			rules:  Rules{AllowAny: true, Blocked: []string{"get-all"}},
			plugin: Plugin{Name: "get_all"}, rule: "blocked_plugins[0]"},
		{name: "glob spans a nested name",
			rules:  Rules{AllowAny: true, Blocked: []string{"cnpg-*"}},
			plugin: Plugin{Name: "cnpg_status"}, rule: "blocked_plugins[0]"},
		{name: "blocked glob that does not match",
			rules:  Rules{AllowAny: true, Blocked: []string{"cnpg-*"}},
			plugin: Plugin{Name: "cnpg"}, allowed: true, rule: "allow_any_plugin"},

		// allow_any_plugin and allowed_plugins
		{name: "allow_any",
			rules:  Rules{AllowAny: true},
			plugin: Plugin{Name: "whatever"}, allowed: true, rule: "allow_any_plugin",
			reason: []string{`plugin "whatever" is allowed by allow_any_plugin`}},
		{name: "allow_any decides before allowed_plugins",
			rules:  Rules{AllowAny: true, Allowed: []string{"neat"}},
			plugin: Plugin{Name: "neat"}, allowed: true, rule: "allow_any_plugin"},
		{name: "first matching allowed pattern decides",
			rules:  Rules{Allowed: []string{"neat", "ctx", "get*", "get_all"}},
			plugin: Plugin{Name: "get_all"}, allowed: true, rule: "allowed_plugins[2]",
			reason: []string{`plugin "get_all" is allowed by allowed_plugins pattern "get*"`}},
		{name: "allowed with kubectl- prefix and underscore",
			rules:  Rules{Allowed: []string{"kubectl-rook_ceph"}},
			plugin: Plugin{Name: "rook-ceph"}, allowed: true, rule: "allowed_plugins[0]"},
		{name: "allowed glob with a class",
			rules:  Rules{Allowed: []string{"n[es]*"}},
			plugin: Plugin{Name: "ns"}, allowed: true, rule: "allowed_plugins[0]"},
		{name: "default deny says how to allow",
			rules:  Rules{Allowed: []string{"neat"}},
			plugin: Plugin{Name: "ctx"}, rule: "default_deny",
			reason: []string{`plugin "ctx"`, "allowed_plugins", "allow_any_plugin"}},
		{name: "no rules at all deny",
			plugin: Plugin{Name: "ctx"}, rule: "default_deny"},
		{name: "an empty name is no plugin",
			rules:  Rules{AllowAny: true},
			plugin: Plugin{Name: "kubectl-"}, rule: "default_deny"},

		// cluster_plugins
		{name: "listed cluster restricts",
			rules:  Rules{AllowAny: true, ClusterPlugins: map[string][]string{"c1-sv5": {"cnpg", "rook_ceph"}}},
			plugin: Plugin{Name: "evict"}, cluster: "c1-sv5", rule: "cluster_plugins.c1-sv5", destr: true,
			reason: []string{`plugin "evict" may not run on cluster "c1-sv5"`, `only "cnpg", "rook_ceph"`}},
		{name: "listed cluster lets its plugins through to allowed_plugins",
			rules:  Rules{Allowed: []string{"rook*"}, ClusterPlugins: map[string][]string{"c1-sv5": {"cnpg", "rook_ceph"}}},
			plugin: Plugin{Name: "kubectl-rook-ceph"}, cluster: "c1-sv5",
			allowed: true, rule: "allowed_plugins[0]"},
		{name: "listed cluster does not allow by itself",
			rules:  Rules{ClusterPlugins: map[string][]string{"c1-sv5": {"cnpg"}}},
			plugin: Plugin{Name: "cnpg"}, cluster: "c1-sv5", rule: "default_deny"},
		{name: "cluster listed with no plugins allows none",
			rules:  Rules{AllowAny: true, ClusterPlugins: map[string][]string{"frozen": {}}},
			plugin: Plugin{Name: "ctx"}, cluster: "frozen", rule: "cluster_plugins.frozen",
			reason: []string{"allows no plugin"}},
		{name: "unlisted cluster is unrestricted",
			rules:  Rules{AllowAny: true, ClusterPlugins: map[string][]string{"c1-sv5": {"cnpg"}}},
			plugin: Plugin{Name: "ctx"}, cluster: "c1-dfw1", allowed: true, rule: "allow_any_plugin"},
		{name: "no cluster is unrestricted",
			rules:  Rules{AllowAny: true, ClusterPlugins: map[string][]string{"c1-sv5": {"cnpg"}}},
			plugin: Plugin{Name: "ctx"}, allowed: true, rule: "allow_any_plugin"},

		// destructive and read_only
		{name: "destructive is reported on an allowed plugin",
			rules:  Rules{AllowAny: true},
			plugin: Plugin{Name: "node_drain"}, allowed: true, rule: "allow_any_plugin", destr: true},
		{name: "read_only denies a destructive plugin",
			rules:  Rules{AllowAny: true, ReadOnly: true},
			plugin: Plugin{Name: "evict"}, rule: "read_only", destr: true,
			reason: []string{`plugin "evict" is destructive`, `"*evict*"`, "read_only"}},
		{name: "read_only allows a non-destructive plugin",
			rules:  Rules{AllowAny: true, ReadOnly: true},
			plugin: Plugin{Name: "get_all"}, allowed: true, rule: "allow_any_plugin"},
		{name: "read_only decides before cluster_plugins",
			rules:  Rules{AllowAny: true, ReadOnly: true, ClusterPlugins: map[string][]string{"c1": {"cnpg"}}},
			plugin: Plugin{Name: "cordon"}, cluster: "c1", rule: "read_only", destr: true},
		{name: "read_only with custom patterns",
			rules:  Rules{AllowAny: true, ReadOnly: true, Destructive: []string{"kubectl-scale_*"}},
			plugin: Plugin{Name: "scale-down"}, rule: "read_only", destr: true,
			reason: []string{`"kubectl-scale_*"`}},
		{name: "custom patterns replace the defaults",
			rules:  Rules{AllowAny: true, ReadOnly: true, Destructive: []string{"*scale*"}},
			plugin: Plugin{Name: "evict"}, allowed: true, rule: "allow_any_plugin"},
		{name: "explicitly no destructive patterns",
			rules:  Rules{AllowAny: true, ReadOnly: true, Destructive: []string{}},
			plugin: Plugin{Name: "delete-everything"}, allowed: true, rule: "allow_any_plugin"},
		{name: "destructive is reported on a blocked plugin",
			rules:  Rules{Blocked: []string{"*"}},
			plugin: Plugin{Name: "drain"}, rule: "blocked_plugins[0]", destr: true},

		// pins
		{name: "matching pin leaves the decision to the other rules",
			rules:  Rules{Allowed: []string{"evict"}, Pins: map[string]string{"evict": "sha256:" + digestA}},
			plugin: Plugin{Name: "evict", SHA256: digestA}, allowed: true, rule: "allowed_plugins[0]", destr: true},
		{name: "matching pin does not allow by itself",
			rules:  Rules{Pins: map[string]string{"evict": "sha256:" + digestA}},
			plugin: Plugin{Name: "evict", SHA256: digestA}, rule: "default_deny", destr: true},
		{name: "matching pin, digest in upper case",
			rules:  Rules{AllowAny: true, Pins: map[string]string{"evict": "sha256:" + digestA}},
			plugin: Plugin{Name: "evict", SHA256: strings.ToUpper(digestA)}, allowed: true, rule: "allow_any_plugin", destr: true},
		{name: "pin mismatch denies with both digests",
			rules:  Rules{AllowAny: true, Pins: map[string]string{"evict": "sha256:" + digestA}},
			plugin: Plugin{Name: "evict", SHA256: digestB}, rule: "pins.evict", destr: true,
			reason: []string{"pinned to sha256:" + digestA, "file has sha256:" + digestB}},
		{name: "unknown digest denies",
			rules:  Rules{AllowAny: true, Pins: map[string]string{"evict": "sha256:" + digestA}},
			plugin: Plugin{Name: "evict"}, rule: "pins.evict", destr: true,
			reason: []string{"sha256:" + digestA, "unknown"}},
		{name: "pin key spelt the other way",
			rules:  Rules{AllowAny: true, Pins: map[string]string{"kubectl-get_all": "sha256:" + digestA}},
			plugin: Plugin{Name: "get-all", SHA256: digestB}, rule: "pins.kubectl-get_all"},
		{name: "pin decides before read_only and cluster_plugins",
			rules: Rules{AllowAny: true, ReadOnly: true, ClusterPlugins: map[string][]string{"c1": {}},
				Pins: map[string]string{"evict": "sha256:" + digestA}},
			plugin: Plugin{Name: "evict", SHA256: digestB}, cluster: "c1", rule: "pins.evict", destr: true},
		{name: "unpinned plugin needs no digest",
			rules:  Rules{AllowAny: true, Pins: map[string]string{"evict": "sha256:" + digestA}},
			plugin: Plugin{Name: "ctx"}, allowed: true, rule: "allow_any_plugin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.rules)
			if err != nil {
				t.Fatal(err)
			}
			d := p.Decide(tt.plugin, tt.cluster)
			if d.Allowed != tt.allowed || d.Rule != tt.rule || d.Destructive != tt.destr {
				t.Errorf("Decide(%+v, %q) = %+v, want allowed %v, rule %q, destructive %v",
					tt.plugin, tt.cluster, d, tt.allowed, tt.rule, tt.destr)
			}
			assertReason(t, d.Reason, tt.reason)
		})
	}
}

func TestIsDestructive(t *testing.T) {
	tests := []struct {
		patterns []string
		name     string
		want     bool
	}{
		{nil, "evict", true},
		{nil, "delete-everything", true},
		{nil, "kubectl-delete_everything", true},
		{nil, "node-drain", true},
		{nil, "cordon", true},
		{nil, "uncordon", true},
		{nil, "remove_finalizers", true},
		{nil, "pod-terminate", true},
		{nil, "destroy", true},
		{nil, "get-all", false},
		{nil, "neat", false},
		{[]string{"*scale*", "kubectl-purge"}, "scale-down", true},
		{[]string{"*scale*", "kubectl-purge"}, "purge", true},
		{[]string{"*scale*", "kubectl-purge"}, "evict", false},
		{[]string{}, "evict", false},
	}
	for _, tt := range tests {
		p, err := New(Rules{Destructive: tt.patterns})
		if err != nil {
			t.Fatal(err)
		}
		if got := p.IsDestructive(tt.name); got != tt.want {
			t.Errorf("patterns %q: IsDestructive(%q) = %v, want %v", tt.patterns, tt.name, got, tt.want)
		}
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name       string
		rules      Rules
		want       string
		badPattern bool
	}{
		{name: "bad blocked glob", rules: Rules{Blocked: []string{"ok", "[x"}},
			want: `blocked_plugins[1]: bad pattern "[x"`, badPattern: true},
		{name: "bad allowed glob", rules: Rules{Allowed: []string{"a\\"}},
			want: `allowed_plugins[0]: bad pattern "a\\"`, badPattern: true},
		{name: "bad destructive glob", rules: Rules{Destructive: []string{"*x", "[]"}},
			want: `destructive_patterns[1]: bad pattern "[]"`, badPattern: true},
		{name: "bad cluster glob", rules: Rules{ClusterPlugins: map[string][]string{"c1-sv5": {"[x"}}},
			want: `cluster_plugins.c1-sv5[0]: bad pattern "[x"`, badPattern: true},
		{name: "empty cluster name", rules: Rules{ClusterPlugins: map[string][]string{"": {"x"}}},
			want: "cluster_plugins: empty cluster name"},
		{name: "empty pattern", rules: Rules{Allowed: []string{""}},
			want: `allowed_plugins[0]: "" names no plugin`},
		{name: "prefix only", rules: Rules{Blocked: []string{"kubectl-"}},
			want: `blocked_plugins[0]: "kubectl-" names no plugin`},
		{name: "pin without prefix", rules: Rules{Pins: map[string]string{"evict": digestA}},
			want: `pins.evict: want "sha256:" and 64 lowercase hex digits, got "` + digestA + `"`},
		{name: "pin in upper case", rules: Rules{Pins: map[string]string{"evict": "sha256:" + strings.ToUpper(digestA)}},
			want: "pins.evict: want"},
		{name: "short pin", rules: Rules{Pins: map[string]string{"evict": "sha256:abc"}},
			want: `pins.evict: want "sha256:" and 64 lowercase hex digits, got "sha256:abc"`},
		{name: "other algorithm", rules: Rules{Pins: map[string]string{"evict": "sha512:" + digestA}},
			want: "pins.evict: want"},
		{name: "empty pin name", rules: Rules{Pins: map[string]string{"": "sha256:" + digestA}},
			want: "pins: empty plugin name"},
		{name: "pin for the prefix alone", rules: Rules{Pins: map[string]string{"kubectl-": "sha256:" + digestA}},
			want: `pins.kubectl-: "kubectl-" names no plugin`},
		{name: "two pins for one plugin", rules: Rules{Pins: map[string]string{"get_all": "sha256:" + digestA, "get-all": "sha256:" + digestB}},
			want: "pins.get_all: names the same plugin as pins.get-all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := New(tt.rules)
			if err == nil || p != nil {
				t.Fatalf("New = %v, %v; want an error", p, err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if got := errors.Is(err, path.ErrBadPattern); got != tt.badPattern {
				t.Errorf("errors.Is(err, path.ErrBadPattern) = %v, want %v", got, tt.badPattern)
			}
		})
	}
}

// New copies the rules, so a caller changing them later cannot change a
// policy in use.
func TestNewCopiesRules(t *testing.T) {
	r := Rules{Allowed: []string{"neat"}, ClusterPlugins: map[string][]string{"c1": {"neat"}}}
	p, err := New(r)
	if err != nil {
		t.Fatal(err)
	}
	r.Allowed[0] = "other"
	r.ClusterPlugins["c1"][0] = "other"
	if d := p.Decide(Plugin{Name: "neat"}, "c1"); !d.Allowed {
		t.Errorf("after changing the rules: %+v", d)
	}
}

func TestDefaultDestructivePatternsIsACopy(t *testing.T) {
	DefaultDestructivePatterns()[0] = "changed"
	if DefaultDestructivePatterns()[0] != "*delete*" {
		t.Error("DefaultDestructivePatterns shares its slice")
	}
}

// The configuration's default and policy's must not drift apart, or a
// server run without destructive_patterns would differ from one run with
// the default written out by `config show`.
func TestDefaultsMatchConfig(t *testing.T) {
	cfg, err := config.Load(config.Options{LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := cfg.Plugins.DestructivePatterns, DefaultDestructivePatterns(); !reflect.DeepEqual(got, want) {
		t.Errorf("config default plugins.destructive_patterns = %q, policy default = %q", got, want)
	}
}

// The example configurations build policies, and the proposal's example
// block of "kubectl-delete_everything" stops the plugin by its short name.
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "examples", "config", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no examples: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := config.Load(config.Options{File: f, LookupEnv: func(string) (string, bool) { return "", false }})
			if err != nil {
				t.Fatal(err)
			}
			pc := cfg.Plugins
			p, err := New(Rules{
				Allowed: pc.AllowedPlugins, Blocked: pc.BlockedPlugins, AllowAny: pc.AllowAnyPlugin,
				ClusterPlugins: pc.ClusterPlugins, Destructive: pc.DestructivePatterns, ReadOnly: pc.ReadOnly, Pins: pc.Pins,
				Requests: pc.Rules,
			})
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(f) == "development.toml" {
				if d := p.Decide(Plugin{Name: "delete-everything"}, ""); d.Allowed || d.Rule != "blocked_plugins[0]" {
					t.Errorf("delete-everything: %+v, want blocked", d)
				}
			}
		})
	}
}

// assertReason checks that a decision's reason is there and says each of want.
func assertReason(t *testing.T, reason string, want []string) {
	t.Helper()
	if reason == "" {
		t.Error("empty reason")
	}
	for _, w := range want {
		if !strings.Contains(reason, w) {
			t.Errorf("reason %q does not contain %q", reason, w)
		}
	}
}

// An install is decided before the plugin's file exists: as Decide for any
// cluster, without the pin, which discovery checks once the file is there.
func TestDecideInstall(t *testing.T) {
	pin := "sha256:" + strings.Repeat("a", 64)
	p, err := New(Rules{
		Allowed:        []string{"ctx", "pinned", "evict*"},
		Blocked:        []string{"evil*"},
		Pins:           map[string]string{"pinned": pin},
		ReadOnly:       true,
		ClusterPlugins: map[string][]string{"prod": {"other"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name    string
		allowed bool
		rule    string
	}{
		{"ctx", true, "allowed_plugins[0]"},
		{"kubectl-ctx", true, "allowed_plugins[0]"},
		{"pinned", true, "allowed_plugins[1]"},
		{"evil-thing", false, "blocked_plugins[0]"},
		{"evict-pods", false, "read_only"},
		{"unknown", false, "default_deny"},
	} {
		d := p.DecideInstall(tt.name)
		if d.Allowed != tt.allowed || d.Rule != tt.rule {
			t.Errorf("DecideInstall(%q) = %+v, want allowed %v by %s", tt.name, d, tt.allowed, tt.rule)
		}
	}
	if d := p.Decide(Plugin{Name: "pinned"}, ""); d.Allowed {
		t.Errorf("Decide still has to check the pin: %+v", d)
	}
}
