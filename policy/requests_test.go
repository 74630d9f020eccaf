package policy

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy/rulesyntax"
)

// res builds a resource request.
func res(verb, group, resource, sub, ns, name string) Request {
	return Request{IsResourceRequest: true, Verb: verb, APIGroup: group, Resource: resource, Subresource: sub, Namespace: ns, Name: name}
}

func nonRes(verb, p string) Request {
	return Request{Verb: verb, Path: p}
}

func mustPolicy(t testing.TB, rules ...RequestRule) *Policy {
	t.Helper()
	p, err := New(Rules{Requests: rules})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

type requestCase struct {
	name    string
	plugin  string // "ns" when empty
	cluster string // "alpha" when empty
	req     Request
	allowed bool
	rule    string
	reason  []string // substrings of Reason
}

func runRequestCases(t *testing.T, p *Policy, tests []requestCase) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			plugin, cluster := tt.plugin, tt.cluster
			if plugin == "" {
				plugin = "ns"
			}
			if cluster == "" {
				cluster = "alpha"
			}
			d := p.DecideRequest(plugin, cluster, tt.req)
			if d.Allowed != tt.allowed || d.Rule != tt.rule {
				t.Errorf("DecideRequest(%q, %q, %+v) = %+v, want allowed=%v rule=%q", plugin, cluster, tt.req, d, tt.allowed, tt.rule)
			}
			assertReason(t, d.Reason, tt.reason)
		})
	}
}

func TestDecideRequestNonResource(t *testing.T) {
	// Rules do not reach non-resource requests, not even "*".
	p := mustPolicy(t, RequestRule{Plugins: []string{"*"}, Verbs: []string{"*"}, Resources: []string{"*"}})
	var tests []requestCase
	for _, allowed := range []string{
		"/api", "/api/", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1", "/apis/apps/v1/",
		"/version", "/openapi/v2", "/openapi/v3", "/openapi/v3/api/v1", "/openapi/v3/apis/apps/v1",
		"/healthz", "/livez", "/readyz",
	} {
		tests = append(tests, requestCase{name: "GET " + allowed, req: nonRes("get", allowed), allowed: true, rule: RuleDiscovery})
	}
	for _, denied := range []struct{ verb, path string }{
		{"post", "/api"},
		{"put", "/apis/apps/v1"},
		{"delete", "/version"},
		{"head", "/version"},
		{"get", "/metrics"},
		{"get", "/logs"},
		{"get", "/logs/kube-apiserver.log"},
		{"get", "/debug/pprof/profile"},
		{"get", "/api/v1/x"}, // not what RequestInfo calls non-resource, but not discovery either
		{"get", "/apis/a/b/c"},
		{"get", "/api/../metrics"},
		{"get", "/apis/./apps"},
		{"get", "//api"},
		{"get", "/openapi"},
		{"get", "/apiz"},
		{"get", "/healthz/etcd"},
		{"get", ""},
		{"get", "/"},
	} {
		tests = append(tests, requestCase{name: denied.verb + " " + denied.path, req: nonRes(denied.verb, denied.path), rule: RuleNonResource,
			reason: []string{fmt.Sprintf(`plugin "ns" may not %s %q on cluster "alpha"`, strings.ToUpper(denied.verb), denied.path)}})
	}
	runRequestCases(t, p, tests)
}

