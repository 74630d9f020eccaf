// Package rulesyntax checks and parses the parts of a request rule
// ([[plugins.rules]]): verbs, resources, globs and names. It is the one
// definition both the configuration loader (which reports file and line) and
// policy (which compiles the rules) use, so the two cannot disagree on what
// a valid rule is. It also holds the other pieces of policy syntax that
// both read: plugin globs, pins and the default destructive patterns. Of
// this module it imports only internal/pluginname.
package rulesyntax

import (
	"fmt"
	"path"
	"strings"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
)

// Rule allows some Kubernetes API requests of some plugins on some
// clusters; it is one [[plugins.rules]] entry, as the configuration loads
// it and as policy compiles it. Rules only allow: a request no rule allows
// falls to the default, read-only without secrets.
type Rule struct {
	// Name identifies the rule in decisions and audits; "" names it
	// "rules[i]" by its index.
	Name string `json:"name,omitempty"`
	// Plugins are plugin name globs, compared as pluginname.Normalize
	// spells both sides (as allowed_plugins). Required.
	Plugins []string `json:"plugins"`
	// Clusters are cluster name globs (path.Match); nil or empty means
	// every cluster, and "*" alone matches every name, even one with "/".
	Clusters []string `json:"clusters"`
	// Verbs are Kubernetes verbs (Verbs) or "*" for all of them. Required.
	Verbs []string `json:"verbs"`
	// Resources are written resource[.group][/subresource], as
	// ParseResource reads them: "pods", "pods/log", "deployments.apps",
	// "*/scale", "*". Required.
	Resources []string `json:"resources"`
	// Namespaces are namespace globs; "" matches requests with no
	// namespace: cluster-scoped ones and those across all namespaces. nil or
	// empty means ["*"], which matches every namespace and "" too; "?*"
	// matches every namespace but not "".
	Namespaces []string `json:"namespaces"`
}

// Clone returns a deep copy of r.
func (r Rule) Clone() Rule {
	r.Plugins = append([]string(nil), r.Plugins...)
	r.Clusters = append([]string(nil), r.Clusters...)
	r.Verbs = append([]string(nil), r.Verbs...)
	r.Resources = append([]string(nil), r.Resources...)
	r.Namespaces = append([]string(nil), r.Namespaces...)
	return r
}

// DefaultDestructivePatterns are the plugin names that read as changing or
// removing things in a cluster. It returns a new slice on every call.
func DefaultDestructivePatterns() []string {
	return []string{"*delete*", "*remove*", "*destroy*", "*evict*", "*drain*", "*cordon*", "*terminate*"}
}

// CheckPluginGlob checks a plugin name or glob (allowed_plugins,
// blocked_plugins, cluster_plugins, destructive_patterns, a rule's
// plugins) as policy matches it: spelled by pluginname.Normalize, it must
// name something and be a valid path.Match pattern. A bad pattern's error
// wraps path.ErrBadPattern.
func CheckPluginGlob(raw string) error {
	glob := pluginname.Normalize(raw)
	if glob == "" {
		return fmt.Errorf("%q names no plugin", raw)
	}
	if _, err := path.Match(glob, ""); err != nil {
		return fmt.Errorf("bad pattern %q: %w", raw, err)
	}
	return nil
}

// CheckPin checks a pin: "sha256:" and 64 lowercase hex digits.
func CheckPin(pin string) error {
	hex, ok := strings.CutPrefix(pin, "sha256:")
	if ok && len(hex) == 64 && strings.Trim(hex, "0123456789abcdef") == "" {
		return nil
	}
	return fmt.Errorf("want \"sha256:\" and 64 lowercase hex digits, got %q", pin)
}

// Verbs are the Kubernetes API verbs a rule may name, besides "*" for all
// of them, in the order k8s.io/apiserver's RequestInfo documents them. It
// returns a new slice on every call.
func Verbs() []string {
	return []string{"get", "list", "watch", "create", "update", "patch", "delete", "deletecollection"}
}

// IsWrite reports whether verb changes the cluster: create, update, patch,
// delete or deletecollection.
func IsWrite(verb string) bool {
	switch verb {
	case "create", "update", "patch", "delete", "deletecollection":
		return true
	}
	return false
}

