package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
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
		tool, err := s.pluginTool(info)
		if err != nil {
			// One schema mcp-go cannot serve would break tools/list for
			// every client; leave that one tool out instead.
			s.log.Error("plugin has no tool of its own: its schema does not encode; it still runs through plugins_execute", "plugin", info.Name, "error", err)
			continue
		}
		owners[info.ToolName] = info.Name
		out = append(out, tool)
	}
	return out, owners
}

// pluginTool is the tool that runs one plugin with typed flags. Its input
// schema is encoded here, once per change of the plugin, so that every
// tools/list copies bytes instead of walking maps. It declares no output
// schema: its result is plugins_execute's (see resultSchema).
func (s *Server) pluginTool(info runtime.PluginInfo) (server.ServerTool, error) {
	params, skipped := exposedParams(info.Parameters)
	if len(skipped) > 0 {
		s.log.Debug("plugin flags not offered as tool parameters", "plugin", info.Name, "flags", strings.Join(skipped, "; "))
	}
	props := make([]namedProperty, 0, len(params)+3)
	var required []string
	for _, p := range params {
		props = append(props, namedProperty{p.Name, paramSchema(p)})
		if p.Required {
			required = append(required, p.Name)
		}
	}
	argsText := `Positional arguments, one argv element each (no shell quoting); also flags without a parameter here, e.g. "--flag=value".`
	if info.HelpWarning != "" {
		argsText = `All arguments, flags included, in order, one argv element each (no shell quoting), e.g. ["--namespace=default", "pods"].`
	}
	props = append(props,
		namedProperty{argsProperty, property{Type: "array", Items: &property{Type: "string"}, Description: argsText}},
		namedProperty{clusterProperty, property{Type: "string", Description: s.clusterParamText()}},
		namedProperty{stdinProperty, property{Type: "string", Description: stdinText}},
	)
	input, err := objectSchema(props, required)
	if err != nil {
		return server.ServerTool{}, fmt.Errorf("inputSchema of %s: %w", info.ToolName, err)
	}
	title := "Plugin: " + info.Name
	name := info.Name
	return server.ServerTool{
		Tool: mcp.Tool{
			Name:           info.ToolName,
			Title:          title,
			Description:    s.pluginDescription(info),
			RawInputSchema: input,
			Annotations:    annotations(title, false, info.Destructive, false, true),
		},
		Handler: func(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return s.handlePlugin(ctx, req, name, params), nil
		},
	}, nil
}

// pluginDescription tells the model what one plugin does and what is
// particular to its tool. What every plugin tool shares is said once: the
// result's fields in plugins_execute, the clusters in the cluster
// parameter, an isolating sandbox in the server's instructions.
func (s *Server) pluginDescription(info runtime.PluginInfo) string {
	var b strings.Builder
	if d := strings.TrimSpace(info.Description); d != "" {
		b.WriteString(d)
		if !strings.HasSuffix(d, ".") {
			b.WriteString(".")
		}
		b.WriteString(" ")
	}
	fmt.Fprintf(&b, "Runs `kubectl %s` on one cluster; returns its stdout, stderr, exit code and status (plugins_execute's result).", info.Command)
	if info.HelpWarning != "" {
		fmt.Fprintf(&b, " Its flags are unknown (%s): pass every argument raw in args; [\"--help\"] prints its usage.", helpWarning(info.HelpWarning))
	}
	if info.Destructive {
		b.WriteString(" Destructive: it may change or delete cluster resources; make sure that is intended.")
	}
	if note := s.pluginSandboxNote(info.Kind); note != "" {
		b.WriteString(" " + note)
	}
	return b.String()
}

// pluginSandboxNote is what a model must know, per tool, about where a
// plugin of this kind runs: nowhere, or without isolation. A sandbox that
// isolates needs no word on every tool.
func (s *Server) pluginSandboxNote(kind discovery.Kind) string {
	sb := s.rt.Sandbox()
	switch {
	case kind == discovery.KindWasm && sb.Wasm:
		return ""
	case kind == discovery.KindWasm:
		return "It cannot run here: the wasm sandbox is not available."
	case !sb.Available:
		return "It cannot run here: no sandbox backend for native plugins is available."
	case !sb.Isolated:
		return "Runs WITHOUT a sandbox, with this server's own rights, files and network."
	}
	return ""
}

// property is one input property's JSON Schema.
type property struct {
	Type        string    `json:"type"`
	Items       *property `json:"items,omitempty"`
	Description string    `json:"description,omitempty"`
}

type namedProperty struct {
	name string
	property
}

// objectSchema encodes an input schema with its properties in the order
// given (the help's, then args, cluster and stdin), which a map would lose.
// No other argument is accepted.
func objectSchema(props []namedProperty, required []string) (json.RawMessage, error) {
	var b bytes.Buffer
	b.WriteString(`{"type":"object","properties":{`)
	for i, p := range props {
		name, err := json.Marshal(p.name)
		if err != nil {
			return nil, err
		}
		schema, err := json.Marshal(p.property)
		if err != nil {
			return nil, fmt.Errorf("property %q: %w", p.name, err)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(name)
		b.WriteByte(':')
		b.Write(schema)
	}
	b.WriteByte('}')
	if len(required) > 0 {
		list, err := json.Marshal(required)
		if err != nil {
			return nil, err
		}
		b.WriteString(`,"required":`)
		b.Write(list)
	}
	b.WriteString(`,"additionalProperties":false}`)
	return bytes.Clone(b.Bytes()), nil // without the buffer's spare room, kept for every tool
}

// paramSchema is one flag's JSON Schema.
func paramSchema(p helpparse.Parameter) property {
	desc := strings.TrimSpace(p.Description)
	if desc != "" && !strings.HasSuffix(desc, ".") {
		desc += "."
	}
	var extra []string
	var schema property
	switch p.Type {
	case helpparse.TypeInt:
		schema.Type = "integer"
	case helpparse.TypeFloat:
		schema.Type = "number"
	case helpparse.TypeBool:
		schema.Type = "boolean"
	case helpparse.TypeDuration:
		schema.Type = "string"
		extra = append(extra, "A duration such as 30s, 5m or 1h30m.")
	case helpparse.TypeArray:
		schema.Type = "array"
		schema.Items = &property{Type: "string"}
		extra = append(extra, "Each element is passed as its own "+flagForm(p)+".")
	default:
		schema.Type = "string"
	}
	if p.Default != "" {
		extra = append(extra, fmt.Sprintf("Default: %s.", p.Default))
	}
	extra = append(extra, "Flag: "+flagSpelling(p)+".")
	schema.Description = strings.TrimSpace(desc + " " + strings.Join(extra, " "))
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