func TestDecideRequestDefault(t *testing.T) {
	p := mustPolicy(t)
	const hint = "no [[plugins.rules]] entry allows it (default: read-only, no secrets)"
	runRequestCases(t, p, []requestCase{
		{name: "get pod", req: res("get", "", "pods", "", "default", "web"), allowed: true, rule: RuleDefaultReadOnly},
		{name: "list pods in all namespaces", req: res("list", "", "pods", "", "", ""), allowed: true, rule: RuleDefaultReadOnly},
		{name: "watch deployments", req: res("watch", "apps", "deployments", "", "default", ""), allowed: true, rule: RuleDefaultReadOnly},
		{name: "get nodes", req: res("get", "", "nodes", "", "", "n1"), allowed: true, rule: RuleDefaultReadOnly},
		{name: "get a custom resource", req: res("list", "postgresql.cnpg.io", "clusters", "", "db", ""), allowed: true, rule: RuleDefaultReadOnly},
		{name: "pods/log is a get", req: res("get", "", "pods", "log", "default", "web"), allowed: true, rule: RuleDefaultReadOnly},
		{name: "get deployments/scale", req: res("get", "apps", "deployments", "scale", "default", "web"), allowed: true, rule: RuleDefaultReadOnly},

		{name: "delete pods", req: res("delete", "", "pods", "", "default", ""), rule: RuleDefaultDeny,
			reason: []string{`plugin "ns" may not delete pods in namespace "default" on cluster "alpha": ` + hint}},
		{name: "delete a named deployment", req: res("delete", "apps", "deployments", "", "default", "web"), rule: RuleDefaultDeny,
			reason: []string{`plugin "ns" may not delete deployments.apps "web" in namespace "default" on cluster "alpha": ` + hint}},
		{name: "create pods/eviction", req: res("create", "", "pods", "eviction", "default", "web"), rule: RuleDefaultDeny,
			reason: []string{`may not create pods/eviction "web" in namespace "default"`}},
		{name: "patch a node", req: res("patch", "", "nodes", "", "", "n1"), rule: RuleDefaultDeny,
			reason: []string{`may not patch nodes "n1" cluster-wide on cluster "alpha"`}},
		{name: "update", req: res("update", "", "configmaps", "", "default", "c"), rule: RuleDefaultDeny},
		{name: "deletecollection", req: res("deletecollection", "", "pods", "", "default", ""), rule: RuleDefaultDeny},

		{name: "get a secret", req: res("get", "", "secrets", "", "default", "tls"), rule: RuleDefaultDeny,
			reason: []string{`may not get secrets "tls" in namespace "default"`, hint}},
		{name: "list secrets everywhere", req: res("list", "", "secrets", "", "", ""), rule: RuleDefaultDeny,
			reason: []string{`may not list secrets cluster-wide`}},
		{name: "watch secrets", req: res("watch", "", "secrets", "", "default", ""), rule: RuleDefaultDeny},
		{name: "secrets in another group", req: res("get", "example.com", "secrets", "", "default", ""), rule: RuleDefaultDeny},
		{name: "a subresource of secrets", req: res("get", "", "secrets", "status", "default", "x"), rule: RuleDefaultDeny},

		{name: "exec by GET (websocket)", req: res("get", "", "pods", "exec", "default", "web"), rule: RuleDefaultDeny,
			reason: []string{`may not get pods/exec "web" in namespace "default"`, `no [[plugins.rules]] entry names pods/exec`, `resources = ["pods/exec"]`}},
		{name: "exec by POST", req: res("create", "", "pods", "exec", "default", "web"), rule: RuleDefaultDeny},
		{name: "attach", req: res("get", "", "pods", "attach", "default", "web"), rule: RuleDefaultDeny},
		{name: "portforward", req: res("get", "", "pods", "portforward", "default", "web"), rule: RuleDefaultDeny},
		{name: "pods/proxy", req: res("get", "", "pods", "proxy", "default", "web"), rule: RuleDefaultDeny},
		{name: "services/proxy", req: res("get", "", "services", "proxy", "default", "web"), rule: RuleDefaultDeny},
		{name: "nodes/proxy reaches the kubelet", req: res("get", "", "nodes", "proxy", "", "n1"), rule: RuleDefaultDeny,
			reason: []string{`no [[plugins.rules]] entry names nodes/proxy`}},

		{name: "the deprecated proxy verb", req: res("proxy", "", "pods", "", "default", "web"), rule: RuleDefaultDeny},
		{name: "an unknown verb", req: res("escalate", "", "pods", "", "default", ""), rule: RuleDefaultDeny},
		{name: "a verb of *", req: res("*", "", "pods", "", "default", ""), rule: RuleDefaultDeny},
		{name: "no resource", req: res("get", "", "", "", "default", ""), rule: RuleDefaultDeny},
		{name: "no plugin", plugin: "kubectl-", req: res("get", "", "pods", "", "default", ""), rule: RuleDefaultDeny},
	})
}

