package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/pluginname"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// The management tools, named as the proposal names them.
const (
	toolList     = "plugins_list"
	toolInfo     = "plugins_info"
	toolDiscover = "plugins_discover"
	toolExecute  = "plugins_execute"
)

// managementTools are the plugins_* tools, whatever plugins exist.
func (s *Server) managementTools() []server.ServerTool {
	names := "Plugin names may be written get_all or get-all, with or without the kubectl- prefix."
	tools := []server.ServerTool{
		{
			Tool: mcp.NewTool(toolList,
				mcp.WithToolTitle("Plugins: List"),
				mcp.WithDescription(strings.Join([]string{
					"Lists the kubectl plugins this server discovered and whether policy lets each one run.",
					"Returns JSON with, per plugin: name, the kubectl command it adds, a description, allowed (and policy_reason when it is not), destructive, and tool (the plugin_<name> tool that runs it, when there is one).",
					"Use it first to find the plugin for a task; then call its plugin_<name> tool, or plugins_execute with raw arguments.",
					"show_details adds each plugin's flags (parameters), file path, SHA-256, help warnings, usage counts and discovery warnings.",
					names, s.sandboxText(),
				}, " ")),
				mcp.WithBoolean("show_details", mcp.Description("Include parameters, path, sha256, usage and discovery warnings. Default false.")),
				mcp.WithString("filter", mcp.Description("Only plugins whose name or command matches: a glob such as cert* or *ceph*, or a plain word matched as a substring. Empty lists all.")),
				mcp.WithSchemaAdditionalProperties(false),
				mcp.WithToolAnnotation(annotations("Plugins: List", true, false, true, false)),
			),
			Handler: s.handleList,
		},
		{
			Tool: mcp.NewTool(toolInfo,
				mcp.WithToolTitle("Plugins: Info"),
				mcp.WithDescription(strings.Join([]string{
					"Describes one kubectl plugin: its command, description, flags with their types, defaults and whether they are required, the plugin_<name> tool that runs it, policy (allowed, destructive, the rule that decided), its file (path, SHA-256) and how often it ran.",
					"Use it before running a plugin you have not used yet, to learn its flags.",
					names,
				}, " ")),
				mcp.WithString("plugin", mcp.Required(), mcp.Description("The plugin's name, e.g. get_all, get-all or kubectl-get_all.")),
				mcp.WithSchemaAdditionalProperties(false),
				mcp.WithToolAnnotation(annotations("Plugins: Info", true, false, true, false)),
			),
			Handler: s.handleInfo,
		},
		{
			Tool: mcp.NewTool(toolDiscover,
				mcp.WithToolTitle("Plugins: Discover"),
				mcp.WithDescription(strings.Join([]string{
					"Searches the plugin folders again (PATH, the configured plugin_paths and krew's bin folder) and updates the plugin list and the plugin_<name> tools.",
					"Returns the changes (added, removed, changed plugins), the number of plugins and the tools now served; clients that support it get notifications/tools/list_changed.",
					"Use it after a plugin was installed or removed, or when a plugin you expect is missing from plugins_list.",
				}, " ")),
				mcp.WithBoolean("force", mcp.Description("Accepted for compatibility. Every call rescans all folders; files that did not change keep their cached help.")),
				mcp.WithSchemaAdditionalProperties(false),
				mcp.WithToolAnnotation(annotations("Plugins: Discover", false, false, true, false)),
			),
			Handler: s.handleDiscover,
		},
		{
			Tool: mcp.NewTool(toolExecute,
				mcp.WithToolTitle("Plugins: Execute"),
				mcp.WithDescription(strings.Join([]string{
					"Runs one allowed kubectl plugin with raw command-line arguments on one cluster and returns its output.",
					"Returns text (a summary line, stdout, stderr and a message when the call did not succeed) and a structured result: call_id, plugin, cluster, output, error (stderr), exit_code, status (ok, failed, timeout, cancelled, killed; refused or error when it did not run), duration_ms, sandbox, truncated, message.",
					"Every plugin_<name> tool returns this same result; this tool's outputSchema describes each field.",
					"Prefer the plugin's own plugin_<name> tool when it exists: its flags are typed parameters. Use this tool for plugins without one or for arguments that tool does not offer.",
					"Arguments are passed as the plugin's argv, one element each, never through a shell; flags choosing a kubeconfig, context, server or credentials are refused.",
					names, s.clusterText(), s.sandboxText(),
				}, " ")),
				mcp.WithString("plugin", mcp.Required(), mcp.Description("The plugin's name, e.g. get_all or get-all.")),
				mcp.WithArray("args", mcp.WithStringItems(), mcp.Description(`Arguments in order, each its own argv element, e.g. ["pods", "--namespace=default"]. No shell quoting: one element is one argument.`)),
				mcp.WithString("cluster", mcp.Description(s.clusterParamText())),
				mcp.WithString("stdin", mcp.Description(stdinText+` For example a manifest for kube-score, with args ["score", "-"].`)),
				mcp.WithSchemaAdditionalProperties(false),
				mcp.WithRawOutputSchema(s.resultSchema),
				mcp.WithToolAnnotation(annotations("Plugins: Execute", false, true, false, true)),
			),
			Handler: s.handleExecute,
		},
	}
	return append(tools, s.installTools()...)
}

