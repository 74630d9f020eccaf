package mcpserver

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

func readResource(t *testing.T, c *testClient, uri string) (string, error) {
	t.Helper()
	res, err := c.ReadResource(context.Background(), mcp.ReadResourceRequest{Params: mcp.ReadResourceParams{URI: uri}})
	if err != nil {
		return "", err
	}
	if len(res.Contents) != 1 {
		t.Fatalf("%s: %d contents, want 1", uri, len(res.Contents))
	}
	tc, ok := res.Contents[0].(mcp.TextResourceContents)
	if !ok || tc.MIMEType != "application/json" || tc.URI != uri {
		t.Fatalf("%s: contents %#v", uri, res.Contents[0])
	}
	return tc.Text, nil
}

// The profiles and a call's audit records are resources, on both
// revisions: the same documents `profile show` and `audit tail` print.
func TestResources(t *testing.T) {
	f := newFixture(t)
	for _, version := range []string{mcp.LATEST_LEGACY_PROTOCOL_VERSION, mcp.LATEST_PROTOCOL_VERSION} {
		t.Run(version, func(t *testing.T) {
			c := connect(t, f.srv, version)
			ctx := context.Background()
			list, err := c.ListResources(ctx, mcp.ListResourcesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			if len(list.Resources) != 1 || list.Resources[0].URI != ResourceProfiles || !strings.Contains(list.Resources[0].Description, "profile show --all") {
				t.Errorf("resources/list = %+v, want the profiles", list.Resources)
			}
			templates, err := c.ListResourceTemplates(ctx, mcp.ListResourceTemplatesRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, tpl := range templates.ResourceTemplates {
				got = append(got, tpl.URITemplate.Raw())
			}
			slices.Sort(got)
			want := []string{ResourceCallAuditRecord, ResourceClusterProfile, ResourcePluginProfile}
			if !slices.Equal(got, want) {
				t.Errorf("resources/templates/list = %q, want %q", got, want)
			}

			text, err := readResource(t, c, ResourceProfiles)
			if err != nil {
				t.Fatal(err)
			}
			var set runtime.ProfileSet
			if err := json.Unmarshal([]byte(text), &set); err != nil {
				t.Fatal(err)
			}
			all, _ := f.rt.Profiles(ctx, "")
			if len(set.Profiles) != len(all.Profiles) || len(set.Profiles) == 0 ||
				!slices.ContainsFunc(set.NotAllowed, func(n runtime.NotAllowed) bool { return n.Plugin == "secret" && n.Reason != "" }) {
				t.Errorf("profiles: %d profiles (want %d), not allowed %+v (want secret with its reason)", len(set.Profiles), len(all.Profiles), set.NotAllowed)
			}

			for uri, cluster := range map[string]string{
				"kubernetes-mcp-server://profiles/echo":             "c1",
				"kubernetes-mcp-server://clusters/c2/profiles/echo": "c2",
			} {
				text, err := readResource(t, c, uri)
				if err != nil {
					t.Fatalf("%s: %v", uri, err)
				}
				var p runtime.SandboxProfile
				if err := json.Unmarshal([]byte(text), &p); err != nil {
					t.Fatal(err)
				}
				if p.Plugin != "echo" || p.Cluster != cluster || len(p.RequestRules) == 0 {
					t.Errorf("%s: plugin %q cluster %q, %d request rules", uri, p.Plugin, p.Cluster, len(p.RequestRules))
				}
			}
			for _, uri := range []string{
				"kubernetes-mcp-server://profiles/no-such-plugin",
				"kubernetes-mcp-server://clusters/no-such-cluster/profiles/echo",
				"kubernetes-mcp-server://nothing-here",
			} {
				if _, err := readResource(t, c, uri); err == nil || !strings.Contains(err.Error(), "not found") {
					t.Errorf("%s: error %v, want not found", uri, err)
				}
			}
			// Without an audit file there is nothing to read, and the
			// error says which key to set.
			if _, err := readResource(t, c, "kubernetes-mcp-server://calls/some-call/audit"); err == nil || !strings.Contains(err.Error(), "[audit] file") {
				t.Errorf("call audit without an audit file: %v", err)
			}
		})
	}
}