func TestDecideRequestRules(t *testing.T) {
	p := mustPolicy(t,
		RequestRule{Name: "evict", Plugins: []string{"evict", "drain*"}, Clusters: []string{"staging-*"},
			Verbs: []string{"create"}, Resources: []string{"pods/eviction"}},
		RequestRule{Plugins: []string{"kubectl-get_all"}, Verbs: []string{"get", "list"}, Resources: []string{"secrets"},
			Namespaces: []string{"team-*"}},
		RequestRule{Name: "admin", Plugins: []string{"admin"}, Verbs: []string{"*"}, Resources: []string{"*"}},
		RequestRule{Name: "shell", Plugins: []string{"shell"}, Verbs: []string{"get", "create"}, Resources: []string{"pods/exec"},
			Namespaces: []string{"dev"}},
		RequestRule{Name: "any-exec", Plugins: []string{"shell2"}, Verbs: []string{"create"}, Resources: []string{"*/exec"}},
		RequestRule{Name: "scaler", Plugins: []string{"scale"}, Verbs: []string{"update", "patch"}, Resources: []string{"*/scale"}},
		RequestRule{Name: "apps", Plugins: []string{"rollout"}, Verbs: []string{"patch", "delete"}, Resources: []string{"deployments.apps", "*.batch"}},
		RequestRule{Name: "bare", Plugins: []string{"bare"}, Verbs: []string{"delete"}, Resources: []string{"deployments", "pods"}},
		RequestRule{Name: "subs", Plugins: []string{"subs"}, Verbs: []string{"update"}, Resources: []string{"pods/*"}},
		RequestRule{Name: "log-only", Plugins: []string{"logs"}, Verbs: []string{"delete"}, Resources: []string{"pods/log"}},
		RequestRule{Name: "cluster-scoped", Plugins: []string{"nodes"}, Verbs: []string{"patch"}, Resources: []string{"nodes", "pods"},
			Namespaces: []string{""}},
		RequestRule{Name: "namespaced-only", Plugins: []string{"nsonly"}, Verbs: []string{"delete"}, Resources: []string{"pods"},
			Namespaces: []string{"?*"}},
		RequestRule{Name: "first", Plugins: []string{"order"}, Verbs: []string{"delete"}, Resources: []string{"pods"}},
		RequestRule{Name: "second", Plugins: []string{"order"}, Verbs: []string{"delete"}, Resources: []string{"*"}},
		RequestRule{Name: "ctx", Plugins: []string{"ctx"}, Clusters: []string{"*"}, Verbs: []string{"delete"}, Resources: []string{"pods"}},
	)
	runRequestCases(t, p, []requestCase{
		// plugins and clusters
		{name: "evict on staging", plugin: "evict", cluster: "staging-1", req: res("create", "", "pods", "eviction", "default", "web"),
			allowed: true, rule: "evict", reason: []string{`allowed by [[plugins.rules]] entry "evict"`}},
		{name: "drain glob", plugin: "kubectl-drain_node", cluster: "staging-1", req: res("create", "", "pods", "eviction", "x", "w"), allowed: true, rule: "evict"},
		{name: "evict off staging", plugin: "evict", cluster: "prod", req: res("create", "", "pods", "eviction", "default", "web"), rule: RuleDefaultDeny,
			reason: []string{`on cluster "prod"`}},
		{name: "cluster glob does not cross /", plugin: "evict", cluster: "staging-a/b", req: res("create", "", "pods", "eviction", "d", "w"), rule: RuleDefaultDeny},
		{name: "cluster * crosses /", plugin: "ctx", cluster: "arn:aws:eks:eu:1:cluster/x", req: res("delete", "", "pods", "", "d", "w"), allowed: true, rule: "ctx"},
		{name: "another plugin", plugin: "neat", cluster: "staging-1", req: res("create", "", "pods", "eviction", "default", "web"), rule: RuleDefaultDeny},
		{name: "evict may still read", plugin: "evict", cluster: "staging-1", req: res("get", "", "pods", "", "default", ""), allowed: true, rule: RuleDefaultReadOnly},

		// secrets and namespaces
		{name: "unnamed rule is rules[1]", plugin: "get-all", req: res("list", "", "secrets", "", "team-a", ""), allowed: true, rule: "rules[1]",
			reason: []string{`"rules[1]"`}},
		{name: "namespace glob", plugin: "get_all", req: res("list", "", "secrets", "", "other", ""), rule: RuleDefaultDeny},
		{name: "namespace glob does not match all namespaces", plugin: "get_all", req: res("list", "", "secrets", "", "", ""), rule: RuleDefaultDeny},
		{name: "verb not in rule", plugin: "get_all", req: res("watch", "", "secrets", "", "team-a", ""), rule: RuleDefaultDeny},
		{name: "* grants secrets", plugin: "admin", req: res("get", "", "secrets", "", "kube-system", "x"), allowed: true, rule: "admin"},
		{name: "* grants subresources", plugin: "admin", req: res("update", "", "pods", "status", "d", "x"), allowed: true, rule: "admin"},
		{name: "* grants cluster-scoped", plugin: "admin", req: res("delete", "", "nodes", "", "", "n1"), allowed: true, rule: "admin"},
		{name: "* does not grant exec", plugin: "admin", req: res("create", "", "pods", "exec", "d", "x"), rule: RuleDefaultDeny,
			reason: []string{"names pods/exec"}},
		{name: "* does not grant nodes/proxy", plugin: "admin", req: res("get", "", "nodes", "proxy", "", "n1"), rule: RuleDefaultDeny},
		{name: "* does not grant attach", plugin: "admin", req: res("create", "", "pods", "attach", "d", "x"), rule: RuleDefaultDeny},
		{name: "* does not grant portforward", plugin: "admin", req: res("create", "", "pods", "portforward", "d", "x"), rule: RuleDefaultDeny},
		{name: "* does not grant the proxy verb", plugin: "admin", req: res("proxy", "", "pods", "", "d", "x"), rule: RuleDefaultDeny},

		// connect subresources, named
		{name: "pods/exec named", plugin: "shell", req: res("create", "", "pods", "exec", "dev", "x"), allowed: true, rule: "shell"},
		{name: "pods/exec by GET", plugin: "shell", req: res("get", "", "pods", "exec", "dev", "x"), allowed: true, rule: "shell"},
		{name: "pods/exec named, other namespace", plugin: "shell", req: res("create", "", "pods", "exec", "prod", "x"), rule: RuleDefaultDeny},
		{name: "pods/exec does not grant attach", plugin: "shell", req: res("create", "", "pods", "attach", "dev", "x"), rule: RuleDefaultDeny},
		{name: "pods/exec does not grant pods", plugin: "shell", req: res("create", "", "pods", "", "dev", ""), rule: RuleDefaultDeny},
		{name: "*/exec names exec", plugin: "shell2", req: res("create", "", "pods", "exec", "d", "x"), allowed: true, rule: "any-exec"},

		// subresources and groups
		{name: "*/scale on deployments", plugin: "scale", req: res("patch", "apps", "deployments", "scale", "d", "w"), allowed: true, rule: "scaler"},
		{name: "*/scale on a custom resource", plugin: "scale", req: res("update", "example.com", "widgets", "scale", "d", "w"), allowed: true, rule: "scaler"},
		{name: "*/scale is not the resource", plugin: "scale", req: res("patch", "apps", "deployments", "", "d", "w"), rule: RuleDefaultDeny},
		{name: "*/scale is not status", plugin: "scale", req: res("patch", "apps", "deployments", "status", "d", "w"), rule: RuleDefaultDeny},
		{name: "deployments.apps", plugin: "rollout", req: res("patch", "apps", "deployments", "", "d", "w"), allowed: true, rule: "apps"},
		{name: "deployments.apps is not extensions", plugin: "rollout", req: res("patch", "extensions", "deployments", "", "d", "w"), rule: RuleDefaultDeny},
		{name: "deployments.apps is not the scale", plugin: "rollout", req: res("patch", "apps", "deployments", "scale", "d", "w"), rule: RuleDefaultDeny},
		{name: "*.batch reaches jobs", plugin: "rollout", req: res("delete", "batch", "jobs", "", "d", "j"), allowed: true, rule: "apps"},
		{name: "*.batch reaches subresources", plugin: "rollout", req: res("patch", "batch", "cronjobs", "status", "d", "j"), allowed: true, rule: "apps"},
		{name: "*.batch is not core", plugin: "rollout", req: res("delete", "", "pods", "", "d", "p"), rule: RuleDefaultDeny},
		{name: "bare name in core", plugin: "bare", req: res("delete", "", "pods", "", "d", "p"), allowed: true, rule: "bare"},
		{name: "bare name in apps", plugin: "bare", req: res("delete", "apps", "deployments", "", "d", "p"), allowed: true, rule: "bare"},
		{name: "bare name in extensions", plugin: "bare", req: res("delete", "extensions", "deployments", "", "d", "p"), allowed: true, rule: "bare"},
		{name: "bare name in any group", plugin: "bare", req: res("delete", "metrics.k8s.io", "pods", "", "d", "p"), allowed: true, rule: "bare"},
		{name: "bare name is not its subresource", plugin: "bare", req: res("delete", "", "pods", "eviction", "d", "p"), rule: RuleDefaultDeny},
		{name: "pods/* reaches status", plugin: "subs", req: res("update", "", "pods", "status", "d", "p"), allowed: true, rule: "subs"},
		{name: "pods/* is not pods", plugin: "subs", req: res("update", "", "pods", "", "d", "p"), rule: RuleDefaultDeny},
		{name: "pods/* is not exec", plugin: "subs", req: res("update", "", "pods", "exec", "d", "p"), rule: RuleDefaultDeny},
		{name: "pods/log is not pods", plugin: "logs", req: res("delete", "", "pods", "", "d", "p"), rule: RuleDefaultDeny},
		{name: "pods/log", plugin: "logs", req: res("delete", "", "pods", "log", "d", "p"), allowed: true, rule: "log-only"},

		// "" and "?*" namespaces
		{name: "\"\" is cluster-scoped", plugin: "nodes", req: res("patch", "", "nodes", "", "", "n1"), allowed: true, rule: "cluster-scoped"},
		{name: "\"\" is every namespace at once", plugin: "nodes", req: res("patch", "", "pods", "", "", ""), allowed: true, rule: "cluster-scoped"},
		{name: "\"\" is not a namespace", plugin: "nodes", req: res("patch", "", "pods", "", "default", "p"), rule: RuleDefaultDeny},
		{name: "?* is a namespace", plugin: "nsonly", req: res("delete", "", "pods", "", "default", "p"), allowed: true, rule: "namespaced-only"},
		{name: "?* is not cluster-wide", plugin: "nsonly", req: res("delete", "", "pods", "", "", ""), rule: RuleDefaultDeny},

		// order
		{name: "first matching rule names the decision", plugin: "order", req: res("delete", "", "pods", "", "d", "p"), allowed: true, rule: "first"},
		{name: "later rule when the first does not match", plugin: "order", req: res("delete", "", "services", "", "d", "s"), allowed: true, rule: "second"},
	})
}