// clusterParamText describes a cluster parameter.
func (s *Server) clusterParamText() string {
	if names, def := s.clusterNames(); len(names) == 0 && def == "" {
		return "No clusters are configured: leave it empty."
	}
	return "The cluster to run on. " + s.clusterText()
}

// callArguments decodes a call's arguments, keeping numbers exact.
func callArguments(req mcp.CallToolRequest) (map[string]any, error) {
	raw := []byte(req.Params.RawArguments)
	if len(raw) == 0 && req.Params.Arguments != nil {
		var err error
		if raw, err = json.Marshal(req.Params.Arguments); err != nil {
			return nil, fmt.Errorf("arguments cannot be read: %v", err)
		}
	}
	return decodeArguments(raw)
}

// checkKeys refuses argument names a management tool does not take.
func checkKeys(args map[string]any, valid ...string) error {
	var unknown []string
	for k := range args {
		found := false
		for _, v := range valid {
			found = found || k == v
		}
		if !found {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	return fmt.Errorf("unknown argument %s; valid arguments are: %s", quoteList(unknown), strings.Join(valid, ", "))
}

func optBool(args map[string]any, key string) (bool, error) {
	v, ok := args[key]
	if !ok || v == nil {
		return false, nil
	}
	b, ok := v.(bool)
	if !ok {
		return false, fmt.Errorf("argument %q must be a boolean, not %s", key, jsonKind(v))
	}
	return b, nil
}

func optString(args map[string]any, key string) (string, error) {
	v, ok := args[key]
	if !ok || v == nil {
		return "", nil
	}
	str, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("argument %q must be a string, not %s", key, jsonKind(v))
	}
	if err := checkValue(fmt.Sprintf("argument %q", key), str); err != nil {
		return "", err
	}
	return str, nil
}

// pluginArgument reads and checks the plugin argument before the runtime
// sees it: a name with a path, a NUL or characters outside printable ASCII
// is no plugin's name.
func pluginArgument(args map[string]any) (string, error) {
	v, ok := args["plugin"]
	if !ok || v == nil {
		return "", fmt.Errorf(`argument "plugin" is required: the plugin's name, e.g. get_all (plugins_list shows them)`)
	}
	name, ok := v.(string)
	if !ok {
		return "", fmt.Errorf(`argument "plugin" must be a string, not %s`, jsonKind(v))
	}
	if err := pluginname.Check(name); err != nil {
		return name, refusalError{err}
	}
	return name, nil
}

// errorResult is a tool result that tells the model what went wrong.
func errorResult(format string, args ...any) *mcp.CallToolResult {
	return mcp.NewToolResultError(fmt.Sprintf(format, args...))
}

// jsonResult returns v as indented JSON text after a summary line, and as
// structuredContent.
func jsonResult(summary string, v any) *mcp.CallToolResult {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return errorResult("result cannot be encoded: %v", err)
	}
	return &mcp.CallToolResult{
		Content:           []mcp.Content{mcp.NewTextContent(summary + "\n" + string(b))},
		StructuredContent: v,
	}
}

