package policy

import (
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy/rulesyntax"
)

// Rules is the plugin policy of one server, built from configuration.
type Rules struct {
	Allowed  []string // allowed_plugins globs
	Blocked  []string // blocked_plugins globs
	AllowAny bool     // allow_any_plugin
	// ClusterPlugins maps a cluster name to the only plugin globs that may
	// run there; a cluster not listed is not restricted.
	ClusterPlugins map[string][]string
	// Destructive are globs of names that change or remove things; nil
	// means DefaultDestructivePatterns, an empty list means none.
	Destructive []string
	ReadOnly    bool              // deny every destructive plugin
	Pins        map[string]string // plugin name -> "sha256:<64 hex>"
	// Requests are the [[plugins.rules]] entries, in order: what API
	// requests a running plugin may make (see DecideRequest).
	Requests []RequestRule
}

// Plugin is what policy needs to know of a plugin.
type Plugin struct {
	Name string
	// SHA256 is the hex digest of the plugin's file, "" if unknown.
	SHA256 string
}

// Decision is the answer for one plugin, with the reason in words for the
// operator and the agent, and the rule that decided as a stable identifier.
type Decision struct {
	Allowed     bool   `json:"allowed"`
	Reason      string `json:"reason"`
	Rule        string `json:"rule"`
	Destructive bool   `json:"destructive"`
}

// Policy is a checked, immutable set of Rules; it is safe for concurrent use.
type Policy struct {
	blocked     []pattern
	allowed     []pattern
	allowAny    bool
	clusters    map[string][]pattern
	destructive []pattern
	readOnly    bool
	pins        map[string]pin // by normalised plugin name
	requests    []requestRule
}

// pattern is a glob as configured and as matched.
type pattern struct {
	raw  string // as written, for reasons
	glob string // normalised, for matching
	rule string // e.g. "allowed_plugins[2]"
}

type pin struct {
	key    string // as written in pins
	digest string // "sha256:<hex>"
}

// DefaultDestructivePatterns are the names that read as changing or
// removing things in a cluster. It returns a new slice on every call.
func DefaultDestructivePatterns() []string { return rulesyntax.DefaultDestructivePatterns() }

// New checks r and returns its Policy. Errors name the offending key, such
// as `blocked_plugins[1]`, `pins.evict` or `rules[2].verbs[0]`; a bad glob's
// error wraps path.ErrBadPattern.
func New(r Rules) (*Policy, error) {
	p := &Policy{allowAny: r.AllowAny, readOnly: r.ReadOnly}
	var err error
	if p.blocked, err = patterns("blocked_plugins", r.Blocked); err != nil {
		return nil, err
	}
	if p.allowed, err = patterns("allowed_plugins", r.Allowed); err != nil {
		return nil, err
	}
	destructive := r.Destructive
	if destructive == nil {
		destructive = DefaultDestructivePatterns()
	}
	if p.destructive, err = patterns("destructive_patterns", destructive); err != nil {
		return nil, err
	}
	p.clusters = make(map[string][]pattern, len(r.ClusterPlugins))
	for _, cluster := range sortedKeys(r.ClusterPlugins) {
		if cluster == "" {
			return nil, fmt.Errorf("cluster_plugins: empty cluster name")
		}
		if p.clusters[cluster], err = patterns("cluster_plugins."+cluster, r.ClusterPlugins[cluster]); err != nil {
			return nil, err
		}
	}
	p.pins = make(map[string]pin, len(r.Pins))
	for _, key := range sortedKeys(r.Pins) {
		if key == "" {
			return nil, fmt.Errorf("pins: empty plugin name")
		}
		name := pluginname.Normalize(key)
		if name == "" {
			return nil, fmt.Errorf("pins.%s: %q names no plugin", key, key)
		}
		digest := r.Pins[key]
		if err := rulesyntax.CheckPin(digest); err != nil {
			return nil, fmt.Errorf("pins.%s: %w", key, err)
		}
		// get_all and get-all are one plugin; two pins for it would leave
		// the result to map order.
		if other, dup := p.pins[name]; dup {
			return nil, fmt.Errorf("pins.%s: names the same plugin as pins.%s; keep one", key, other.key)
		}
		p.pins[name] = pin{key: key, digest: digest}
	}
	if p.requests, err = newRequestRules(r.Requests); err != nil {
		return nil, err
	}
	return p, nil
}