func TestNewRequestRuleErrors(t *testing.T) {
	ok := RequestRule{Plugins: []string{"x"}, Verbs: []string{"get"}, Resources: []string{"pods"}}
	with := func(f func(r *RequestRule)) []RequestRule {
		r := ok
		f(&r)
		return []RequestRule{ok, r}
	}
	tests := []struct {
		name    string
		rules   []RequestRule
		want    string
		pattern bool // wraps path.ErrBadPattern
	}{
		{"no plugins", with(func(r *RequestRule) { r.Plugins = nil }), "rules[1].plugins: empty", false},
		{"kubectl- alone", with(func(r *RequestRule) { r.Plugins = []string{"a", "kubectl-"} }), `rules[1].plugins[1]: "kubectl-" names no plugin`, false},
		{"bad plugin glob", with(func(r *RequestRule) { r.Plugins = []string{"[x"} }), `rules[1].plugins[0]: bad pattern "[x"`, true},
		{"bad cluster glob", with(func(r *RequestRule) { r.Clusters = []string{"a", "[x"} }), `rules[1].clusters[1]: bad pattern`, true},
		{"empty cluster", with(func(r *RequestRule) { r.Clusters = []string{""} }), `rules[1].clusters[0]: empty name`, false},
		{"bad namespace glob", with(func(r *RequestRule) { r.Namespaces = []string{"[x"} }), `rules[1].namespaces[0]: bad pattern`, true},
		{"no verbs", with(func(r *RequestRule) { r.Verbs = []string{} }), "rules[1].verbs: empty", false},
		{"unknown verb", with(func(r *RequestRule) { r.Verbs = []string{"get", "destroy"} }), `rules[1].verbs[1]: unknown verb "destroy"`, false},
		{"uppercase verb", with(func(r *RequestRule) { r.Verbs = []string{"GET"} }), `verbs are lowercase: "get"`, false},
		{"exec as a verb", with(func(r *RequestRule) { r.Verbs = []string{"exec"} }), `resources = ["pods/exec"]`, false},
		{"no resources", with(func(r *RequestRule) { r.Resources = nil }), "rules[1].resources: empty", false},
		{"short name", with(func(r *RequestRule) { r.Resources = []string{"po"} }), `rules[1].resources[0]: resource "po"`, false},
		{"singular", with(func(r *RequestRule) { r.Resources = []string{"deployment.apps"} }), `"deployments"`, false},
		{"group first", with(func(r *RequestRule) { r.Resources = []string{"apps/deployments"} }), `"deployments.apps"`, false},
		{"kind", with(func(r *RequestRule) { r.Resources = []string{"Pod"} }), `lowercase plurals`, false},
		{"pattern in a resource", with(func(r *RequestRule) { r.Resources = []string{"pod*"} }), `"*" stands only for a whole part`, false},
		{"two slashes", with(func(r *RequestRule) { r.Resources = []string{"pods/log/x"} }), `at most one "/"`, false},
		{"empty group", with(func(r *RequestRule) { r.Resources = []string{"pods."} }), `empty API group`, false},
		{"empty subresource", with(func(r *RequestRule) { r.Resources = []string{"pods/"} }), `empty subresource`, false},
		{"reserved name", with(func(r *RequestRule) { r.Name = "default_deny" }), `rules[1].name: name "default_deny" is reserved`, false},
		{"index-like name", with(func(r *RequestRule) { r.Name = "rules[0]" }), `rules[1].name: name "rules[0]" looks like`, false},
		{"blank name", with(func(r *RequestRule) { r.Name = " " }), `rules[1].name: empty name`, false},
		{"duplicate name", []RequestRule{{Name: "a", Plugins: ok.Plugins, Verbs: ok.Verbs, Resources: ok.Resources},
			{Name: "a", Plugins: ok.Plugins, Verbs: ok.Verbs, Resources: ok.Resources}}, `rules[1].name: "a" is also the name of rules[0]`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Rules{Requests: tt.rules})
			if err == nil {
				t.Fatalf("New succeeded, want an error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not contain %q", err, tt.want)
			}
			if tt.pattern != errors.Is(err, path.ErrBadPattern) {
				t.Errorf("errors.Is(%v, path.ErrBadPattern) = %v, want %v", err, !tt.pattern, tt.pattern)
			}
		})
	}
}

