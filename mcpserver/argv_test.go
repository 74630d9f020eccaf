package mcpserver

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/helpparse"
)

var testParams = []helpparse.Parameter{
	{Name: "namespace", Short: "n", Type: "string", Default: "default"},
	{Name: "all-namespaces", Short: "A", Type: "bool"},
	{Name: "count", Type: "int", Default: "1"},
	{Name: "ratio", Type: "float"},
	{Name: "timeout", Type: "duration"},
	{Name: "label", Short: "l", Type: "array"},
	{Name: "o", Short: "o", Type: "string"},                  // short-only
	{Name: "v", Short: "v", Type: "bool"},                    // short-only bool
	{Name: "q", Short: "q", Type: "bool", Default: "true"},   // short-only bool, default on
	{Name: "f", Short: "f", Type: "array"},                   // short-only array
	{Name: "selector", Type: "string", Required: true},       // required
	{Name: "unknown-type", Type: "something-new"},            // treated as a string
	{Name: "kubeconfig", Type: "string"},                     // refused by the runtime: not offered
	{Name: "cert", Type: "string"},                           // abbreviates --certificate-authority: refused, not offered
	{Name: "args", Type: "string"},                           // collides with the tool's own
	{Name: "cluster", Type: "string"},                        // collides with the tool's own
	{Name: "bad name!", Type: "string"},                      // not a property name
	{Name: "s", Short: "s", Type: "string"},                  // kubectl's -s (--server)
	{Name: "namespace", Short: "x", Type: "string"},          // listed twice
	{Name: strings.Repeat("a", 65), Type: "string"},          // too long
	{Name: "since", Short: "s", Type: "duration"},            // -s with a long name is fine
	{Name: "with.dot_and-dash", Type: "string"},              // valid property name
	{Name: "Upper", Type: "bool"},                            // valid property name
	{Name: "fields", Type: "array", Description: "fields."},  // array with a description
	{Name: "z", Short: "z", Type: "int", Description: "zzz"}, // short-only int
}

func TestExposedParams(t *testing.T) {
	kept, skipped := exposedParams(testParams)
	var names []string
	for _, p := range kept {
		names = append(names, p.Name)
	}
	want := []string{"namespace", "all-namespaces", "count", "ratio", "timeout", "label", "o", "v", "q", "f",
		"selector", "unknown-type", "since", "with.dot_and-dash", "Upper", "fields", "z"}
	if !reflect.DeepEqual(names, want) {
		t.Errorf("kept %q\nwant %q", names, want)
	}
	if len(skipped) != 8 {
		t.Errorf("skipped %d, want 8: %q", len(skipped), skipped)
	}
	for _, s := range skipped {
		if !strings.Contains(s, ": ") {
			t.Errorf("skip reason without a why: %q", s)
		}
	}
}