// listedPlugin is one plugins_list entry without details.
type listedPlugin struct {
	Name         string         `json:"name"`
	Command      string         `json:"command"`
	Description  string         `json:"description,omitempty"`
	Kind         discovery.Kind `json:"kind"`
	Allowed      bool           `json:"allowed"`
	Destructive  bool           `json:"destructive"`
	PolicyReason string         `json:"policy_reason,omitempty"`
	Tool         string         `json:"tool,omitempty"`
	HelpWarning  string         `json:"help_warning,omitempty"`
}

// detailedPlugin is one plugins_list entry with details, and plugins_info's answer.
type detailedPlugin struct {
	runtime.PluginInfo
	// Tool is the plugin_<name> tool served for it, or "" when there is none.
	Tool string `json:"tool"`
}

type listResult struct {
	Count          int                 `json:"count"`
	Allowed        int                 `json:"allowed"`
	Sandbox        string              `json:"sandbox"`
	Clusters       []string            `json:"clusters"`
	DefaultCluster string              `json:"default_cluster"`
	Plugins        any                 `json:"plugins"`
	Warnings       []discovery.Warning `json:"warnings,omitempty"`
	WarningCount   int                 `json:"warning_count"`
}

// sandboxName names the backend plugins run in, or "unavailable".
func (s *Server) sandboxName() string {
	if sb := s.rt.Sandbox(); sb.Available {
		return sb.Name
	}
	return "unavailable"
}