// New copies the request rules: a caller changing them later changes
// neither decisions nor the views.
func TestNewCopiesRequestRules(t *testing.T) {
	rules := []RequestRule{{Name: "a", Plugins: []string{"x"}, Verbs: []string{"delete"}, Resources: []string{"pods"}, Namespaces: []string{"d"}}}
	p := mustPolicy(t, rules...)
	rules[0].Plugins[0], rules[0].Verbs[0], rules[0].Resources[0], rules[0].Namespaces[0] = "y", "get", "nodes", "e"
	if d := p.DecideRequest("x", "c", res("delete", "", "pods", "", "d", "p")); !d.Allowed {
		t.Errorf("after changing the rules: %+v", d)
	}
	views := p.RequestRules("x", "c")
	views[0].Verbs[0] = "changed"
	if v := p.RequestRules("x", "c")[0]; v.Verbs[0] != "delete" || v.Resources[0] != "pods" || v.Namespaces[0] != "d" {
		t.Errorf("view after changes: %+v", v)
	}
}

func TestRequestRules(t *testing.T) {
	p := mustPolicy(t,
		RequestRule{Name: "evict", Plugins: []string{"evict"}, Clusters: []string{"staging-*"}, Verbs: []string{"create"}, Resources: []string{"pods/eviction"}},
		RequestRule{Plugins: []string{"*"}, Verbs: []string{"*"}, Resources: []string{"*", "pods/exec"}, Namespaces: []string{"dev"}},
		RequestRule{Name: "other", Plugins: []string{"other"}, Verbs: []string{"get"}, Resources: []string{"secrets"}},
	)
	builtins := []string{RuleDefaultReadOnly, RuleDiscovery, RuleNonResource, RuleDefaultDeny}
	names := func(vs []RequestRuleView) []string {
		var out []string
		for _, v := range vs {
			out = append(out, v.Name)
		}
		return out
	}
	if got, want := names(p.RequestRules("kubectl-evict", "staging-2")), append([]string{"evict", "rules[1]"}, builtins...); !reflect.DeepEqual(got, want) {
		t.Errorf("evict on staging-2: %q, want %q", got, want)
	}
	if got, want := names(p.RequestRules("evict", "prod")), append([]string{"rules[1]"}, builtins...); !reflect.DeepEqual(got, want) {
		t.Errorf("evict on prod: %q, want %q", got, want)
	}
	if got, want := names(p.RequestRules("evict", "")), append([]string{"evict", "rules[1]"}, builtins...); !reflect.DeepEqual(got, want) {
		t.Errorf("evict on no cluster: %q, want %q", got, want)
	}
	if got := names(p.RequestRules("", "prod")); !reflect.DeepEqual(got, builtins) {
		t.Errorf("no plugin: %q, want %q", got, builtins)
	}
	views := p.RequestRules("evict", "staging-2")
	if got := views[1].Clusters; !reflect.DeepEqual(got, []string{"*"}) {
		t.Errorf("rules[1].Clusters = %q, want [*]", got)
	}
	want := RequestRuleView{Name: "evict", Allow: true, Verbs: []string{"create"}, Resources: []string{"pods/eviction"},
		Namespaces: []string{"*"}, Clusters: []string{"staging-*"}}
	if !reflect.DeepEqual(views[0], want) {
		t.Errorf("view of evict = %+v, want %+v", views[0], want)
	}
	// The wildcard does not reach the connect subresources it does not name.
	if got, want := views[1].Except, []string{"*/attach", "*/portforward", "*/proxy"}; !reflect.DeepEqual(got, want) {
		t.Errorf("rules[1].Except = %q, want %q", got, want)
	}
	ro := views[2]
	if !ro.Allow || !reflect.DeepEqual(ro.Verbs, []string{"get", "list", "watch"}) || !contains(ro.Except, "secrets") || !contains(ro.Except, "*/exec") {
		t.Errorf("default_read_only view = %+v", ro)
	}
	if d := views[len(views)-1]; d.Allow || d.Name != RuleDefaultDeny {
		t.Errorf("last view = %+v, want default_deny", d)
	}

	// Every rule a decision names is in the views of that plugin and cluster.
	reqs := []Request{
		res("create", "", "pods", "eviction", "x", "p"), res("get", "", "secrets", "", "dev", "s"), res("get", "", "secrets", "", "x", "s"),
		res("get", "", "pods", "", "x", "p"), res("delete", "", "pods", "", "x", "p"), nonRes("get", "/api"), nonRes("get", "/metrics"),
	}
	for _, plugin := range []string{"evict", "other"} {
		for _, cluster := range []string{"staging-1", "prod"} {
			listed := names(p.RequestRules(plugin, cluster))
			for _, req := range reqs {
				if d := p.DecideRequest(plugin, cluster, req); !contains(listed, d.Rule) {
					t.Errorf("%s on %s: decision %+v names a rule not in %q", plugin, cluster, d, listed)
				}
			}
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestReservedNamesAreTheBuiltins(t *testing.T) {
	if got, want := rulesyntax.Reserved(), []string{RuleDiscovery, RuleNonResource, RuleDefaultReadOnly, RuleDefaultDeny}; !reflect.DeepEqual(got, want) {
		t.Errorf("rulesyntax.Reserved() = %q, policy's rules are %q", got, want)
	}
	for _, v := range rulesyntax.Verbs() {
		if verbBit(v) == 0 || verbBit(v) == allVerbs {
			t.Errorf("verb %q has no bit of its own", v)
		}
	}
	if verbBit("*") != allVerbs || len(rulesyntax.Verbs()) != 8 {
		t.Error("allVerbs is not every verb")
	}
}

// The matcher's shortcuts agree with path.Match, which the configuration
// documents, except that "*" alone matches every name.
func TestMatcherAgreesWithPathMatch(t *testing.T) {
	globs := []string{"*", "staging-*", "staging", "st?ging", "[a-c]*", "*-prod", "a\\*", "", "?*", "team-*-x"}
	names := []string{"", "staging", "staging-1", "staging-a/b", "stxging", "b", "x-prod", "a*", "a", "team-1-x", "team-/-x", "a/b"}
	for _, g := range globs {
		m, err := newMatcher(g)
		if err != nil {
			t.Fatalf("%q: %v", g, err)
		}
		for _, n := range names {
			want, _ := path.Match(g, n)
			if g == "*" {
				want = true
			}
			if got := m.match(n); got != want {
				t.Errorf("matcher %q on %q = %v, path.Match says %v", g, n, got, want)
			}
		}
	}
}

// An allowed request costs no allocation: it runs for every API call.
func TestDecideRequestAllocations(t *testing.T) {
	p := benchPolicy(t)
	for _, req := range []Request{
		res("get", "", "pods", "", "default", "web"),
		res("delete", "", "pods", "", "team-19", "web"),
		nonRes("get", "/apis/apps/v1"),
	} {
		if n := testing.AllocsPerRun(100, func() { p.DecideRequest("plugin-19", "cluster-19", req) }); n != 0 {
			t.Errorf("%+v: %v allocations", req, n)
		}
	}
}

// benchPolicy has 20 rules, each for its own plugin, cluster and namespace.
func benchPolicy(t testing.TB) *Policy {
	var rules []RequestRule
	for i := range 20 {
		rules = append(rules, RequestRule{
			Name:       fmt.Sprintf("rule-%d", i),
			Plugins:    []string{fmt.Sprintf("plugin-%d", i), fmt.Sprintf("tool-%d-*", i)},
			Clusters:   []string{fmt.Sprintf("cluster-%d", i), "staging-*"},
			Verbs:      []string{"create", "update", "patch", "delete"},
			Resources:  []string{"pods", "deployments.apps", "*/scale", "pods/eviction"},
			Namespaces: []string{fmt.Sprintf("team-%d", i), "dev-*"},
		})
	}
	return mustPolicy(t, rules...)
}

func BenchmarkDecideRequest(b *testing.B) {
	p := benchPolicy(b)
	cases := []struct {
		name string
		req  Request
	}{
		{"last rule allows", res("delete", "", "pods", "", "team-19", "web")},
		{"default read-only", res("get", "", "pods", "", "default", "web")},
		{"no rule, verb matches all", res("delete", "apps", "deployments", "", "prod", "web")},
		{"discovery", nonRes("get", "/apis/apps/v1")},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				p.DecideRequest("plugin-19", "cluster-19", c.req)
			}
		})
	}
}

