package mcpserver

import (
	"context"
	"errors"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/krew"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

const toolInstall = "plugins_install"

// installTools are plugins_install, served only where the operator turned
// installs on: a tool that always refuses would only cost the model.
func (s *Server) installTools() []server.ServerTool {
	if !s.rt.InstallEnabled() {
		return nil
	}
	indexes := s.rt.InstallIndexes()
	from := "No krew index is allowed, so nothing can be installed by name here."
	if len(indexes) > 0 {
		from = "Allowed indexes: " + strings.Join(indexes, ", ") + "."
	}
	return []server.ServerTool{{
		Tool: mcp.NewTool(toolInstall,
			mcp.WithToolTitle("Plugins: Install"),
			mcp.WithDescription(strings.Join([]string{
				"Installs a kubectl plugin with krew from an index the operator allows, then rediscovers plugins, so its plugin_<name> tool appears (clients that support it get notifications/tools/list_changed).",
				"Returns what was installed: name, version, index, outcome (installed, updated, already_installed, up_to_date), the plugin file's path and sha256, the archive's sha256, and the plugin as plugins_info describes it, with the tool that runs it.",
				"An installed plugin runs only where policy allows it; a plugin policy blocks is refused before anything is downloaded, and a failed install changes nothing.",
				from,
			}, " ")),
			mcp.WithString("plugin", mcp.Required(), mcp.Description(`The krew plugin's name, e.g. "ctx", or INDEX/NAME to name the index, e.g. "default/ctx".`)),
			mcp.WithBoolean("update", mcp.Description("When the plugin is installed already, install its newest version. Default false: an installed plugin is left as it is.")),
			mcp.WithSchemaAdditionalProperties(false),
			mcp.WithToolAnnotation(annotations("Plugins: Install", false, false, true, true)),
		),
		Handler: s.handleInstall,
	}}
}

// installText tells the model, in the server's instructions, that it may
// install what it is missing; "" when it may not.
func (s *Server) installText() string {
	if !s.rt.InstallEnabled() {
		return ""
	}
	return "When no discovered plugin does the job, plugins_install installs one with krew from the operator's indexes; policy still decides whether it runs."
}

// installResult is plugins_install's answer: the runtime's, with the tool
// as served.
type installResult struct {
	*runtime.InstallResult
	Tool string `json:"tool,omitempty"`
}

func (s *Server) handleInstall(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args, err := callArguments(req)
	if err != nil {
		return errorResult("%v", err), nil
	}
	if err := checkKeys(args, "plugin", "update"); err != nil {
		return errorResult("%v", err), nil
	}
	name, err := optString(args, "plugin")
	if err != nil {
		return errorResult("%v", err), nil
	}
	if strings.TrimSpace(name) == "" {
		return errorResult("plugin is required: the krew plugin's name, e.g. ctx, or INDEX/NAME"), nil
	}
	update, err := optBool(args, "update")
	if err != nil {
		return errorResult("%v", err), nil
	}
	if s.stopping.Load() {
		return errorResult("nothing was installed: %v and takes no new calls", errShuttingDown), nil
	}
	res, err := s.rt.Install(ctx, krew.Request{Plugin: name, Update: update})
	if err != nil {
		if errors.Is(err, runtime.ErrShuttingDown) {
			return errorResult("nothing was installed: %v and takes no new calls", errShuttingDown), nil
		}
		return errorResult("%v", err), nil
	}
	// Discovery told SyncTools already; this makes sure the new tool is
	// served before the answer that names it.
	s.SyncTools()
	out := installResult{InstallResult: res}
	if res.Plugin != nil {
		out.Tool = s.servedTool(*res.Plugin)
	}
	return jsonResult(res.Summary(), out), nil
}
