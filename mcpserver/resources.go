package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"
)

// The resources an auditor (or a model) reads: what a call's sandbox
// gets, computed by the code that applies it, and what a call did, from
// the audit file.
const (
	ResourceProfiles        = "kubernetes-mcp-server://profiles"
	ResourcePluginProfile   = "kubernetes-mcp-server://profiles/{plugin}"
	ResourceClusterProfile  = "kubernetes-mcp-server://clusters/{cluster}/profiles/{plugin}"
	ResourceCallAuditRecord = "kubernetes-mcp-server://calls/{call_id}/audit"
)

func (s *Server) addResources() {
	s.mcp.AddResource(mcp.NewResource(ResourceProfiles, "profiles",
		mcp.WithResourceDescription("Every plugin policy allows, each with the sandbox profile its calls get on the default cluster "+
			"(the profile's named steps, top to bottom, its OCI spec or WebAssembly settings) and the request rules its API gateway applies; "+
			"then the plugins policy does not allow, with the reason. The same document as `profile show --all`."),
		mcp.WithMIMEType("application/json")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			set, err := s.rt.Profiles(ctx, "")
			if err != nil {
				return nil, err
			}
			return jsonContents(req.Params.URI, set)
		})
	profile := func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
		plugin, cluster := argument(req, "plugin"), argument(req, "cluster")
		p, err := s.rt.Profile(ctx, plugin, cluster)
		if err != nil { // an unknown plugin or cluster
			return nil, fmt.Errorf("%v: %w", err, server.ErrResourceNotFound)
		}
		return jsonContents(req.Params.URI, p)
	}
	s.mcp.AddResourceTemplate(mcp.NewResourceTemplate(ResourcePluginProfile, "plugin-profile",
		mcp.WithTemplateDescription("The sandbox profile a call of one plugin gets on the default cluster, and its request rules, as `profile show NAME --output json` prints it."),
		mcp.WithTemplateMIMEType("application/json")), profile)
	s.mcp.AddResourceTemplate(mcp.NewResourceTemplate(ResourceClusterProfile, "plugin-profile-on-cluster",
		mcp.WithTemplateDescription("The sandbox profile a call of one plugin gets on one cluster, and the request rules there."),
		mcp.WithTemplateMIMEType("application/json")), profile)
	s.mcp.AddResourceTemplate(mcp.NewResourceTemplate(ResourceCallAuditRecord, "call-audit",
		mcp.WithTemplateDescription("The audit records of one call (call_id from its result), as the server wrote them to its audit file: "+
			"one \"request\" record per Kubernetes API request the plugin made, with the gateway's decision and rule, then the \"call\" record that closes it. "+
			"A JSON array; empty while the call runs. Needs [audit] file."),
		mcp.WithTemplateMIMEType("application/json")),
		func(ctx context.Context, req mcp.ReadResourceRequest) ([]mcp.ResourceContents, error) {
			records, err := s.rt.CallAudit(argument(req, "call_id"))
			if err != nil {
				return nil, err
			}
			return jsonContents(req.Params.URI, records)
		})
}

// argument is one variable of the URI template a request matched.
func argument(req mcp.ReadResourceRequest, name string) string {
	switch v := req.Params.Arguments[name].(type) {
	case string:
		return v
	case []string:
		if len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

func jsonContents(uri string, v any) ([]mcp.ResourceContents, error) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return nil, err
	}
	return []mcp.ResourceContents{mcp.TextResourceContents{URI: uri, MIMEType: "application/json", Text: string(b)}}, nil
}