// servedTool is the tool serving a plugin now, or "".
func (s *Server) servedTool(info runtime.PluginInfo) string {
	if info.ToolName == "" {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, served := s.tools[info.ToolName]; !served || s.owners[info.ToolName] != info.Name {
		return ""
	}
	return info.ToolName
}

// matchFilter matches a glob, or a plain word as a substring, against a
// plugin's name in every spelling: both sides are spelled as
// pluginname.Normalize spells names and globs, so "foo_*", "foo-*",
// "kubectl-foo*" and "foo bar" find kubectl-foo_bar and kubectl-foo-bar.
func matchFilter(filter string, info runtime.PluginInfo) (bool, error) {
	if filter == "" {
		return true, nil
	}
	name, f := pluginname.Normalize(info.Name), pluginname.Normalize(filter)
	if !strings.ContainsAny(filter, `*?[\`) {
		return strings.Contains(strings.ToLower(name), strings.ToLower(f)), nil
	}
	ok, err := path.Match(f, name)
	if err != nil {
		return false, fmt.Errorf("filter %q is not a valid glob: %v", filter, err)
	}
	return ok, nil
}

func (s *Server) handleList(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args, err := callArguments(req)
	if err != nil {
		return errorResult("%v", err), nil
	}
	if err := checkKeys(args, "show_details", "filter"); err != nil {
		return errorResult("%v", err), nil
	}
	details, err := optBool(args, "show_details")
	if err != nil {
		return errorResult("%v", err), nil
	}
	filter, err := optString(args, "filter")
	if err != nil {
		return errorResult("%v", err), nil
	}
	var brief []listedPlugin
	var full []detailedPlugin
	allowed := 0
	for _, info := range s.rt.Plugins() {
		ok, err := matchFilter(filter, info)
		if err != nil {
			return errorResult("%v", err), nil
		}
		if !ok {
			continue
		}
		if info.Allowed {
			allowed++
		}
		tool := s.servedTool(info)
		if details {
			full = append(full, detailedPlugin{PluginInfo: info, Tool: tool})
			continue
		}
		e := listedPlugin{Name: info.Name, Command: info.Command, Description: info.Description, Kind: info.Kind,
			Allowed: info.Allowed, Destructive: info.Destructive, Tool: tool, HelpWarning: info.HelpWarning}
		if !info.Allowed {
			e.PolicyReason = info.PolicyReason
		}
		brief = append(brief, e)
	}
	names, def := s.clusterNames()
	res := listResult{Sandbox: s.sandboxName(), Clusters: names, DefaultCluster: def, Allowed: allowed}
	warnings := s.rt.Warnings()
	res.WarningCount = len(warnings)
	if details {
		res.Count, res.Plugins = len(full), full
		if full == nil {
			res.Plugins = []detailedPlugin{}
		}
		res.Warnings = warnings
	} else {
		res.Count, res.Plugins = len(brief), brief
		if brief == nil {
			res.Plugins = []listedPlugin{}
		}
	}
	summary := fmt.Sprintf("%d plugins (%d allowed to run); sandbox: %s.", res.Count, allowed, res.Sandbox)
	if filter != "" {
		summary = fmt.Sprintf("%d plugins match %q (%d allowed to run); sandbox: %s.", res.Count, filter, allowed, res.Sandbox)
	}
	switch sb := s.rt.Sandbox(); {
	case sb.Available && !sb.Isolated:
		summary += " Plugins run without a sandbox, with this server's own rights."
		if sb.Wasm {
			summary += " WebAssembly plugins (kind wasm) still run in the wasm sandbox."
		}
	case sb.Wasm && !sb.Available:
		summary += " Only WebAssembly plugins (kind wasm) can run here, in the wasm sandbox."
	case sb.Wasm:
		summary += " WebAssembly plugins (kind wasm) run in the wasm sandbox."
	}
	return jsonResult(summary, res), nil
}

func (s *Server) handleInfo(_ context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args, err := callArguments(req)
	if err != nil {
		return errorResult("%v", err), nil
	}
	if err := checkKeys(args, "plugin"); err != nil {
		return errorResult("%v", err), nil
	}
	name, err := pluginArgument(args)
	if err != nil {
		return errorResult("%v", err), nil
	}
	info, err := s.rt.Plugin(name)
	if err != nil {
		return errorResult("%v", err), nil
	}
	d := detailedPlugin{PluginInfo: info, Tool: s.servedTool(info)}
	return jsonResult(describePlugin(d), d), nil
}

// describePlugin is plugins_info's text for people and models.
func describePlugin(d detailedPlugin) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Plugin %s (kubectl %s)", d.Name, d.Command)
	if d.Description != "" {
		fmt.Fprintf(&b, ": %s", d.Description)
	}
	b.WriteString("\n")
	switch {
	case !d.Allowed:
		fmt.Fprintf(&b, "Not allowed to run: %s (rule %s).\n", d.PolicyReason, d.PolicyRule)
	case d.Tool != "":
		fmt.Fprintf(&b, "Allowed. Run it with the %s tool (typed flags) or plugins_execute (raw arguments).\n", d.Tool)
	default:
		b.WriteString("Allowed. Run it with plugins_execute (raw arguments).\n")
	}
	if d.Destructive {
		b.WriteString("Destructive: it may change or delete cluster resources.\n")
	}
	if d.HelpWarning != "" {
		fmt.Fprintf(&b, "Its flags are unknown (%s): pass raw arguments; [\"--help\"] prints its usage.\n", helpWarning(d.HelpWarning))
	}
	if len(d.Parameters) > 0 {
		b.WriteString("Flags:\n")
		for _, p := range d.Parameters {
			b.WriteString("  " + flagSpelling(p) + " (" + p.Type)
			if p.Required {
				b.WriteString(", required")
			}
			if p.Default != "" {
				fmt.Fprintf(&b, ", default %s", p.Default)
			}
			b.WriteString(")")
			if p.Description != "" {
				b.WriteString(": " + p.Description)
			}
			b.WriteString("\n")
		}
	}
	if d.LastUsed != nil {
		times := "times"
		if d.ExecutionCount == 1 {
			times = "time"
		}
		fmt.Fprintf(&b, "Ran %d %s, last at %s.\n", d.ExecutionCount, times, d.LastUsed.UTC().Format(time.RFC3339))
	}
	b.WriteString("Details as JSON:")
	return b.String()
}

// helpWarning is a help warning without its advice, which callers give in
// their own words.
func helpWarning(w string) string {
	return strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(w), "."), "; pass raw arguments")
}

// flagSpelling is how a flag is written on the command line: "--name, -n".
func flagSpelling(p helpparse.Parameter) string {
	if shortOnly(p) {
		return "-" + p.Short
	}
	if p.Short != "" {
		return "--" + p.Name + ", -" + p.Short
	}
	return "--" + p.Name
}

type discoverResult struct {
	Events   []discovery.Event   `json:"events"`
	Plugins  int                 `json:"plugins"`
	Tools    []string            `json:"tools"`
	Warnings []discovery.Warning `json:"warnings"`
}

func (s *Server) handleDiscover(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args, err := callArguments(req)
	if err != nil {
		return errorResult("%v", err), nil
	}
	if err := checkKeys(args, "force"); err != nil {
		return errorResult("%v", err), nil
	}
	if _, err := optBool(args, "force"); err != nil {
		return errorResult("%v", err), nil
	}
	if s.stopping.Load() {
		// Discovery runs each new plugin's --help in a sandbox.
		return errorResult("discovery did not run: %v and takes no new calls", errShuttingDown), nil
	}
	events, err := s.rt.Discover(ctx)
	if err != nil {
		return errorResult("discovery did not finish: %v", err), nil
	}
	s.SyncTools()
	res := discoverResult{Events: events, Plugins: len(s.rt.Plugins()), Tools: s.Tools(), Warnings: s.rt.Warnings()}
	if res.Events == nil {
		res.Events = []discovery.Event{}
	}
	if res.Warnings == nil {
		res.Warnings = []discovery.Warning{}
	}
	summary := "Discovery found no changes."
	if len(events) > 0 {
		var parts []string
		for _, e := range events {
			parts = append(parts, string(e.Type)+" "+e.Plugin)
		}
		summary = fmt.Sprintf("Discovery found %d changes: %s.", len(events), strings.Join(parts, ", "))
	}
	summary += fmt.Sprintf(" %d plugins, %d tools.", res.Plugins, len(res.Tools))
	return jsonResult(summary, res), nil
}

func (s *Server) handleExecute(ctx context.Context, req mcp.CallToolRequest) (*mcp.CallToolResult, error) {
	args, err := callArguments(req)
	if err != nil {
		return errorResult("%v", err), nil
	}
	if err := checkKeys(args, "plugin", "args", "cluster", "stdin"); err != nil {
		return errorResult("%v", err), nil
	}
	name, err := pluginArgument(args)
	if err != nil {
		return s.refusal(name, "", err), nil
	}
	cluster, err := optString(args, "cluster")
	if err != nil {
		return errorResult("%v", err), nil
	}
	stdin, err := optString(args, "stdin")
	if err != nil {
		return errorResult("%v", err), nil
	}
	var positional map[string]any
	if v, ok := args[argsProperty]; ok {
		positional = map[string]any{argsProperty: v}
	}
	argv, err := buildArgv(nil, positional)
	if err != nil {
		return errorResult("%v", err), nil
	}
	return s.execute(ctx, req, name, argv, cluster, stdin), nil
}

// stdinText describes the stdin argument to the model.
const stdinText = "Text for the plugin's standard input (at most 1 MiB); plugins cannot read your files."
