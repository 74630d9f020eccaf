package policy

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy/rulesyntax"
)

// The rules DecideRequest names besides the configured ones.
const (
	// RuleDiscovery allows GET of the discovery, version, OpenAPI and
	// health paths every kubectl needs before it can say anything.
	RuleDiscovery = "discovery"
	// RuleNonResource denies every other non-resource request.
	RuleNonResource = "non_resource"
	// RuleDefaultReadOnly allows what no configured rule decides when it
	// only reads: get, list and watch, but not secrets and not the connect
	// subresources (exec, attach, portforward, proxy).
	RuleDefaultReadOnly = "default_read_only"
	// RuleDefaultDeny denies every other resource request.
	RuleDefaultDeny = "default_deny"
)

// Request is one Kubernetes API request as k8s.io/apiserver's RequestInfo
// describes it (the gateway fills it from RequestInfoFactory).
type Request struct {
	IsResourceRequest bool
	// Path is the URL path of a non-resource request, such as "/version"
	// or "/apis/apps/v1"; ignored for resource requests.
	Path string
	// Verb is get, list, watch, create, update, patch, delete or
	// deletecollection for resource requests, and the lowercased HTTP
	// method (get, post, ...) for non-resource requests.
	Verb     string
	APIGroup string // "" for the core group
	// APIVersion is not used to decide; it is here so that a struct with
	// RequestInfo's fields in this order converts to a Request.
	APIVersion  string
	Resource    string
	Subresource string
	// Namespace is "" for a cluster-scoped request and for a request across
	// all namespaces (`kubectl get pods -A`). For the namespaces resource
	// itself it is the namespace's name, as in RequestInfo.
	Namespace string
	Name      string
}

// RequestDecision is the answer for one API request. Reason is a sentence
// for the 403 Status a denied kubectl prints; Rule is a stable identifier
// for audits: a configured rule's name (or "rules[i]") or one of the Rule*
// constants.
type RequestDecision struct {
	Allowed bool   `json:"allowed"`
	Reason  string `json:"reason"`
	Rule    string `json:"rule"`
}

// RequestRule is one [[plugins.rules]] entry; see rulesyntax.Rule.
type RequestRule = rulesyntax.Rule

// RequestRuleView is one rule as `profile show` lists it for one plugin
// and cluster.
type RequestRuleView struct {
	Name  string `json:"name"`
	Allow bool   `json:"allow"`
	// Verbs, Resources and Namespaces are as configured; NonResourceURLs
	// are paths for the built-in non-resource rules.
	Verbs           []string `json:"verbs"`
	Resources       []string `json:"resources,omitempty"`
	NonResourceURLs []string `json:"non_resource_urls,omitempty"`
	// Except are resources the rule's wildcards do not reach.
	Except     []string `json:"except,omitempty"`
	Namespaces []string `json:"namespaces,omitempty"`
	// Clusters are a configured rule's cluster globs.
	Clusters []string `json:"clusters,omitempty"`
}

// requestRule is a RequestRule compiled for DecideRequest.
type requestRule struct {
	name       string
	reason     string // the reason of every request it allows
	verbs      verbSet
	resources  []resourceMatcher
	namespaces []matcher // nil: any
	clusters   []matcher // nil: any
	plugins    []matcher
	view       RequestRuleView
}

// verbSet has one bit per verb of rulesyntax.Verbs.
type verbSet uint16

const allVerbs verbSet = 1<<8 - 1

func verbBit(v string) verbSet {
	switch v {
	case "get":
		return 1 << 0
	case "list":
		return 1 << 1
	case "watch":
		return 1 << 2
	case "create":
		return 1 << 3
	case "update":
		return 1 << 4
	case "patch":
		return 1 << 5
	case "delete":
		return 1 << 6
	case "deletecollection":
		return 1 << 7
	case "*":
		return allVerbs
	}
	return 0
}

const readVerbs = 1<<0 | 1<<1 | 1<<2 // get, list, watch

// matcher is a glob as path.Match reads it, with the common shapes
// decided without it.
type matcher struct {
	kind uint8
	s    string
}

