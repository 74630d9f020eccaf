package mcpserver

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mark3labs/mcp-go/client"
	"github.com/mark3labs/mcp-go/mcp"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// Fixture plugins: small shell scripts. At run time their PATH is only the
// fixture folder, so they use shell builtins or absolute paths.
const (
	// echoPlugin prints its arguments one per line; its help is cobra's.
	echoPlugin = `#!/bin/sh
if [ "$1" = "--help" ]; then
cat <<'EOF'
Print the arguments, one per line.

Usage:
  kubectl echo [flags] [args...]

Flags:
  -A, --all-namespaces       list across all namespaces
      --count int            how many times (default 1)
  -h, --help                 help for echo
      --kubeconfig string    path to the kubeconfig file
      --label stringArray    labels to match
  -n, --namespace string     namespace to use (default "default")
      --ratio float          a ratio
      --timeout duration     how long to wait (default 30s)
EOF
exit 0
fi
for a in "$@"; do printf '%s\n' "$a"; done
`
	// failPlugin writes to both streams and exits 3, --help too: its
	// parameters stay unknown.
	failPlugin = `#!/bin/sh
echo "partial output"
echo "boom: something broke" >&2
exit 3
`
	// whereamiPlugin prints the server of the kubeconfig it was given.
	whereamiPlugin = `#!/bin/sh
if [ "$1" = "--help" ]; then printf 'Show the cluster.\n\nUsage:\n  kubectl whereami\n\nFlags:\n  -h, --help   help for whereami\n'; exit 0; fi
while read -r line; do case "$line" in *server:*) echo "$line";; esac; done < "$KUBECONFIG"
`
	deletePlugin = `#!/bin/sh
if [ "$1" = "--help" ]; then printf 'Delete pods.\n\nUsage:\n  kubectl delete-pods NAME\n\nFlags:\n  -h, --help   help for delete-pods\n'; exit 0; fi
echo "deleted $1"
`
	simplePlugin = `#!/bin/sh
echo simple
`
)

// sleepyPlugin writes its PID to pidFile, then sleeps $1 seconds.
func sleepyPlugin(pidFile string) string {
	return `#!/bin/sh
if [ "$1" = "--help" ]; then printf 'Sleep a while.\n\nUsage:\n  kubectl sleepy SECONDS\n\nFlags:\n  -h, --help   help for sleepy\n'; exit 0; fi
echo $$ > ` + pidFile + `
exec /bin/sleep "${1:-30}"
`
}

type fixture struct {
	dir     string // the plugins' folder
	pidFile string
	rt      *runtime.Runtime
	srv     *Server
}

// newFixture discovers the fixture plugins with a real runtime (sandbox
// backend "none") and builds a Server on it, with two clusters, c1 the
// default.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	return newFixtureWith(t, "none")
}

// newFixtureWith is newFixture with another sandbox backend.
func newFixtureWith(t *testing.T, backend string) *fixture {
	t.Helper()
	return newFixtureRancher(t, backend, nil)
}

