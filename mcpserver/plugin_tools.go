package mcpserver

import (
	"context"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// pluginTools builds one plugin_<name> tool per allowed plugin whose name
// forms a tool name. A tool name that another tool already has is skipped
// with a warning: the plugin still runs through plugins_execute.
// It also returns which plugin each tool runs.
func (s *Server) pluginTools() ([]server.ServerTool, map[string]string) {
	taken := map[string]string{toolList: "", toolInfo: "", toolDiscover: "", toolExecute: ""}
	owners := map[string]string{}
	var out []server.ServerTool
	for _, info := range s.rt.Plugins() { // sorted by name: the first spelling wins
		if !info.Allowed || info.ToolName == "" || info.Plugin == nil {
			continue
		}
		if other, ok := taken[info.ToolName]; ok {
			if other == "" {
				other = "a management tool"
			} else {
				other = "plugin " + other
			}
			s.log.Warn("plugin has no tool of its own: its tool name is taken; it still runs through plugins_execute",
				"plugin", info.Name, "tool", info.ToolName, "taken_by", other)
			continue
		}
		taken[info.ToolName] = info.Name
		owners[info.ToolName] = info.Name
		out = append(out, s.pluginTool(info))
	}
	return out, owners
}

// pluginTool is the tool that runs one plugin with typed flags.
func (s *Server) pluginTool(info runtime.PluginInfo) server.ServerTool {
	params, skipped := exposedParams(info.Parameters)
	if len(skipped) > 0 {
		s.log.Debug("plugin flags not offered as tool parameters", "plugin", info.Name, "flags", strings.Join(skipped, "; "))
	}
	title := "Plugin: " + info.Name
	t := mcp.NewTool(info.ToolName,
		mcp.WithToolTitle(title),
		mcp.WithDescription(s.pluginDescription(info, params)),
		mcp.WithRawOutputSchema(s.resultSchema),
		mcp.WithToolAnnotation(annotations(title, false, info.Destructive, false, true)),
	)
	order := make([]string, 0, len(params)+2)
	for _, p := range params {
		t.InputSchema.Properties[p.Name] = paramSchema(p)
		if p.Required {
			t.InputSchema.Required = append(t.InputSchema.Required, p.Name)
		}
		order = append(order, p.Name)
	}
	argsText := "Positional arguments, in order, each its own argv element after the flags (no shell quoting)."
	if info.HelpWarning != "" {
		argsText = `All arguments, flags included, in order, each its own argv element (no shell quoting), e.g. ["--namespace=default", "pods"].`
	} else {
		argsText += ` Flags without a parameter here can be passed too, e.g. "--flag=value".`
	}
	t.InputSchema.Properties[argsProperty] = map[string]any{
		"type":        "array",
		"items":       map[string]any{"type": "string"},
		"description": argsText,
	}
	t.InputSchema.Properties[clusterProperty] = map[string]any{
		"type":        "string",
		"description": s.clusterParamText(),
	}
	t.InputSchema.Properties[stdinProperty] = map[string]any{
		"type":        "string",
		"description": stdinText,
	}
	t.InputSchema.PropertyOrder = append(order, argsProperty, clusterProperty, stdinProperty)
	t.InputSchema.AdditionalProperties = false

	name := info.Name
	return server.ServerTool{
		Tool: t,
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return s.handlePlugin(ctx, req, name, params), nil
		},
	}
}

func (s *Server) pluginDescription(info runtime.PluginInfo, params []helpparse.Parameter) string {
	var b strings.Builder
	if d := strings.TrimSpace(info.Description); d != "" {
		b.WriteString(d)
		if !strings.HasSuffix(d, ".") {
			b.WriteString(".")
		}
		b.WriteString(" ")
	}
	fmt.Fprintf(&b, "Runs the kubectl plugin %s (`kubectl %s`) on one cluster and returns its stdout, stderr, exit code and status, as text and as a structured result.", info.Name, info.Command)
	if len(params) > 0 {
		b.WriteString(" Its flags are the parameters below; positional arguments go in args.")
	}
	if info.HelpWarning != "" {
		fmt.Fprintf(&b, " Its flags are unknown (%s): pass every argument raw in args; [\"--help\"] prints its usage.", helpWarning(info.HelpWarning))
	}
	if info.Destructive {
		b.WriteString(" Destructive: it may change or delete cluster resources; make sure that is intended.")
	}
	b.WriteString(" " + s.clusterText() + " " + s.sandboxText())
	return b.String()
}

// paramSchema is one flag's JSON Schema.
func paramSchema(p helpparse.Parameter) map[string]any {
	desc := strings.TrimSpace(p.Description)
	if desc != "" && !strings.HasSuffix(desc, ".") {
		desc += "."
	}
	var extra []string
	schema := map[string]any{}
	switch p.Type {
	case helpparse.TypeInt:
		schema["type"] = "integer"
	case helpparse.TypeFloat:
		schema["type"] = "number"
	case helpparse.TypeBool:
		schema["type"] = "boolean"
	case helpparse.TypeDuration:
		schema["type"] = "string"
		extra = append(extra, "A duration such as 30s, 5m or 1h30m.")
	case helpparse.TypeArray:
		schema["type"] = "array"
		schema["items"] = map[string]any{"type": "string"}
		extra = append(extra, "Each element is passed as its own "+flagForm(p)+".")
	default:
		schema["type"] = "string"
	}
	if p.Default != "" {
		extra = append(extra, fmt.Sprintf("Default: %s.", p.Default))
	}
	extra = append(extra, "Flag: "+flagSpelling(p)+".")
	schema["description"] = strings.TrimSpace(desc + " " + strings.Join(extra, " "))
	return schema
}

// flagForm is how one value of a parameter reaches the plugin.
func flagForm(p helpparse.Parameter) string {
	if shortOnly(p) {
		return "-" + p.Short + " value"
	}
	return "--" + p.Name + "=value"
}

// handlePlugin runs one plugin_<name> call.
func (s *Server) handlePlugin(ctx context.Context, req mcp.CallToolRequest, plugin string, params []helpparse.Parameter) *mcp.CallToolResult {
	args, err := callArguments(req)
	if err != nil {
		return errorResult("%v", err)
	}
	cluster, err := optString(args, clusterProperty)
	if err != nil {
		return errorResult("%v", err)
	}
	delete(args, clusterProperty)
	stdin, err := optString(args, stdinProperty)
	if err != nil {
		return errorResult("%v", err)
	}
	delete(args, stdinProperty)
	argv, err := buildArgv(params, args)
	if err != nil {
		return errorResult("%s: %v", req.Params.Name, err)
	}
	return s.execute(ctx, req, plugin, argv, cluster, stdin)
}