// IsRead reports whether verb only reads: get, list or watch.
func IsRead(verb string) bool {
	switch verb {
	case "get", "list", "watch":
		return true
	}
	return false
}

// ConnectSubresources are the subresources that open a stream into a
// workload or through the API server rather than read or write an object:
// pods/exec, pods/attach, pods/portforward and pods, services and nodes
// proxy. No default and no wildcard covers them; a rule must name them. It
// returns a new slice on every call.
func ConnectSubresources() []string {
	return []string{"exec", "attach", "portforward", "proxy"}
}

// IsConnect reports whether sub is one of ConnectSubresources.
func IsConnect(sub string) bool {
	switch sub {
	case "exec", "attach", "portforward", "proxy":
		return true
	}
	return false
}

// Reserved are the rule names policy gives its own rules; a configured rule
// may not take one, nor a name of the form "rules[N]" that unnamed rules get.
func Reserved() []string {
	return []string{"discovery", "non_resource", "default_read_only", "default_deny"}
}

// CheckVerb accepts one of Verbs or "*".
func CheckVerb(v string) error {
	if v == "*" {
		return nil
	}
	for _, known := range Verbs() {
		if v == known {
			return nil
		}
	}
	hint := ""
	switch lower := strings.ToLower(v); {
	case lower != v && CheckVerb(lower) == nil:
		hint = fmt.Sprintf("; verbs are lowercase: %q", lower)
	case lower == "read" || lower == "view":
		hint = `; reading is "get", "list" and "watch"`
	case lower == "write":
		hint = `; writing is "create", "update", "patch", "delete" and "deletecollection"`
	case IsConnect(lower):
		hint = fmt.Sprintf(`; %s is a subresource: resources = ["pods/%s"] with verbs "get" and "create"`, lower, lower)
	}
	return fmt.Errorf("unknown verb %q (want %s or \"*\")%s", v, strings.Join(Verbs(), ", "), hint)
}

// Resource is a parsed resource of a rule, written
// resource[.group][/subresource]: "pods", "pods/log", "deployments.apps",
// "deployments.apps/scale", "*", "*/scale", "pods/*", "*.apps". "*" stands
// for any value of its part.
type Resource struct {
	Resource string // a plural resource name, or "*"
	// Group is the API group after the first ".", or "*" when the
	// resource is not qualified: a bare name matches it in every group.
	Group string
	// Subresource is the part after "/", "" when there is none, or "*".
	Subresource string
}

// ParseResource checks and splits one entry of a rule's resources.
func ParseResource(s string) (Resource, error) {
	if s == "" {
		return Resource{}, fmt.Errorf("empty resource")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return Resource{}, fmt.Errorf("resource %q contains white space", s)
	}
	if lower := strings.ToLower(s); lower != s {
		return Resource{}, fmt.Errorf("resource %q: resources are lowercase plurals as `kubectl api-resources` lists them, such as %q", s, plural(lower))
	}
	left, sub, hasSub := strings.Cut(s, "/")
	if hasSub && knownGroups[left] {
		return Resource{}, fmt.Errorf("resource %q: write a group-qualified resource as resource.group, such as %q", s, sub+"."+left)
	}
	res, group, qualified := strings.Cut(left, ".")
	r := Resource{Resource: res, Group: "*"}
	if err := part(s, "resource", res); err != nil {
		return Resource{}, err
	}
	if qualified {
		if err := groupPart(s, group); err != nil {
			return Resource{}, err
		}
		r.Group = group
	}
	if hasSub {
		if strings.Contains(sub, "/") {
			return Resource{}, fmt.Errorf("resource %q: at most one \"/\", between resource and subresource", s)
		}
		if err := part(s, "subresource", sub); err != nil {
			return Resource{}, err
		}
		r.Subresource = sub
	}
	if p, ok := shortNames[res]; ok {
		return Resource{}, fmt.Errorf("resource %q: %q is not a resource name; write the plural as `kubectl api-resources` lists it: %q", s, res, p)
	}
	return r, nil
}