const (
	matchAll    uint8 = iota // "*": every string, even one with "/"
	matchExact               // no metacharacter
	matchPrefix              // "abc*", abc without metacharacters
	matchGlob                // anything else: path.Match
)

func newMatcher(glob string) (matcher, error) {
	if err := rulesyntax.CheckGlob(glob); err != nil {
		return matcher{}, err
	}
	switch i := strings.IndexAny(glob, `*?[\`); {
	case glob == "*":
		return matcher{kind: matchAll}, nil
	case i < 0:
		return matcher{kind: matchExact, s: glob}, nil
	case i == len(glob)-1 && glob[i] == '*':
		return matcher{kind: matchPrefix, s: glob[:i]}, nil
	}
	return matcher{kind: matchGlob, s: glob}, nil
}

func (m *matcher) match(s string) bool {
	switch m.kind {
	case matchAll:
		return true
	case matchExact:
		return s == m.s
	case matchPrefix:
		// As path.Match: "*" does not cross "/".
		return strings.HasPrefix(s, m.s) && strings.IndexByte(s[len(m.s):], '/') < 0
	}
	ok, _ := path.Match(m.s, s) // checked in newMatcher
	return ok
}

// matchAny reports whether s matches one of ms; nil matches everything.
func matchAny(ms []matcher, s string) bool {
	if ms == nil {
		return true
	}
	for i := range ms {
		m := &ms[i]
		if m.kind == matchExact { // the common case, inline
			if s == m.s {
				return true
			}
		} else if m.match(s) {
			return true
		}
	}
	return false
}

// resourceMatcher is a compiled rulesyntax.Resource.
type resourceMatcher struct {
	resource    string // "" any
	group       string
	anyGroup    bool
	sub         string // for subExact
	subMode     uint8
	wildcardSub bool // reaches subresources it does not name
}

const (
	subNone      uint8 = iota // "pods": no subresource
	subExact                  // "pods/log"
	subAny                    // "pods/*": any subresource, not none
	subAnyOrNone              // "*", "*.apps": the resources and their subresources
)

func newResourceMatcher(raw string) (resourceMatcher, error) {
	r, err := rulesyntax.ParseResource(raw)
	if err != nil {
		return resourceMatcher{}, err
	}
	m := resourceMatcher{group: r.Group, anyGroup: r.Group == "*"}
	if r.Resource != "*" {
		m.resource = r.Resource
	}
	switch {
	case r.Subresource == "*":
		m.subMode = subAny
	case r.Subresource != "":
		m.subMode, m.sub = subExact, r.Subresource
	case r.Resource == "*":
		m.subMode = subAnyOrNone
	default:
		m.subMode = subNone
	}
	m.wildcardSub = m.subMode == subAny || m.subMode == subAnyOrNone
	return m, nil
}

func (m *resourceMatcher) match(req *Request, connect bool) bool {
	if m.resource != "" && m.resource != req.Resource {
		return false
	}
	if !m.anyGroup && m.group != req.APIGroup {
		return false
	}
	switch m.subMode {
	case subNone:
		return req.Subresource == ""
	case subExact:
		return req.Subresource == m.sub
	case subAny:
		return req.Subresource != "" && !connect
	}
	return !connect
}

// newRequestRules checks and compiles the request rules; errors name the
// rule and the item, such as `rules[1].verbs[0]`.
func newRequestRules(rules []RequestRule) ([]requestRule, error) {
	out := make([]requestRule, 0, len(rules))
	names := map[string]string{}
	for i, r := range rules {
		key := fmt.Sprintf("rules[%d]", i)
		c := requestRule{name: key}
		if r.Name != "" {
			if err := rulesyntax.CheckName(r.Name); err != nil {
				return nil, fmt.Errorf("%s.name: %w", key, err)
			}
			c.name = r.Name
		}
		if other, dup := names[c.name]; dup {
			return nil, fmt.Errorf("%s.name: %q is also the name of %s", key, c.name, other)
		}
		names[c.name] = key
		c.reason = fmt.Sprintf("allowed by [[plugins.rules]] entry %q", c.name)

		var err error
		if len(r.Plugins) == 0 {
			return nil, fmt.Errorf("%s.plugins: empty; name at least one plugin or glob", key)
		}
		for j, raw := range r.Plugins {
			if err := rulesyntax.CheckPluginGlob(raw); err != nil {
				return nil, fmt.Errorf("%s.plugins[%d]: %w", key, j, err)
			}
			m, err := newMatcher(pluginname.Normalize(raw))
			if err != nil {
				return nil, fmt.Errorf("%s.plugins[%d]: %w", key, j, err)
			}
			c.plugins = append(c.plugins, m)
		}
		if c.clusters, err = matchers(key+".clusters", r.Clusters, false); err != nil {
			return nil, err
		}
		if c.namespaces, err = matchers(key+".namespaces", r.Namespaces, true); err != nil {
			return nil, err
		}
		if len(r.Verbs) == 0 {
			return nil, fmt.Errorf("%s.verbs: empty; name at least one verb, or \"*\"", key)
		}
		for j, v := range r.Verbs {
			if err := rulesyntax.CheckVerb(v); err != nil {
				return nil, fmt.Errorf("%s.verbs[%d]: %w", key, j, err)
			}
			c.verbs |= verbBit(v)
		}
		if len(r.Resources) == 0 {
			return nil, fmt.Errorf("%s.resources: empty; name at least one resource, or \"*\"", key)
		}
		named := map[string]bool{} // connect subresources the rule names
		wildcard := false
		for j, raw := range r.Resources {
			m, err := newResourceMatcher(raw)
			if err != nil {
				return nil, fmt.Errorf("%s.resources[%d]: %w", key, j, err)
			}
			if m.subMode == subExact {
				named[m.sub] = true
			}
			wildcard = wildcard || m.wildcardSub
			c.resources = append(c.resources, m)
		}

		c.view = RequestRuleView{
			Name: c.name, Allow: true, Verbs: clone(r.Verbs), Resources: clone(r.Resources),
			Namespaces: orAll(r.Namespaces), Clusters: orAll(r.Clusters),
		}
		if wildcard {
			for _, sub := range rulesyntax.ConnectSubresources() {
				if !named[sub] {
					c.view.Except = append(c.view.Except, "*/"+sub)
				}
			}
		}
		out = append(out, c)
	}
	return out, nil
}

// matchers compiles cluster or namespace globs; none means all.
func matchers(key string, globs []string, emptyOK bool) ([]matcher, error) {
	if len(globs) == 0 {
		return nil, nil
	}
	out := make([]matcher, 0, len(globs))
	all := false
	for j, g := range globs {
		if g == "" && !emptyOK {
			return nil, fmt.Errorf("%s[%d]: empty name", key, j)
		}
		m, err := newMatcher(g)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", key, j, err)
		}
		all = all || m.kind == matchAll
		out = append(out, m)
	}
	if all {
		return nil, nil // matches everything, whatever else is listed
	}
	return out, nil
}

func clone(s []string) []string {
	return append([]string{}, s...)
}

// orAll copies globs, or returns ["*"] for none.
func orAll(globs []string) []string {
	if len(globs) == 0 {
		return []string{"*"}
	}
	return clone(globs)
}

// Fixed reasons, so that an allowed request costs no formatting.
const (
	reasonDiscovery = "discovery, version, OpenAPI and health paths are readable by every plugin"
	reasonReadOnly  = "allowed by the default: read-only (get, list, watch), no secrets"
)

// DecideRequest says whether plugin may make req on cluster. It is meant to
// run for every API request a plugin makes, and allocates nothing unless it
// denies.
//
// Non-resource requests (req.IsResourceRequest false): GET of the
// discovery, version, OpenAPI and health paths is allowed (rule
// "discovery"): /api, /api/<version>, /apis, /apis/<group>,
// /apis/<group>/<version>, /version, /openapi/v2, /openapi/v3 and every path
// under /openapi/, /healthz, /livez and /readyz. Any other verb or path is
// denied (rule "non_resource"), as is a path with "." or ".." segments or
// doubled slashes. Rules do not apply to non-resource requests.
//
// Resource requests: the first rule, in order, whose plugins, clusters,
// verbs, resources and namespaces all match allows the request and names
// it. Resources match as follows:
//
//   - "pods" is the resource pods itself, no subresource, in any API group
//     (for convenience, unlike RBAC; qualify it to narrow it).
//   - "deployments.apps" is deployments in the group apps only: the group is
//     everything after the first ".", as in `kubectl get deployments.apps`.
//   - "pods/log" is the subresource log of pods; "pods" alone does not
//     reach it, nor does "pods/log" reach pods.
//   - "pods/*" is every subresource of pods, not pods itself; "*/scale" is
//     the scale subresource of every resource.
//   - "*" (and "*.apps") is every resource and every subresource (of that
//     group), secrets included: an operator who writes "*" means it.
//   - The connect subresources exec, attach, portforward and proxy are never
//     reached by a wildcard ("*", "pods/*", "*/*"): a rule must name them,
//     as "pods/exec" or "*/exec". They open a shell, a stream or a tunnel,
//     not an object; nodes/proxy reaches the kubelet, which runs commands.
//
// A request no rule allows falls to the default: get, list and watch of
// every resource and subresource are allowed (rule "default_read_only"),
// except secrets in any group and with any subresource, and except the
// connect subresources (so pods/log is readable, pods/exec is not).
// Everything else is denied (rule "default_deny") with a reason that says
// what was refused and how to allow it. A verb outside rulesyntax.Verbs
// (such as the deprecated "proxy" verb) is allowed by no rule.
func (p *Policy) DecideRequest(plugin, cluster string, req Request) RequestDecision {
	if !req.IsResourceRequest {
		if req.Verb == "get" && isDiscoveryPath(req.Path) {
			return RequestDecision{Allowed: true, Reason: reasonDiscovery, Rule: RuleDiscovery}
		}
		return RequestDecision{Rule: RuleNonResource, Reason: fmt.Sprintf(
			"plugin %q may not %s %s on cluster %q: plugins reach only resources and the discovery, version, OpenAPI and health paths (GET), and no setting changes that",
			plugin, strings.ToUpper(req.Verb), strconv.Quote(req.Path), cluster)}
	}
	name := pluginname.Normalize(plugin)
	if name == "" {
		return RequestDecision{Rule: RuleDefaultDeny, Reason: "no plugin name given"}
	}
	if req.Resource == "" {
		return RequestDecision{Rule: RuleDefaultDeny, Reason: fmt.Sprintf(
			"plugin %q may not %s on cluster %q: the request names no resource", plugin, req.Verb, cluster)}
	}
	verb := verbBit(req.Verb)
	if verb == allVerbs { // a request's verb is never "*"
		verb = 0
	}
	connect := rulesyntax.IsConnect(req.Subresource)
	for i := range p.requests {
		r := &p.requests[i]
		// Plugins first: rules are most often written for a few of them.
		if r.verbs&verb == 0 || !matchAny(r.plugins, name) || !matchAny(r.clusters, cluster) ||
			!r.matchResource(&req, connect) || !matchAny(r.namespaces, req.Namespace) {
			continue
		}
		return RequestDecision{Allowed: true, Reason: r.reason, Rule: r.name}
	}
	if verb&readVerbs != 0 && !connect && req.Resource != "secrets" {
		return RequestDecision{Allowed: true, Reason: reasonReadOnly, Rule: RuleDefaultReadOnly}
	}
	return RequestDecision{Rule: RuleDefaultDeny, Reason: denyReason(plugin, cluster, &req, connect)}
}

func (r *requestRule) matchResource(req *Request, connect bool) bool {
	for i := range r.resources {
		if r.resources[i].match(req, connect) {
			return true
		}
	}
	return false
}

// denyReason says what was refused, for a kubectl user reading a 403.
func denyReason(plugin, cluster string, req *Request, connect bool) string {
	b := make([]byte, 0, 256)
	b = append(b, "plugin "...)
	b = strconv.AppendQuote(b, plugin)
	b = append(b, " may not "...)
	b = append(b, req.Verb...)
	b = append(b, ' ')
	b = appendResource(b, req)
	if req.Name != "" {
		b = append(b, ' ')
		b = strconv.AppendQuote(b, req.Name)
	}
	if req.Namespace != "" {
		b = append(b, " in namespace "...)
		b = strconv.AppendQuote(b, req.Namespace)
	} else {
		b = append(b, " cluster-wide"...)
	}
	b = append(b, " on cluster "...)
	b = strconv.AppendQuote(b, cluster)
	if !connect {
		b = append(b, ": no [[plugins.rules]] entry allows it (default: read-only, no secrets)"...)
		return string(b)
	}
	sub := req.Resource + "/" + req.Subresource
	b = append(b, ": no [[plugins.rules]] entry names "...)
	b = append(b, sub...)
	b = append(b, " (exec, attach, portforward and proxy are never allowed by default or by a wildcard; a rule must list them, such as resources = ["...)
	b = strconv.AppendQuote(b, sub)
	b = append(b, "])"...)
	return string(b)
}

// appendResource writes a request's resource as a rule would name it:
// "pods", "deployments.apps", "pods/exec", "deployments.apps/scale".
func appendResource(b []byte, req *Request) []byte {
	b = append(b, req.Resource...)
	if req.APIGroup != "" {
		b = append(b, '.')
		b = append(b, req.APIGroup...)
	}
	if req.Subresource != "" {
		b = append(b, '/')
		b = append(b, req.Subresource...)
	}
	return b
}

// isDiscoveryPath reports whether p is a discovery, version, OpenAPI or
// health path. A trailing slash is ignored; a path that is not clean is
// not one.
func isDiscoveryPath(p string) bool {
	if len(p) > 1 && p[len(p)-1] == '/' {
		p = p[:len(p)-1]
	}
	if p == "" || path.Clean(p) != p {
		return false
	}
	switch p {
	case "/api", "/apis", "/version", "/healthz", "/livez", "/readyz", "/openapi/v2", "/openapi/v3":
		return true
	}
	if strings.HasPrefix(p, "/openapi/") {
		return true
	}
	segs := strings.Count(p, "/")
	return strings.HasPrefix(p, "/api/") && segs == 2 || // /api/v1
		strings.HasPrefix(p, "/apis/") && (segs == 2 || segs == 3) // /apis/apps, /apis/apps/v1
}

// RequestRules returns, for `profile show`, the request rules that apply to
// plugin on cluster in the order DecideRequest tries them: the configured
// rules whose plugins and clusters match, then the built-in ones
// (default_read_only, discovery, non_resource, default_deny). Every Rule a
// decision for this plugin and cluster can name is among them. Cluster ""
// (none named) lists the plugin's rules for every cluster.
func (p *Policy) RequestRules(plugin, cluster string) []RequestRuleView {
	name := pluginname.Normalize(plugin)
	var out []RequestRuleView
	for i := range p.requests {
		r := &p.requests[i]
		if name != "" && (cluster == "" || matchAny(r.clusters, cluster)) && matchAny(r.plugins, name) {
			v := r.view
			v.Verbs, v.Resources, v.Namespaces, v.Clusters = clone(v.Verbs), clone(v.Resources), clone(v.Namespaces), clone(v.Clusters)
			v.Except = cloneNil(v.Except)
			out = append(out, v)
		}
	}
	except := []string{"secrets", "secrets/*"}
	for _, sub := range rulesyntax.ConnectSubresources() {
		except = append(except, "*/"+sub)
	}
	return append(out,
		RequestRuleView{Name: RuleDefaultReadOnly, Allow: true, Verbs: []string{"get", "list", "watch"},
			Resources: []string{"*"}, Except: except, Namespaces: []string{"*"}},
		RequestRuleView{Name: RuleDiscovery, Allow: true, Verbs: []string{"get"},
			NonResourceURLs: []string{"/api", "/api/*", "/apis", "/apis/*", "/apis/*/*", "/version", "/openapi/*", "/healthz", "/livez", "/readyz"}},
		RequestRuleView{Name: RuleNonResource, Verbs: []string{"*"}, NonResourceURLs: []string{"*"}},
		RequestRuleView{Name: RuleDefaultDeny, Verbs: []string{"*"}, Resources: []string{"*"}, Namespaces: []string{"*"}},
	)
}

func cloneNil(s []string) []string {
	if s == nil {
		return nil
	}
	return clone(s)
}
