package runtime

import (
	"context"
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/container"
)

// SandboxProfile is what a call of a plugin would get, computed from the
// configuration alone: nothing runs and containerd is not asked.
type SandboxProfile struct {
	Plugin  string `json:"plugin"`
	Cluster string `json:"cluster"`
	// Options are the profile's steps, top to bottom.
	Options []string `json:"options"`
	// RequestRules decide, in order, every API request the call's gateway
	// receives.
	RequestRules []policy.RequestRuleView `json:"request_rules"`
	Spec         *specs.Spec              `json:"spec"`
}

// ProfileCallID stands for the call id a real call would have.
const ProfileCallID = "CALL-ID"

// Profile returns the container sandbox profile of a call of plugin on
// cluster ("" for the default), with "ARGS" standing for its arguments.
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
	cfg := r.container
	call := cfg.CallFor(ProfileCallID, p.ResolvedPath, []string{"ARGS"}, pluginEnv, clusterName != "")
	spec, err := container.Spec(ctx, cfg.Namespace, call)
	if err != nil {
		return nil, fmt.Errorf("sandbox profile of %s: %w", p.Name, err)
	}
	out := &SandboxProfile{Plugin: p.Name, Cluster: clusterName, Spec: spec, RequestRules: r.policy.RequestRules(p.Name, clusterName)}
	for _, o := range container.Profile(call) {
		out.Options = append(out.Options, o.Name)
	}
	return out, nil
}