// part checks a resource or subresource name: "*" or a lowercase name.
func part(s, what, name string) error {
	if name == "" {
		return fmt.Errorf("resource %q: empty %s name", s, what)
	}
	if name == "*" {
		return nil
	}
	if strings.ContainsAny(name, "*?[]\\") {
		return fmt.Errorf("resource %q: \"*\" stands only for a whole part (\"*\", \"*/scale\", \"pods/*\", \"*.apps\"), resources take no other patterns", s)
	}
	for _, r := range name {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return fmt.Errorf("resource %q: %s name %q may hold only a-z, 0-9 and -", s, what, name)
		}
	}
	return nil
}

func groupPart(s, group string) error {
	if group == "*" {
		return nil
	}
	if group == "" {
		return fmt.Errorf("resource %q: empty API group after \".\" (a bare resource name matches every group)", s)
	}
	for _, label := range strings.Split(group, ".") {
		if label == "" || label == "*" {
			return fmt.Errorf("resource %q: API group %q: write a whole group name, or \"*\" for any group", s, group)
		}
		if err := part(s, "API group", label); err != nil {
			return err
		}
	}
	return nil
}

// CheckGlob checks a cluster or namespace glob as path.Match reads it. The
// empty string is a valid namespace glob (cluster-scoped requests) but not a
// valid cluster name; callers decide.
func CheckGlob(g string) error {
	if _, err := path.Match(g, ""); err != nil {
		return fmt.Errorf("bad pattern %q: %w", g, err)
	}
	return nil
}

// CheckName checks a rule's name: non-empty, and not one policy uses itself.
func CheckName(name string) error {
	if strings.TrimSpace(name) == "" {
		return fmt.Errorf("empty name; leave it out to name the rule by its index")
	}
	for _, r := range Reserved() {
		if name == r {
			return fmt.Errorf("name %q is reserved for a built-in rule", name)
		}
	}
	if strings.HasPrefix(name, "rules[") {
		return fmt.Errorf("name %q looks like the name of an unnamed rule; choose another", name)
	}
	return nil
}

// plural guesses a resource name for a message.
func plural(name string) string {
	if p, ok := shortNames[name]; ok {
		return p
	}
	return name
}

// shortNames are kubectl's short names and the singulars of common
// resources, the likeliest slips in a resources list.
var shortNames = map[string]string{
	"po": "pods", "pod": "pods",
	"svc": "services", "service": "services",
	"deploy": "deployments", "deployment": "deployments",
	"rs": "replicasets", "replicaset": "replicasets",
	"sts": "statefulsets", "statefulset": "statefulsets",
	"ds": "daemonsets", "daemonset": "daemonsets",
	"job": "jobs", "cj": "cronjobs", "cronjob": "cronjobs",
	"cm": "configmaps", "configmap": "configmaps",
	"secret": "secrets", "ns": "namespaces", "namespace": "namespaces",
	"no": "nodes", "node": "nodes",
	"pv": "persistentvolumes", "persistentvolume": "persistentvolumes",
	"pvc": "persistentvolumeclaims", "persistentvolumeclaim": "persistentvolumeclaims",
	"sa": "serviceaccounts", "serviceaccount": "serviceaccounts",
	"ep": "endpoints", "ev": "events", "event": "events",
	"ing": "ingresses", "ingress": "ingresses",
	"hpa": "horizontalpodautoscalers", "pdb": "poddisruptionbudgets",
	"crd": "customresourcedefinitions", "crds": "customresourcedefinitions",
	"role": "roles", "rolebinding": "rolebindings",
	"clusterrole": "clusterroles", "clusterrolebinding": "clusterrolebindings",
}

// knownGroups are built-in API groups, to catch "apps/deployments" written
// in the apiVersion order instead of "deployments.apps".
var knownGroups = map[string]bool{
	"apps": true, "batch": true, "policy": true, "autoscaling": true, "extensions": true,
	"networking.k8s.io": true, "rbac.authorization.k8s.io": true, "storage.k8s.io": true,
	"apiextensions.k8s.io": true, "coordination.k8s.io": true, "discovery.k8s.io": true,
	"events.k8s.io": true, "admissionregistration.k8s.io": true, "certificates.k8s.io": true,
	"scheduling.k8s.io": true, "node.k8s.io": true, "flowcontrol.apiserver.k8s.io": true,
	"apiregistration.k8s.io": true, "resource.k8s.io": true, "metrics.k8s.io": true,
}