// newFixtureRancher is newFixtureWith with the clusters of a Rancher
// source beside c1 and c2, when rancher is not nil.
func newFixtureRancher(t *testing.T, backend string, rancher *clusters.Rancher) *fixture {
	t.Helper()
	dir := t.TempDir()
	f := &fixture{dir: dir, pidFile: filepath.Join(t.TempDir(), "sleepy.pid")}
	for name, script := range map[string]string{
		"echo":        echoPlugin,
		"fail":        failPlugin,
		"whereami":    whereamiPlugin,
		"delete-pods": deletePlugin,
		"sleepy":      sleepyPlugin(f.pidFile),
		"secret":      simplePlugin, // not allowed
		"foo-bar":     simplePlugin, // tool plugin_foo_bar
		"foo_bar":     simplePlugin, // same tool name: skipped
	} {
		f.writePlugin(t, name, script)
	}

	cfgFile := filepath.Join(t.TempDir(), "config.toml")
	writeFile(t, cfgFile, `
[plugins]
allowed_plugins = ["echo", "fail", "whereami", "delete*", "sleepy", "foo*", "new*"]
plugin_paths = []
auto_discovery = false
execution_timeout = "20s"

[sandbox]
backend = "`+backend+`"
`)
	cfg, err := config.Load(config.Options{File: cfgFile, LookupEnv: func(string) (string, bool) { return "", false }})
	if err != nil {
		t.Fatal(err)
	}
	kubeconfigs := t.TempDir()
	for _, c := range []string{"c1", "c2"} {
		writeFile(t, filepath.Join(kubeconfigs, c+".yaml"), fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: %[1]s
  cluster:
    server: https://%[1]s.example.invalid:6443
contexts:
- name: %[1]s
  context:
    cluster: %[1]s
    user: u
current-context: %[1]s
users:
- name: u
  user:
    token: t
`, c))
	}
	reg, err := clusters.Load(clusters.Options{KubeconfigDir: kubeconfigs, DefaultCluster: "c1", Rancher: rancher})
	if err != nil {
		t.Fatal(err)
	}
	log := hclog.New(&hclog.LoggerOptions{Level: hclog.Warn, Output: testWriter{t}})
	parts, err := compose.Build(context.Background(), cfg, compose.Env{PathEnv: dir, KrewRoot: t.TempDir()}, log)
	if err != nil {
		t.Fatal(err)
	}
	f.rt, err = runtime.New(cfg, runtime.Options{Policy: parts.Policy, Backends: parts.Backends, Dirs: parts.Dirs, Container: parts.Container,
		Clusters: reg, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.srv, err = New(Options{Runtime: f.rt, Logger: log, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) writePlugin(t *testing.T, name, script string) {
	t.Helper()
	path := filepath.Join(f.dir, "kubectl-"+name)
	writeFile(t, path, script)
	if err := os.Chmod(path, 0o755); err != nil {
		t.Fatal(err)
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// testWriter sends the server's log to the test's.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// connect starts an in-process client on the legacy handshake (sessions,
// so server notifications reach it) and collects its notifications.
type testClient struct {
	*client.Client
	mu            sync.Mutex
	notifications []mcp.JSONRPCNotification
}

func connect(t *testing.T, s *Server, version string) *testClient {
	t.Helper()
	c, err := client.NewInProcessClient(s.MCPServer())
	if err != nil {
		t.Fatal(err)
	}
	tc := &testClient{Client: c}
	c.OnNotification(func(n mcp.JSONRPCNotification) {
		tc.mu.Lock()
		tc.notifications = append(tc.notifications, n)
		tc.mu.Unlock()
	})
	ctx := context.Background()
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if _, err := c.Initialize(ctx, mcp.InitializeRequest{Params: mcp.InitializeParams{
		ProtocolVersion: version,
		ClientInfo:      mcp.Implementation{Name: "test", Version: "1"},
	}}); err != nil {
		t.Fatal(err)
	}
	return tc
}

func (c *testClient) count(method string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, x := range c.notifications {
		if x.Method == method {
			n++
		}
	}
	return n
}

func (c *testClient) progress(token string) []map[string]any {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []map[string]any
	for _, x := range c.notifications {
		if x.Method == string(mcp.MethodNotificationProgress) && x.Params.AdditionalFields["progressToken"] == token {
			out = append(out, x.Params.AdditionalFields)
		}
	}
	return out
}

func call(t *testing.T, c *testClient, tool string, args any) *mcp.CallToolResult {
	t.Helper()
	res, err := c.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: tool, Arguments: args}})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return res
}

func text(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := mcp.AsTextContent(c); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func structured[T any](t *testing.T, r *mcp.CallToolResult) T {
	t.Helper()
	var v T
	raw := r.RawStructuredContent
	if len(raw) == 0 {
		t.Fatalf("no structuredContent in %q", text(r))
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("structuredContent %s: %v", raw, err)
	}
	return v
}

func toolsByName(t *testing.T, c *testClient) map[string]mcp.Tool {
	t.Helper()
	res, err := c.ListTools(context.Background(), mcp.ListToolsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]mcp.Tool{}
	for _, tool := range res.Tools {
		out[tool.Name] = tool
	}
	return out
}

func names(m map[string]mcp.Tool) []string {
	var out []string
	for n := range m {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

var wantTools = []string{
	"plugin_delete_pods", "plugin_echo", "plugin_fail", "plugin_foo_bar", "plugin_sleepy", "plugin_whereami",
	"plugins_discover", "plugins_execute", "plugins_info", "plugins_list",
}

func TestToolsList(t *testing.T) {
	f := newFixture(t)
	if got := f.srv.Tools(); !reflect.DeepEqual(got, wantTools) {
		t.Fatalf("Tools() = %q\nwant %q", got, wantTools)
	}
	for _, version := range []string{mcp.LATEST_LEGACY_PROTOCOL_VERSION, mcp.LATEST_PROTOCOL_VERSION} {
		t.Run(version, func(t *testing.T) {
			tools := toolsByName(t, connect(t, f.srv, version))
			if got := names(tools); !reflect.DeepEqual(got, wantTools) {
				t.Fatalf("tools/list = %q\nwant %q", got, wantTools)
			}
			for _, tt := range []struct {
				tool                                         string
				title                                        string
				readOnly, destructive, openWorld, hasOutputs bool
			}{
				{"plugins_list", "Plugins: List", true, false, false, false},
				{"plugins_info", "Plugins: Info", true, false, false, false},
				{"plugins_discover", "Plugins: Discover", false, false, false, false},
				{"plugins_execute", "Plugins: Execute", false, true, true, true},
				// Plugin tools return plugins_execute's result and do not
				// repeat its schema.
				{"plugin_echo", "Plugin: echo", false, false, true, false},
				{"plugin_delete_pods", "Plugin: delete-pods", false, true, true, false},
				{"plugin_foo_bar", "Plugin: foo-bar", false, false, true, false},
			} {
				tool := tools[tt.tool]
				a := tool.Annotations
				if a.Title != tt.title || tool.Title != tt.title {
					t.Errorf("%s: title %q / %q, want %q", tt.tool, a.Title, tool.Title, tt.title)
				}
				if a.ReadOnlyHint == nil || *a.ReadOnlyHint != tt.readOnly {
					t.Errorf("%s: readOnlyHint %v, want %v", tt.tool, a.ReadOnlyHint, tt.readOnly)
				}
				if a.DestructiveHint == nil || *a.DestructiveHint != tt.destructive {
					t.Errorf("%s: destructiveHint %v, want %v", tt.tool, a.DestructiveHint, tt.destructive)
				}
				if a.OpenWorldHint == nil || *a.OpenWorldHint != tt.openWorld {
					t.Errorf("%s: openWorldHint %v, want %v", tt.tool, a.OpenWorldHint, tt.openWorld)
				}
				if has := tool.OutputSchema.Type == "object"; has != tt.hasOutputs {
					t.Errorf("%s: outputSchema %+v, want one: %v", tt.tool, tool.OutputSchema, tt.hasOutputs)
				}
				if tt.hasOutputs {
					for _, p := range []string{"status", "exit_code", "output", "error", "sandbox", "call_id", "duration_ms"} {
						if _, ok := tool.OutputSchema.Properties[p]; !ok {
							t.Errorf("%s: outputSchema lacks %s", tt.tool, p)
						}
					}
				}
				if tool.InputSchema.AdditionalProperties != false {
					t.Errorf("%s: additionalProperties %v, want false", tt.tool, tool.InputSchema.AdditionalProperties)
				}
			}

			echo := tools["plugin_echo"]
			wantProps := map[string]string{
				"all-namespaces": "boolean", "count": "integer", "label": "array", "namespace": "string",
				"ratio": "number", "timeout": "string", "args": "array", "cluster": "string", "stdin": "string",
			}
			gotProps := map[string]string{}
			for name, p := range echo.InputSchema.Properties {
				gotProps[name], _ = p.(map[string]any)["type"].(string)
			}
			if !reflect.DeepEqual(gotProps, wantProps) {
				t.Errorf("plugin_echo properties %v\nwant %v (kubeconfig and help are not offered)", gotProps, wantProps)
			}
			prop := func(name, key string) any { return echo.InputSchema.Properties[name].(map[string]any)[key] }
			for name, want := range map[string]string{
				"timeout":   "A duration such as 30s",
				"namespace": `Default: default. Flag: --namespace, -n.`,
				"count":     "Default: 1.",
				"cluster":   "Clusters: c1, c2. Without cluster the call goes to the default cluster, c1.",
				"args":      "Positional arguments",
			} {
				if d, _ := prop(name, "description").(string); !strings.Contains(d, want) {
					t.Errorf("plugin_echo %s description %q lacks %q", name, d, want)
				}
			}
			if items := prop("label", "items"); !reflect.DeepEqual(items, map[string]any{"type": "string"}) {
				t.Errorf("label items %v", items)
			}
			for _, want := range []string{"Print the arguments, one per line.", "`kubectl echo`", "WITHOUT a sandbox"} {
				if !strings.Contains(echo.Description, want) {
					t.Errorf("plugin_echo description lacks %q: %s", want, echo.Description)
				}
			}
			// What every plugin tool shares is said once: the clusters in
			// the cluster parameter, the result's fields in plugins_execute.
			if strings.Contains(echo.Description, "Clusters:") {
				t.Errorf("plugin_echo description repeats the clusters its cluster parameter names: %s", echo.Description)
			}
			if d := tools["plugin_fail"].Description; !strings.Contains(d, "flags are unknown") || !strings.Contains(d, "pass every argument raw in args") {
				t.Errorf("plugin_fail description should say its flags are unknown: %s", d)
			}
			if d := tools["plugin_delete_pods"].Description; !strings.Contains(d, "Destructive") {
				t.Errorf("plugin_delete_pods description should say it is destructive: %s", d)
			}
			exec := tools["plugins_execute"]
			if !reflect.DeepEqual(exec.InputSchema.Required, []string{"plugin"}) {
				t.Errorf("plugins_execute required %v", exec.InputSchema.Required)
			}
			for _, want := range []string{"get_all or get-all", "Clusters: c1, c2", "default cluster, c1"} {
				if !strings.Contains(exec.Description, want) {
					t.Errorf("plugins_execute description lacks %q", want)
				}
			}
		})
	}
}

// A plugin tool carries what is its own: what every plugin tool shares (the
// result's schema, the clusters, an isolating sandbox) is said once, so a
// thousand of them make a tools/list of about a KiB a tool, not four.
func TestPluginToolsCarryOnlyTheirOwn(t *testing.T) {
	f := newFixture(t)
	for name, most := range map[string]int{
		"plugin_whereami": 1024, // no flags of its own
		"plugin_echo":     1792, // eight flags
	} {
		tool := f.srv.MCPServer().GetTool(name)
		if tool == nil {
			t.Fatalf("no %s", name)
		}
		def, err := json.Marshal(tool.Tool)
		if err != nil {
			t.Fatal(err)
		}
		if len(def) > most {
			t.Errorf("%s takes %d bytes in tools/list, more than %d:\n%s", name, len(def), most, def)
		}
	}
}

func TestPluginsListAndInfo(t *testing.T) {
	f := newFixture(t)
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)

	res := call(t, c, "plugins_list", map[string]any{})
	if res.IsError {
		t.Fatal(text(res))
	}
	list := structured[struct {
		Count, Allowed int
		Sandbox        string
		Clusters       []string
		Plugins        []struct {
			Name         string `json:"name"`
			Tool         string `json:"tool"`
			Allowed      bool   `json:"allowed"`
			Destructive  bool   `json:"destructive"`
			PolicyReason string `json:"policy_reason"`
		}
	}](t, res)
	if list.Count != 8 || list.Allowed != 7 || list.Sandbox != "none" || !reflect.DeepEqual(list.Clusters, []string{"c1", "c2"}) {
		t.Errorf("list: %+v", list)
	}
	got := map[string]string{}
	for _, p := range list.Plugins {
		got[p.Name] = fmt.Sprintf("tool=%s allowed=%v destructive=%v", p.Tool, p.Allowed, p.Destructive)
		if !p.Allowed && p.PolicyReason == "" {
			t.Errorf("%s: not allowed without a reason", p.Name)
		}
	}
	want := map[string]string{
		"delete-pods": "tool=plugin_delete_pods allowed=true destructive=true",
		"echo":        "tool=plugin_echo allowed=true destructive=false",
		"fail":        "tool=plugin_fail allowed=true destructive=false",
		"foo-bar":     "tool=plugin_foo_bar allowed=true destructive=false",
		"foo_bar":     "tool= allowed=true destructive=false", // its tool name is taken
		"secret":      "tool= allowed=false destructive=false",
		"sleepy":      "tool=plugin_sleepy allowed=true destructive=false",
		"whereami":    "tool=plugin_whereami allowed=true destructive=false",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("plugins %v\nwant %v", got, want)
	}
	if !strings.HasPrefix(text(res), "8 plugins (7 allowed to run); sandbox: none.") {
		t.Errorf("text: %s", text(res))
	}

	for _, tt := range []struct {
		args any
		want []string
	}{
		{map[string]any{"filter": "foo*"}, []string{"foo-bar", "foo_bar"}},
		{map[string]any{"filter": "foo_*"}, []string{"foo-bar", "foo_bar"}}, // either spelling
		{map[string]any{"filter": "PODS"}, []string{"delete-pods"}},         // a plain word is a substring
		{map[string]any{"filter": "nothing*"}, nil},
	} {
		res := call(t, c, "plugins_list", tt.args)
		var got []string
		for _, p := range structured[struct{ Plugins []struct{ Name string } }](t, res).Plugins {
			got = append(got, p.Name)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%v: %q, want %q", tt.args, got, tt.want)
		}
	}

	res = call(t, c, "plugins_list", map[string]any{"show_details": true, "filter": "echo"})
	details := structured[struct {
		Plugins []struct {
			Name       string
			SHA256     string
			Tool       string
			Parameters []struct{ Name string }
		}
	}](t, res)
	if len(details.Plugins) != 1 || details.Plugins[0].SHA256 == "" || len(details.Plugins[0].Parameters) != 7 || details.Plugins[0].Tool != "plugin_echo" {
		t.Errorf("details: %+v", details)
	}

	res = call(t, c, "plugins_info", map[string]any{"plugin": "kubectl-delete_pods"}) // any spelling
	if res.IsError {
		t.Fatal(text(res))
	}
	if info := structured[struct{ Name, Tool string }](t, res); info.Name != "delete-pods" || info.Tool != "plugin_delete_pods" {
		t.Errorf("info: %+v", info)
	}
	if !strings.Contains(text(res), "Destructive") {
		t.Errorf("info text: %s", text(res))
	}
	res = call(t, c, "plugins_info", map[string]any{"plugin": "echo"})
	for _, want := range []string{"Plugin echo (kubectl echo): Print the arguments", "plugin_echo tool", "--namespace, -n (string, default default)"} {
		if !strings.Contains(text(res), want) {
			t.Errorf("info text lacks %q:\n%s", want, text(res))
		}
	}
	res = call(t, c, "plugins_info", map[string]any{"plugin": "nope"})
	if !res.IsError || !strings.Contains(text(res), `plugin "nope" not found`) {
		t.Errorf("unknown plugin: %v %s", res.IsError, text(res))
	}
}

// Bad input: each is a tool error (or, for an unknown tool, a JSON-RPC
// error) in words, and the server keeps serving.
func TestBadInput(t *testing.T) {
	f := newFixture(t)
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	for _, tt := range []struct {
		tool string
		args any
		want string
	}{
		{"plugins_list", map[string]any{"show_details": "yes"}, `"show_details" must be a boolean, not a string`},
		{"plugins_list", map[string]any{"filter": "[a-"}, `not a valid glob`},
		{"plugins_list", map[string]any{"verbose": true}, `unknown argument "verbose"; valid arguments are: show_details, filter`},
		{"plugins_list", []any{"x"}, `arguments must be a JSON object, not an array`},
		{"plugins_info", map[string]any{}, `argument "plugin" is required`},
		{"plugins_info", map[string]any{"plugin": 5}, `"plugin" must be a string, not a number`},
		{"plugins_info", map[string]any{"plugin": "../../bin/sh"}, `may not contain a path`},
		{"plugins_discover", map[string]any{"force": "yes"}, `"force" must be a boolean`},
		{"plugins_execute", map[string]any{"plugin": "echo", "args": "hello"}, `"args" must be an array of strings`},
		{"plugins_execute", map[string]any{"plugin": "echo", "args": []any{1}}, `element 1 must be a string, not a number`},
		{"plugins_execute", map[string]any{"plugin": "echo", "cluster": 1}, `"cluster" must be a string`},
		{"plugins_execute", map[string]any{"plugin": "echo", "args": []any{strings.Repeat("x", 1<<20)}}, `is 1048576 bytes long; one value may be at most 65536 bytes`},
		{"plugin_echo", map[string]any{"count": "3"}, `plugin_echo: argument "count" must be an integer, not a string`},
		{"plugin_echo", map[string]any{"label": []any{true}}, `element 1 must be a string, not a boolean`},
		{"plugin_echo", map[string]any{"bogus": 1}, `unknown argument "bogus"; valid arguments are: all-namespaces, count, label, namespace, ratio, timeout, args, cluster`},
		{"plugin_echo", map[string]any{"kubeconfig": "/etc/x"}, `unknown argument "kubeconfig"`},
		{"plugin_echo", map[string]any{"namespace": "a\x00b"}, `NUL byte`},
		{"plugin_echo", map[string]any{"cluster": []any{}}, `"cluster" must be a string`},
	} {
		t.Run(fmt.Sprintf("%s %v", tt.tool, tt.args)[:min(60, len(fmt.Sprintf("%s %v", tt.tool, tt.args)))], func(t *testing.T) {
			res := call(t, c, tt.tool, tt.args)
			if !res.IsError || !strings.Contains(text(res), tt.want) {
				t.Errorf("isError %v, text %q, want %q", res.IsError, text(res), tt.want)
			}
		})
	}
	_, err := c.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "no_such_tool"}})
	if err == nil || !strings.Contains(err.Error(), "not found") {
		t.Errorf("unknown tool: %v", err)
	}
	// A panicking handler is recovered, and the server keeps serving.
	f.srv.MCPServer().AddTool(mcp.NewTool("test_panic"), func(context.Context, mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		panic("boom")
	})
	_, err = c.CallTool(context.Background(), mcp.CallToolRequest{Params: mcp.CallToolParams{Name: "test_panic"}})
	if err == nil || !strings.Contains(err.Error(), "panic recovered") {
		t.Errorf("panic: %v", err)
	}
	if res := call(t, c, "plugins_list", nil); res.IsError {
		t.Errorf("after bad input: %s", text(res))
	}
}

// Names that cannot be a plugin's are refused before the runtime sees them.
func TestRefusedNames(t *testing.T) {
	f := newFixture(t)
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	for _, tt := range []struct{ name, want string }{
		{"", "plugin name is empty"},
		{"  ", "plugin name is empty"},
		{"../echo", "may not contain a path"},
		{"a/b", "may not contain a path"},
		{`a\b`, "may not contain a path"},
		{"..", "may not contain a path"},
		{"ec\x00ho", "NUL byte"},
		{"échо", "outside printable ASCII"},
		{"echo\n", "outside printable ASCII"},
		{strings.Repeat("a", 300), "longer than 255 bytes"},
	} {
		for _, tool := range []string{"plugins_execute", "plugins_info"} {
			res := call(t, c, tool, map[string]any{"plugin": tt.name})
			if !res.IsError || !strings.Contains(text(res), tt.want) {
				t.Errorf("%s %q: isError %v, text %q, want %q", tool, tt.name, res.IsError, text(res), tt.want)
			}
			if tool == "plugins_execute" {
				r := structured[runtime.Result](t, res)
				if r.Status != "refused" || r.ExitCode != -1 || r.CallID != "" || !strings.Contains(r.Message, tt.want) {
					t.Errorf("%q: structured %+v", tt.name, r)
				}
				if !strings.Contains(text(res), "Nothing ran") {
					t.Errorf("%q: text should say nothing ran: %s", tt.name, text(res))
				}
			}
		}
	}
	if n := f.rt.Plugins(); len(n) != 8 {
		t.Errorf("plugins changed: %d", len(n))
	}
}

func TestListChanged(t *testing.T) {
	f := newFixture(t)
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	const changed = "notifications/tools/list_changed"
	if !c.GetServerCapabilities().Tools.ListChanged {
		t.Error("the tools listChanged capability is not advertised")
	}

	// Nothing changed: no notification.
	res := call(t, c, "plugins_discover", map[string]any{"force": true})
	if res.IsError || !strings.HasPrefix(text(res), "Discovery found no changes.") {
		t.Fatalf("discover: %s", text(res))
	}

	f.writePlugin(t, "newplug", simplePlugin)
	res = call(t, c, "plugins_discover", map[string]any{})
	d := structured[struct {
		Events []struct{ Type, Plugin string }
		Tools  []string
	}](t, res)
	if len(d.Events) != 1 || d.Events[0].Type != "added" || d.Events[0].Plugin != "newplug" {
		t.Errorf("events %+v", d.Events)
	}
	if !contains(d.Tools, "plugin_newplug") || !contains(f.srv.Tools(), "plugin_newplug") {
		t.Errorf("tools %q", d.Tools)
	}
	waitFor(t, "list_changed after plugins_discover", func() bool { return c.count(changed) == 1 })
	if _, ok := toolsByName(t, c)["plugin_newplug"]; !ok {
		t.Error("tools/list lacks plugin_newplug")
	}

	// The runtime's own refresh (periodic discovery) notifies too.
	if err := os.Remove(filepath.Join(f.dir, "kubectl-newplug")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "list_changed after a runtime refresh", func() bool { return c.count(changed) == 2 })
	if _, ok := toolsByName(t, c)["plugin_newplug"]; ok {
		t.Error("plugin_newplug is still listed")
	}

	// A changed file changes the tool's definition.
	f.writePlugin(t, "echo", strings.Replace(echoPlugin, "Print the arguments", "Echo the arguments", 1))
	if _, err := f.rt.Discover(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "list_changed after a plugin changed", func() bool { return c.count(changed) == 3 })
	if d := toolsByName(t, c)["plugin_echo"].Description; !strings.HasPrefix(d, "Echo the arguments") {
		t.Errorf("plugin_echo description not updated: %s", d)
	}
	if got := f.srv.Tools(); !reflect.DeepEqual(got, wantTools) {
		t.Errorf("Tools() = %q", got)
	}
}

// Without a sandbox backend plugins are listed and have tools, but every
// call is refused, and /health says so.
func TestNoSandbox(t *testing.T) {
	f := newFixtureWith(t, "auto")
	if h := f.srv.Health(); h.Sandbox != "unavailable" || h.Plugins != 8 || h.Tools != len(wantTools) {
		t.Errorf("health %+v", h)
	}
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	tools := toolsByName(t, c)
	if d := tools["plugins_execute"].Description; !strings.Contains(d, "cannot run until the operator configures a container sandbox") {
		t.Errorf("plugins_execute description: %s", d)
	}
	if d := tools["plugin_echo"].Description; !strings.Contains(d, "flags are unknown (help was not run: no sandbox backend is available") {
		t.Errorf("plugin_echo description: %s", d)
	}
	res := call(t, c, "plugin_echo", map[string]any{"args": []any{"x"}})
	r := structured[runtime.Result](t, res)
	if !res.IsError || r.Status != "refused" || !strings.Contains(r.Message, "no sandbox backend") || strings.Contains(text(res), "without a sandbox") {
		t.Errorf("isError %v, %+v, %s", res.IsError, r, text(res))
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

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
