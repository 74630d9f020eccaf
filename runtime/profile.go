package runtime

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/kubernetes"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// SandboxProfile is what a call of a plugin would get, computed from the
// configuration alone: nothing runs and containerd is not asked.
type SandboxProfile struct {
	Plugin  string `json:"plugin"`
	Cluster string `json:"cluster"`
	// Sandbox names the backend that would run the call, "" when none can.
	Sandbox string `json:"sandbox"`
	// Note says when the container profile below is not what would run:
	// under "none" nothing of it applies (the request rules do).
	Note string `json:"note,omitempty"`
	// Options are the profile's steps, top to bottom.
	Options []string `json:"options"`
	// RequestRules decide, in order, every API request the call's gateway
	// receives.
	RequestRules []policy.RequestRuleView `json:"request_rules"`
	// Spec is the OCI runtime spec of a native plugin's container.
	Spec *specs.Spec `json:"spec,omitempty"`
	// Launch is what the container's first program execs when the call
	// starts it: the plugin, with the call's argv and environment.
	Launch *container.Launch `json:"launch,omitempty"`
	// Wasm is what a WebAssembly plugin's guest runs with.
	Wasm *wasm.Settings `json:"wasm,omitempty"`
	// Pod and NetworkPolicy are what the kubernetes backend creates for a
	// call, and PodLaunch what its kmcp-pod runs (the plugin's bytes and
	// the call's kubeconfig follow on stdin).
	Pod           *corev1.Pod                 `json:"pod,omitempty"`
	NetworkPolicy *networkingv1.NetworkPolicy `json:"network_policy,omitempty"`
	PodLaunch     *launchHeader               `json:"pod_launch,omitempty"`
}

// launchHeader is what a sandbox Pod's kmcp-pod runs.
type launchHeader struct {
	Argv   []string `json:"argv"`
	Env    []string `json:"env"`
	SHA256 string   `json:"sha256"`
}

// ProfileCallID stands for the call id a real call would have.
const ProfileCallID = "CALL-ID"

// Profile returns the sandbox profile of a call of plugin on cluster (""
// for the default), with "ARGS" standing for its arguments: the container
// profile and OCI spec of a native plugin, the wasm profile and settings of
// a WebAssembly one.
func (r *Runtime) Profile(ctx context.Context, plugin, cluster string) (*SandboxProfile, error) {
	p, err := r.discovery.Get(plugin)
	if err != nil {
		return nil, err
	}
	var clusterName string
	if cluster != "" || r.clusters.Default() != "" {
		c, err := r.clusters.Get(cluster)
		if err != nil {
			return nil, err
		}
		clusterName = c.Name
	}
	out := &SandboxProfile{Plugin: p.Name, Cluster: clusterName, RequestRules: r.policy.RequestRules(p.Name, clusterName)}
	b := r.backends.For(p.Kind == discovery.KindWasm)
	if b != nil {
		out.Sandbox = b.Name()
	}
	if p.Kind == discovery.KindWasm {
		call := r.wasm.CallFor(ProfileCallID, p.ResolvedPath, []string{"ARGS"}, pluginEnv, clusterName != "")
		call.Timeout = r.cfg.Plugins.ExecutionTimeout
		out.Wasm = wasm.Spec(call)
		for _, o := range wasm.Profile(call) {
			out.Options = append(out.Options, o.Name)
		}
		if b == nil {
			out.Note = "no wasm sandbox backend is available, so calls of this plugin are refused; this is the profile it would apply"
		}
		return out, nil
	}
	if isKubernetes(b) {
		kcfg := r.kube
		call := kcfg.CallFor(ProfileCallID, ProfileCallID, p.ResolvedPath, []string{"ARGS"}, pluginEnv, clusterName != "", 0,
			r.cfg.Plugins.ExecutionTimeout+kubernetes.DeadlineMargin)
		objs := kcfg.Objects(call)
		out.Pod, out.NetworkPolicy = objs.Pod, objs.NetworkPolicy
		h := kcfg.Launch(call, p.SHA256)
		out.PodLaunch = &launchHeader{Argv: h.Argv, Env: h.Env, SHA256: h.SHA256}
		for _, o := range kcfg.Profile(call) {
			out.Options = append(out.Options, o.Name)
		}
		return out, nil
	}
	cfg := r.container
	call := cfg.CallFor(ProfileCallID, p.ResolvedPath, []string{"ARGS"}, pluginEnv, clusterName != "")
	spec, err := container.Spec(ctx, cfg.Namespace, call)
	if err != nil {
		return nil, fmt.Errorf("sandbox profile of %s: %w", p.Name, err)
	}
	out.Spec = spec
	launch := call.Launch()
	out.Launch = &launch
	switch {
	case b == nil:
		out.Note = "no sandbox backend can run this plugin now, so its calls are refused; this is the profile the container sandbox would apply"
	case unsandboxed(b):
		out.Note = `backend "none": plugins run as plain processes with this server's own rights, files and network; this container profile is NOT applied (the request rules are)`
	case !isContainer(b):
		out.Note = fmt.Sprintf("backend %q runs this plugin: this container profile is NOT applied (the request rules are)", b.Name())
	}
	for _, o := range container.Profile(call) {
		out.Options = append(out.Options, o.Name)
	}
	return out, nil
}

// isKubernetes reports whether b is the kubernetes sandbox.
func isKubernetes(b sandbox.Backend) bool {
	_, ok := b.(*kubernetes.Backend)
	return ok
}

// isContainer reports whether b is the container sandbox, whose profile
// Profile prints.
func isContainer(b sandbox.Backend) bool {
	_, ok := b.(*container.Backend)
	return ok
}

// ProfileSet is what every plugin policy allows gets on one cluster, and
// which plugins get nothing and why: the auditor's one document
// (`profile show --all`, and the MCP resource of the profiles).
type ProfileSet struct {
	Profiles   []*SandboxProfile `json:"profiles"`
	NotAllowed []NotAllowed      `json:"not_allowed"`
}

// NotAllowed is a plugin discovery found that policy lets run nowhere.
type NotAllowed struct {
	Plugin string `json:"plugin"`
	Reason string `json:"reason"`
}

// Profiles is the ProfileSet of the plugins as discovered now, on
// cluster ("" is the default cluster).
func (r *Runtime) Profiles(ctx context.Context, cluster string) (*ProfileSet, error) {
	set := &ProfileSet{Profiles: []*SandboxProfile{}, NotAllowed: []NotAllowed{}}
	for _, info := range r.Plugins() {
		if !info.Allowed {
			set.NotAllowed = append(set.NotAllowed, NotAllowed{Plugin: info.Name, Reason: info.PolicyReason})
			continue
		}
		p, err := r.Profile(ctx, info.Name, cluster)
		if err != nil {
			return nil, fmt.Errorf("profile of %s: %w", info.Name, err)
		}
		set.Profiles = append(set.Profiles, p)
	}
	return set, nil
}