func TestBuildArgv(t *testing.T) {
	params, _ := exposedParams(testParams)
	big := strings.Repeat("x", maxValueBytes+1)
	tests := []struct {
		name    string
		args    string // JSON
		want    []string
		wantErr string // substring
	}{
		{name: "required only", args: `{"selector":"app=x"}`, want: []string{"--selector=app=x"}},
		{name: "missing required", args: `{}`, wantErr: `argument "selector" is required`},
		{name: "null is absent", args: `{"selector":"a","namespace":null}`, want: []string{"--selector=a"}},
		{
			name: "every type, in help order, then positionals",
			args: `{"args":["pods","-rf","a b; rm -rf /","$(id)"],"selector":"s","fields":["x"],"timeout":"1m","ratio":0.5,"count":3,"all-namespaces":true,"namespace":"kube-system","label":["a=b","c=d"],"unknown-type":"u","Upper":false,"with.dot_and-dash":"w"}`,
			want: []string{"--namespace=kube-system", "--all-namespaces", "--count=3", "--ratio=0.5", "--timeout=1m",
				"--label=a=b", "--label=c=d", "--selector=s", "--unknown-type=u", "--with.dot_and-dash=w", "--Upper=false",
				"--fields=x", "pods", "-rf", "a b; rm -rf /", "$(id)"},
		},
		{name: "bool false long", args: `{"selector":"s","all-namespaces":false}`, want: []string{"--all-namespaces=false", "--selector=s"}},
		{name: "short-only value is two elements", args: `{"selector":"s","o":"-json"}`, want: []string{"-o", "-json", "--selector=s"}},
		{name: "short-only bool true", args: `{"selector":"s","v":true}`, want: []string{"-v", "--selector=s"}},
		{name: "short-only bool false is left out", args: `{"selector":"s","v":false}`, want: []string{"--selector=s"}},
		{name: "short-only bool false with default true", args: `{"selector":"s","q":false}`, want: []string{"-q=false", "--selector=s"}},
		{name: "short-only array", args: `{"selector":"s","f":["a","b"]}`, want: []string{"-f", "a", "-f", "b", "--selector=s"}},
		{name: "short-only int", args: `{"selector":"s","z":7}`, want: []string{"--selector=s", "-z", "7"}},
		{name: "empty string value", args: `{"selector":""}`, want: []string{"--selector="}},
		{name: "int written as 2.0", args: `{"selector":"s","count":2.0}`, want: []string{"--count=2", "--selector=s"}},
		{name: "int written as 1e2", args: `{"selector":"s","count":1e2}`, want: []string{"--count=100", "--selector=s"}},
		{name: "big int stays exact", args: `{"selector":"s","count":9007199254740993}`, want: []string{"--count=9007199254740993", "--selector=s"}},
		{name: "float exponent", args: `{"selector":"s","ratio":1e-3}`, want: []string{"--ratio=0.001", "--selector=s"}},
		{name: "empty args", args: `{"selector":"s","args":[]}`, want: []string{"--selector=s"}},
		{name: "unknown argument lists the valid ones", args: `{"selector":"s","nope":1}`, wantErr: `unknown argument "nope"; valid arguments are: namespace, all-namespaces, count`},
		{name: "unknown argument hint", args: `{"selector":"s","all_namespaces":true}`, wantErr: `"all_namespaces" means "all-namespaces"`},
		{name: "unknown short alias hint", args: `{"selector":"s","n":"x"}`, wantErr: `"n" means "namespace"`},
		{name: "cluster is not a flag here", args: `{"selector":"s","cluster":"c1"}`, wantErr: `unknown argument "cluster"`},
		{name: "refused flag is unknown", args: `{"selector":"s","kubeconfig":"/x"}`, wantErr: `unknown argument "kubeconfig"`},
		{name: "string for int", args: `{"selector":"s","count":"3"}`, wantErr: `argument "count" must be an integer, not a string`},
		{name: "fraction for int", args: `{"selector":"s","count":1.5}`, wantErr: `must be a whole number`},
		{name: "string for float", args: `{"selector":"s","ratio":"0.5"}`, wantErr: `must be a number, not a string`},
		{name: "number for string", args: `{"selector":5}`, wantErr: `argument "selector" must be a string, not a number`},
		{name: "string for bool", args: `{"selector":"s","all-namespaces":"true"}`, wantErr: `must be a boolean (true or false), not a string`},
		{name: "string for array", args: `{"selector":"s","label":"a=b"}`, wantErr: `must be an array of strings`},
		{name: "number in array", args: `{"selector":"s","label":["a",1]}`, wantErr: `element 2 must be a string, not a number`},
		{name: "object for string", args: `{"selector":{"a":1}}`, wantErr: `not an object`},
		{name: "args not an array", args: `{"selector":"s","args":"pods"}`, wantErr: `"args" must be an array of strings`},
		{name: "args element not a string", args: `{"selector":"s","args":["a",true]}`, wantErr: `element 2 must be a string, not a boolean`},
		{name: "args element null", args: `{"selector":"s","args":[null]}`, wantErr: `element 1 must be a string, not null`},
		{name: "NUL in a value", args: `{"selector":"a\u0000b"}`, wantErr: `NUL byte`},
		{name: "NUL in args", args: `{"selector":"s","args":["\u0000"]}`, wantErr: `NUL byte`},
		{name: "NUL in an array", args: `{"selector":"s","label":["\u0000"]}`, wantErr: `NUL byte`},
		{name: "value too long", args: `{"selector":"` + big + `"}`, wantErr: `is 65537 bytes long; one value may be at most 65536 bytes`},
		{name: "positional too long", args: `{"selector":"s","args":["` + big + `"]}`, wantErr: `element 1 is 65537 bytes long`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, err := decodeArguments([]byte(tt.args))
			if err != nil {
				t.Fatal(err)
			}
			got, err := buildArgv(params, in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q (argv %q)", err, tt.wantErr, got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("argv %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestBuildArgvLimits(t *testing.T) {
	// A 1 MB argument gets a clear error.
	mb := strings.Repeat("y", 1<<20)
	_, err := buildArgv(nil, map[string]any{"args": []any{mb}})
	if err == nil || !strings.Contains(err.Error(), "1048576 bytes long") {
		t.Errorf("1 MB argument: %v", err)
	}
	// Many arguments.
	many := make([]any, maxArgvItems+1)
	for i := range many {
		many[i] = "a"
	}
	if _, err := buildArgv(nil, map[string]any{"args": many}); err == nil || !strings.Contains(err.Error(), "too many arguments") {
		t.Errorf("too many: %v", err)
	}
	// Many big arguments, each within bounds.
	big := make([]any, 20)
	for i := range big {
		big[i] = strings.Repeat("b", maxValueBytes)
	}
	if _, err := buildArgv(nil, map[string]any{"args": big}); err == nil || !strings.Contains(err.Error(), "arguments too large") {
		t.Errorf("too large: %v", err)
	}
	// Go values, not only decoded JSON.
	got, err := buildArgv([]helpparse.Parameter{{Name: "n", Type: "int"}, {Name: "l", Type: "array"}},
		map[string]any{"n": 3, "l": []string{"a"}, "args": []string{"x"}})
	if err != nil || !reflect.DeepEqual(got, []string{"--n=3", "--l=a", "x"}) {
		t.Errorf("go values: %q %v", got, err)
	}
}

func TestDecodeArguments(t *testing.T) {
	for _, tt := range []struct {
		in, wantErr string
	}{
		{``, ""}, {`null`, ""}, {` {} `, ""}, {`{"a":1}`, ""},
		{`[]`, "must be a JSON object, not an array"},
		{`"x"`, "must be a JSON object, not a string"},
		{`{`, "not valid JSON"},
		{`{} {}`, "more than one JSON value"},
	} {
		m, err := decodeArguments([]byte(tt.in))
		if tt.wantErr == "" {
			if err != nil || m == nil {
				t.Errorf("%q: %v %v", tt.in, m, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("%q: error %v, want %q", tt.in, err, tt.wantErr)
		}
	}
	m, _ := decodeArguments([]byte(`{"n": 12345678901234567890}`))
	if n, ok := m["n"].(json.Number); !ok || n.String() != "12345678901234567890" {
		t.Errorf("numbers are not kept exact: %#v", m["n"])
	}
}

// parseFuzzParams reads "name,short,type[,required]" lines.
func parseFuzzParams(spec string) []helpparse.Parameter {
	var out []helpparse.Parameter
	for _, line := range strings.Split(spec, "\n") {
		f := strings.Split(line, ",")
		if len(f) < 3 {
			continue
		}
		p := helpparse.Parameter{Name: f[0], Short: f[1], Type: f[2]}
		if len(f) > 3 && f[3] == "required" {
			p.Required = true
		}
		if len(f) > 4 {
			p.Default = f[4]
		}
		out = append(out, p)
		if len(out) == 32 {
			break
		}
	}
	return out
}

// FuzzArgv checks buildArgv never panics, and that what it builds is what
// the tool's arguments say: flag elements that name their parameter (a
// short-only flag's value follows it as its own element), then the
// positional args verbatim and in order, with no NUL and no value over
// the limit.
func FuzzArgv(f *testing.F) {
	f.Add("namespace,n,string\nall-namespaces,A,bool", []byte(`{"namespace":"default","all-namespaces":true,"args":["pods"]}`))
	f.Add("count,,int,required\nratio,,float", []byte(`{"count":3,"ratio":0.5}`))
	f.Add("o,o,string\nv,v,bool", []byte(`{"o":"-json","v":true,"args":["--","-x"]}`))
	f.Add("label,l,array", []byte(`{"label":["a","b"],"args":[]}`))
	f.Fuzz(func(t *testing.T, spec string, raw []byte) {
		params, _ := exposedParams(parseFuzzParams(spec))
		in, err := decodeArguments(raw)
		if err != nil {
			return
		}
		argv, err := buildArgv(params, in)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		var positional []string
		if list, ok := in[argsProperty].([]any); ok {
			for _, e := range list {
				positional = append(positional, e.(string))
			}
		}
		if len(argv) < len(positional) {
			t.Fatalf("argv %q lost positional args %q", argv, positional)
		}
		head, tail := argv[:len(argv)-len(positional)], argv[len(argv)-len(positional):]
		for i := range positional {
			if tail[i] != positional[i] {
				t.Fatalf("positional %d: %q, want %q verbatim (argv %q)", i, tail[i], positional[i], argv)
			}
		}
		total := 0
		for _, a := range argv {
			total += len(a)
			if strings.IndexByte(a, 0) >= 0 {
				t.Fatalf("NUL in argv %q", argv)
			}
		}
		if len(argv) > maxArgvItems || total > maxArgvBytes {
			t.Fatalf("argv over the limits: %d elements, %d bytes", len(argv), total)
		}
		for i := 0; i < len(head); i++ {
			a := head[i]
			if !strings.HasPrefix(a, "-") {
				t.Fatalf("element %d %q is neither a flag nor a positional arg (argv %q)", i, a, argv)
			}
			var owner *helpparse.Parameter
			for j := range params {
				p := &params[j]
				if shortOnly(*p) {
					if a == "-"+p.Short || a == "-"+p.Short+"=false" {
						owner = p
						break
					}
				} else if a == "--"+p.Name || strings.HasPrefix(a, "--"+p.Name+"=") {
					owner = p
					break
				}
			}
			if owner == nil {
				t.Fatalf("flag element %q names no parameter (argv %q)", a, argv)
			}
			if _, given := in[owner.Name]; !given {
				t.Fatalf("flag element %q for a parameter that was not given (argv %q)", a, argv)
			}
			if shortOnly(*owner) && owner.Type != helpparse.TypeBool {
				i++ // its value
				if i >= len(head) {
					t.Fatalf("short flag %q without its value (argv %q)", a, argv)
				}
				if len(head[i]) > maxValueBytes {
					t.Fatalf("value over the limit")
				}
			} else if k := strings.IndexByte(a, '='); k >= 0 && len(a)-k-1 > maxValueBytes {
				t.Fatalf("value over the limit")
			}
		}
	})
}