func patterns(key string, globs []string) ([]pattern, error) {
	out := make([]pattern, 0, len(globs))
	for i, raw := range globs {
		rule := fmt.Sprintf("%s[%d]", key, i)
		if err := rulesyntax.CheckPluginGlob(raw); err != nil {
			return nil, fmt.Errorf("%s: %w", rule, err)
		}
		out = append(out, pattern{raw: raw, glob: pluginname.Normalize(raw), rule: rule})
	}
	return out, nil
}

// match returns the first pattern name matches. Patterns were checked in
// New, so path.Match cannot fail here.
func match(ps []pattern, name string) (pattern, bool) {
	for _, p := range ps {
		if ok, _ := path.Match(p.glob, name); ok {
			return p, true
		}
	}
	return pattern{}, false
}

// Pinned reports whether a plugin's file must match a pin: such a plugin's
// content is checked again when it runs, not only when it is discovered.
func (p *Policy) Pinned(name string) bool {
	_, ok := p.pins[pluginname.Normalize(name)]
	return ok
}

// IsDestructive reports whether a plugin name matches a destructive pattern.
func (p *Policy) IsDestructive(name string) bool {
	_, ok := match(p.destructive, pluginname.Normalize(name))
	return ok
}

// Decide says whether pl may run on cluster; cluster "" means none is
// named, as when listing plugins. The rules apply in a fixed order: blocked,
// pins, read_only, cluster_plugins, allow_any_plugin, allowed_plugins, and
// otherwise deny.
func (p *Policy) Decide(pl Plugin, cluster string) Decision {
	return p.decide(pl, cluster, true)
}

// DecideInstall says whether a plugin of this name, once installed, could
// run anywhere: Decide for any cluster, before its file exists, so without
// its pin, which discovery checks once the file is there.
func (p *Policy) DecideInstall(name string) Decision {
	return p.decide(Plugin{Name: name}, "", false)
}

func (p *Policy) decide(pl Plugin, cluster string, checkPin bool) Decision {
	name := pluginname.Normalize(pl.Name)
	destr, isDestr := match(p.destructive, name)
	deny := func(rule, format string, args ...any) Decision {
		return Decision{Reason: fmt.Sprintf(format, args...), Rule: rule, Destructive: isDestr}
	}
	allow := func(rule, format string, args ...any) Decision {
		d := deny(rule, format, args...)
		d.Allowed = true
		return d
	}
	if name == "" {
		return deny("default_deny", "no plugin name given")
	}

	// Blocked first, so no other rule can let a blocked plugin through.
	if b, ok := match(p.blocked, name); ok {
		return deny(b.rule, "plugin %q is blocked by blocked_plugins pattern %q", pl.Name, b.raw)
	}

	// A pin guards against a changed file; it vouches for nothing else.
	if pn, ok := p.pins[name]; ok && checkPin {
		have := strings.ToLower(strings.TrimPrefix(pl.SHA256, "sha256:"))
		rule := "pins." + pn.key
		if have == "" {
			return deny(rule, "plugin %q is pinned to %s by %s, but the digest of its file is unknown; it runs only once its file can be checked",
				pl.Name, pn.digest, rule)
		}
		if "sha256:"+have != pn.digest {
			return deny(rule, "plugin %q is pinned to %s by %s, but its file has sha256:%s; if the new file is trusted, update the pin",
				pl.Name, pn.digest, rule, have)
		}
	}

	if p.readOnly && isDestr {
		return deny("read_only", "plugin %q is destructive (destructive_patterns pattern %q) and read_only is set; only non-destructive plugins may run",
			pl.Name, destr.raw)
	}

	if cluster != "" {
		if only, listed := p.clusters[cluster]; listed {
			if _, ok := match(only, name); !ok {
				return deny("cluster_plugins."+cluster, "plugin %q may not run on cluster %q: cluster_plugins.%s allows %s there",
					pl.Name, cluster, cluster, list(only))
			}
		}
	}

	if p.allowAny {
		return allow("allow_any_plugin", "plugin %q is allowed by allow_any_plugin", pl.Name)
	}
	if a, ok := match(p.allowed, name); ok {
		return allow(a.rule, "plugin %q is allowed by allowed_plugins pattern %q", pl.Name, a.raw)
	}
	return deny("default_deny", "plugin %q is not allowed: add it to allowed_plugins, or set allow_any_plugin to allow every plugin that is not blocked", pl.Name)
}

// list writes patterns as configured, for a reason.
func list(ps []pattern) string {
	if len(ps) == 0 {
		return "no plugin"
	}
	quoted := make([]string, len(ps))
	for i, p := range ps {
		quoted[i] = fmt.Sprintf("%q", p.raw)
	}
	return "only " + strings.Join(quoted, ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
