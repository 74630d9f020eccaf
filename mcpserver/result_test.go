package mcpserver

import (
	"bytes"
	"encoding/json"
	"errors"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// jsonKeys are the keys v encodes to, as an object.
func jsonKeys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func propertyNames(schema map[string]any) []string {
	props, _ := schema["properties"].(map[string]any)
	var names []string
	for k := range props {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// goField is a struct field as the schema generator sees it.
type goField struct {
	name string // e.g. runtime.Result.CallID
	tag  string // its jsonschema tag
}

// goFields maps JSON names to Go fields, to say which field lacks a tag.
func goFields(v any) map[string]goField {
	out := map[string]goField{}
	t := reflect.TypeOf(v)
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		out[name] = goField{name: t.String() + "." + f.Name, tag: f.Tag.Get("jsonschema")}
	}
	return out
}

func generatedSchema(t *testing.T) map[string]any {
	t.Helper()
	raw, err := resultSchema()
	if err != nil {
		t.Fatal(err)
	}
	var schema map[string]any
	if err := json.Unmarshal(raw, &schema); err != nil {
		t.Fatal(err)
	}
	return schema
}

// The outputSchema is runtime.Result's, generated: every field a result
// encodes is a property (and of each API request record too), plugins_execute
// serves exactly it, and status is described, not enumerated.
func TestResultSchemaIsGenerated(t *testing.T) {
	schema := generatedSchema(t)
	full := runtime.Result{Message: "m", Warm: true, APIRequests: []gateway.Record{{Reason: "r"}}} // omitempty fields set
	if got, want := propertyNames(schema), jsonKeys(t, full); !reflect.DeepEqual(got, want) {
		t.Errorf("properties %q\nwant the keys of runtime.Result %q", got, want)
	}
	items, _ := schema["properties"].(map[string]any)["api_requests"].(map[string]any)["items"].(map[string]any)
	if got, want := propertyNames(items), jsonKeys(t, gateway.Record{Reason: "r"}); !reflect.DeepEqual(got, want) {
		t.Errorf("api_requests items properties %q\nwant the keys of gateway.Record %q", got, want)
	}
	status := schema["properties"].(map[string]any)["status"].(map[string]any)
	if status["type"] != "string" || status["enum"] != nil {
		t.Errorf("status must be a described string, not enumerated: %v", status)
	}
	if desc, _ := status["description"].(string); !strings.HasSuffix(desc, ownStatuses) {
		t.Errorf("the status description %q does not end with this package's statuses", desc)
	}

	// plugins_execute serves this schema, as generated: the one description
	// of the result every tool that runs a plugin returns (TestResultsValidate
	// checks plugin tools' results against it). Plugin tools declare none.
	f := newFixture(t)
	tools := toolsByName(t, connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION))
	served, err := json.Marshal(tools["plugins_execute"].OutputSchema)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(served, &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, schema) {
		t.Errorf("plugins_execute serves outputSchema\n%s\nwant the generated\n%s", served, mustJSON(t, schema))
	}
	for _, name := range []string{"plugin_echo", "plugin_fail"} {
		if s := tools[name].OutputSchema; s.Type != "" || len(s.Properties) > 0 {
			t.Errorf("%s declares an outputSchema of its own: %+v", name, s)
		}
	}
}

// Every property of the result, and of each API request record, tells the
// model what it is. The descriptions come from the jsonschema struct tags of
// runtime.Result and gateway.Record; this fails while a field has none.
func TestResultSchemaDescribesEveryField(t *testing.T) {
	schema := generatedSchema(t)
	props := schema["properties"].(map[string]any)
	check := func(where map[string]any, fields map[string]goField) {
		for _, name := range propertyNames(where) {
			p := where["properties"].(map[string]any)[name].(map[string]any)
			d, _ := p["description"].(string)
			f := fields[name]
			switch {
			case strings.TrimSpace(d) == "":
				t.Errorf("property %q has no description: give %s a `jsonschema:\"...\"` tag", name, f.name)
			case f.tag != "" && !strings.HasPrefix(d, f.tag):
				// mcp-go splits the tag at commas (for enum=...) and joins
				// the parts with ", ".
				t.Errorf("property %q: the description %q is not %s's tag %q as written: write each comma as \", \" and start no part with enum=", name, d, f.name, f.tag)
			}
		}
	}
	check(schema, goFields(runtime.Result{}))
	check(props["api_requests"].(map[string]any)["items"].(map[string]any), goFields(gateway.Record{}))
	// status says what each status means, the runtime's and this package's.
	desc, _ := props["status"].(map[string]any)["description"].(string)
	for _, s := range []runtime.Status{runtime.StatusOK, runtime.StatusFailed, runtime.StatusTimeout, runtime.StatusCancelled, runtime.StatusKilled, statusRefused, statusError} {
		if !strings.Contains(desc, string(s)) {
			t.Errorf("the status description does not say what %q means (runtime.Result.Status's jsonschema tag describes the runtime's statuses): %q", s, desc)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// resultValidator checks structured results against the served schema with
// the validator mcp-go's WithOutputSchemaValidation uses. mcp-go skips
// results with isError set; this checks those too.
type resultValidator struct{ schema *jsonschema.Schema }

func newResultValidator(t *testing.T) *resultValidator {
	t.Helper()
	raw, err := resultSchema()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("mem:///result.json", doc); err != nil {
		t.Fatal(err)
	}
	schema, err := c.Compile("mem:///result.json")
	if err != nil {
		t.Fatal(err)
	}
	return &resultValidator{schema: schema}
}

// check validates r's structuredContent and returns it decoded.
func (v *resultValidator) check(t *testing.T, what string, r *mcp.CallToolResult) runtime.Result {
	t.Helper()
	raw := r.RawStructuredContent
	if len(raw) == 0 && r.StructuredContent != nil {
		var err error
		if raw, err = json.Marshal(r.StructuredContent); err != nil {
			t.Fatal(err)
		}
	}
	if len(raw) == 0 {
		t.Errorf("%s: no structuredContent: %s", what, text(r))
		return runtime.Result{}
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	if err := v.schema.Validate(doc); err != nil {
		t.Errorf("%s: the result does not validate against the outputSchema: %v\n%s", what, err, raw)
	}
	var res runtime.Result
	if err := json.Unmarshal(raw, &res); err != nil {
		t.Errorf("%s: %v", what, err)
	}
	return res
}

// Every kind of result the server returns validates against the schema.
func TestResultsValidate(t *testing.T) {
	v := newResultValidator(t)
	f := newFixture(t)
	c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
	for _, tt := range []struct {
		what   string
		tool   string
		args   map[string]any
		status runtime.Status
	}{
		{"ok", "plugins_execute", map[string]any{"plugin": "echo", "args": []any{"x"}}, runtime.StatusOK},
		{"ok, plugin tool", "plugin_echo", map[string]any{"namespace": "n"}, runtime.StatusOK},
		{"failed", "plugin_fail", nil, runtime.StatusFailed},
		{"refused by policy", "plugins_execute", map[string]any{"plugin": "secret"}, statusRefused},
		{"refused: not a name", "plugins_execute", map[string]any{"plugin": "../x"}, statusRefused},
		{"refused: unknown cluster", "plugin_echo", map[string]any{"cluster": "c9"}, statusRefused},
		{"refused: forbidden argument", "plugin_echo", map[string]any{"args": []any{"--token=x"}}, statusRefused},
	} {
		res := call(t, c, tt.tool, tt.args)
		if r := v.check(t, tt.what, res); r.Status != tt.status {
			t.Errorf("%s: status %q, want %q: %s", tt.what, r.Status, tt.status, text(res))
		}
	}
	// A call that could not be prepared: the runtime's error is no refusal.
	res := f.srv.refusal("echo", "c1", errors.New("start the API gateway of call x: boom"))
	if r := v.check(t, "error", res); r.Status != statusError || !res.IsError {
		t.Errorf("error: %+v", r)
	}

	// Without a sandbox backend every call is refused.
	nf := newFixtureWith(t, "auto")
	res = call(t, connect(t, nf.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION), "plugin_echo", nil)
	if r := v.check(t, "refused: no sandbox", res); r.Status != statusRefused || r.Sandbox != "" {
		t.Errorf("no sandbox: %+v", r)
	}
}

// Refusals, results and descriptions ask the runtime how plugins run, not
// a backend's name.
func TestSandboxTexts(t *testing.T) {
	for _, tt := range []struct {
		backend, description, list string
		unsandboxed                bool
	}{
		{"none", `WITHOUT a sandbox here (backend "none")`, "sandbox: none. Plugins run without a sandbox", true},
		{"auto", "Only WebAssembly plugins run here", "sandbox: unavailable. Only WebAssembly plugins (kind wasm) can run here", false},
	} {
		f := newFixtureWith(t, tt.backend)
		if d := f.srv.sandboxText(); !strings.Contains(d, tt.description) {
			t.Errorf("%s: %q lacks %q", tt.backend, d, tt.description)
		}
		c := connect(t, f.srv, mcp.LATEST_LEGACY_PROTOCOL_VERSION)
		if got := text(call(t, c, "plugins_list", nil)); !strings.Contains(got, tt.list) {
			t.Errorf("%s: plugins_list %q lacks %q", tt.backend, got, tt.list)
		}
		refused := text(call(t, c, "plugins_execute", map[string]any{"plugin": "secret"}))
		if got := strings.Contains(refused, "without a sandbox"); got != tt.unsandboxed {
			t.Errorf("%s: refusal says it runs without a sandbox: %v\n%s", tt.backend, got, refused)
		}
	}
}