// What the configuration accepts, policy accepts, and the defaults config
// fills in (clusters and namespaces ["*"]) mean what policy's nil means.
func TestRulesFromConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	file := `
[[plugins.rules]]
name = "evictions"
plugins = ["evict", "drain*"]
clusters = ["staging-*"]
verbs = ["create"]
resources = ["pods/eviction"]

[[plugins.rules]]
plugins = ["get_all"]
verbs = ["get", "list"]
resources = ["secrets"]
namespaces = ["team-a", ""]
`
	if err := os.WriteFile(path, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(config.Options{File: path, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	p := mustPolicy(t, cfg.Plugins.Rules...)
	runRequestCases(t, p, []requestCase{
		{name: "evict", plugin: "kubectl-evict", cluster: "staging-1", req: res("create", "", "pods", "eviction", "x", "p"), allowed: true, rule: "evictions"},
		{name: "secrets in team-a", plugin: "get-all", cluster: "prod", req: res("get", "", "secrets", "", "team-a", "s"), allowed: true, rule: "rules[1]"},
		{name: "secrets everywhere", plugin: "get-all", cluster: "prod", req: res("list", "", "secrets", "", "", ""), allowed: true, rule: "rules[1]"},
		{name: "secrets in team-b", plugin: "get-all", cluster: "prod", req: res("get", "", "secrets", "", "team-b", "s"), rule: RuleDefaultDeny},
	})
	// The same rules without the defaults written out decide the same.
	bare := cfg.Plugins.Rules
	for i := range bare {
		if reflect.DeepEqual(bare[i].Clusters, []string{"*"}) {
			bare[i].Clusters = nil
		}
		if reflect.DeepEqual(bare[i].Namespaces, []string{"*"}) {
			bare[i].Namespaces = nil
		}
	}
	q := mustPolicy(t, bare...)
	for _, req := range []Request{res("create", "", "pods", "eviction", "x", "p"), res("create", "", "pods", "eviction", "", "")} {
		for _, cluster := range []string{"staging-1", "prod", "a/b"} {
			if a, b := p.DecideRequest("evict", cluster, req), q.DecideRequest("evict", cluster, req); a != b {
				t.Errorf("%s %+v: with defaults %+v, without %+v", cluster, req, a, b)
			}
		}
	}
}
