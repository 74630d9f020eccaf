package helpparse

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// flagWant is what a test expects of one parameter. Short, Type, Default,
// Required and Optional are always compared (empty means absent);
// ValueName and Desc (a substring of Description) only when set.
type flagWant struct {
	Name, Short, Type, Default string
	Required                   bool
	Optional                   string
	ValueName                  string
	Desc                       string
}

func checkFlags(t *testing.T, h Help, want []flagWant) {
	t.Helper()
	byName := map[string]Parameter{}
	for _, p := range h.Parameters {
		byName[p.Name] = p
	}
	for _, w := range want {
		p, ok := byName[w.Name]
		if !ok {
			t.Errorf("--%s: not found; have %v", w.Name, names(h))
			continue
		}
		if p.Short != w.Short || p.Type != w.Type || p.Default != w.Default || p.Required != w.Required || p.OptionalValue != w.Optional {
			t.Errorf("--%s: got short=%q type=%q default=%q required=%v optional=%q; want short=%q type=%q default=%q required=%v optional=%q",
				w.Name, p.Short, p.Type, p.Default, p.Required, p.OptionalValue, w.Short, w.Type, w.Default, w.Required, w.Optional)
		}
		if w.ValueName != "" && p.ValueName != w.ValueName {
			t.Errorf("--%s: value name %q, want %q", w.Name, p.ValueName, w.ValueName)
		}
		if w.Desc != "" && !strings.Contains(p.Description, w.Desc) {
			t.Errorf("--%s: description %q does not contain %q", w.Name, p.Description, w.Desc)
		}
	}
}

func names(h Help) []string {
	var n []string
	for _, p := range h.Parameters {
		n = append(n, p.Name)
	}
	return n
}

func TestParseFixtures(t *testing.T) {
	tests := []struct {
		file, layout, desc, usage string
		names                     []string // all parameters, in order
		flags                     []flagWant
	}{{
		file:   "cobra.txt",
		layout: "cobra",
		desc:   "kubectl-tail tails logs from many pods at once.",
		usage:  "kubectl-tail pod-query [flags]\nkubectl-tail [command]",
		names: []string{"all-namespaces", "container", "container-state", "count", "max-bytes", "retries", "ratio",
			"threshold", "exclude", "ports", "labels", "selector", "since", "timestamps", "color", "follow", "tail",
			"log-level", "token-file", "kubeconfig", "verbose", "context", "v", "namespace", "request-timeout"},
		flags: []flagWant{
			{Name: "all-namespaces", Short: "A", Type: "bool"},
			{Name: "container", Short: "c", Type: "string", Default: ".*", ValueName: "string", Desc: "Container name when multiple containers in pod"},
			{Name: "container-state", Type: "array", Default: "[running]"},
			{Name: "count", Type: "int", Default: "10", ValueName: "int32"},
			{Name: "max-bytes", Type: "int"},
			{Name: "retries", Type: "int", Default: "3"},
			{Name: "ratio", Type: "float", Default: "0.5"},
			{Name: "threshold", Type: "float"},
			{Name: "exclude", Short: "e", Type: "array"},
			{Name: "ports", Type: "array"},
			{Name: "labels", Type: "array", Default: "[app=tail]"},
			// continuation lines are joined
			{Name: "selector", Short: "l", Type: "string", Desc: `default to ".*" for the pod-query. The selector is matched server-side.`},
			{Name: "since", Short: "s", Type: "duration", Default: "48h0m0s"},
			{Name: "timestamps", Short: "t", Type: "string", Optional: "default"},
			{Name: "color", Type: "bool", Default: "true"},
			{Name: "follow", Type: "bool", Default: "true", Optional: "false"},
			{Name: "tail", Type: "int", Default: "-1", Desc: "to show."},
			{Name: "log-level", Type: "string", Default: "info", ValueName: "Level"},
			{Name: "token-file", Type: "string", Required: true},
			{Name: "kubeconfig", Type: "string", Required: true},
			{Name: "verbose", Short: "V", Type: "int"},
			// Global Flags: and Inherited Flags: count too; the first --context wins
			{Name: "context", Type: "string", Desc: "kubeconfig context"},
			{Name: "v", Short: "v", Type: "string", ValueName: "Level"},
			{Name: "namespace", Short: "n", Type: "string", Default: "default"},
			{Name: "request-timeout", Type: "duration", Default: "0s"},
		},
	}, {
		file:   "kubectl.txt",
		layout: "cobra",
		desc:   "Show the resources of a namespace as a tree.",
		usage:  "kubectl tree KIND NAME [options]",
		names:  []string{"all-namespaces", "chunk-size", "selector", "label-columns", "request-timeout", "output", "ratio", "recursive", "grace-period", "template"},
		flags: []flagWant{
			{Name: "all-namespaces", Short: "A", Type: "bool", Default: "false", Desc: "across all namespaces."},
			{Name: "chunk-size", Type: "int", Default: "500"},
			{Name: "selector", Short: "l", Type: "string", Desc: "'!='. (e.g. -l key1=value1,key2=value2)"},
			{Name: "label-columns", Short: "L", Type: "array"},
			{Name: "request-timeout", Type: "duration", Default: "0s"},
			{Name: "output", Short: "o", Type: "string", Default: "wide"},
			{Name: "ratio", Type: "float", Default: "0.25"},
			{Name: "recursive", Short: "R", Type: "bool", Default: "true", Desc: "recursively."},
			{Name: "grace-period", Type: "int", Default: "-1"},
			{Name: "template", Type: "string", Default: "{{.metadata.name}}"},
		},
	}, {
		file:   "urfave.txt",
		layout: "urfave",
		desc:   "capture the traffic of a pod with tcpdump",
		usage:  "kubectl-sniff [global options] command [command options] POD",
		names:  []string{"namespace", "container", "filter", "output-file", "snaplen", "timeout", "ratio", "label", "privileged", "verbose", "version"},
		flags: []flagWant{
			{Name: "namespace", Short: "n", Type: "string", Default: "default", ValueName: "value", Desc: "namespace of the pod"},
			{Name: "container", Short: "c", Type: "string", Required: true},
			{Name: "filter", Short: "f", Type: "string", Desc: "tcpdump filter"},
			{Name: "output-file", Short: "o", Type: "string", Desc: "file instead of starting Wireshark"},
			// urfave prints "value" for every type: the default tells
			{Name: "snaplen", Type: "int", Default: "0"},
			{Name: "timeout", Type: "duration", Default: "1m30s"},
			{Name: "ratio", Type: "float", Default: "0.5"},
			{Name: "label", Short: "l", Type: "array"},
			{Name: "privileged", Short: "p", Type: "bool", Default: "false"},
			{Name: "verbose", Type: "bool"},
			{Name: "version", Short: "v", Type: "bool"},
		},
	}, {
		file:   "kingpin.txt",
		layout: "kingpin",
		desc:   "Trace pods with bpftrace.",
		usage:  "kubectl-trace [<flags>] <command> [<args> ...]",
		names:  []string{"namespace", "timeout", "max-events", "color", "filename", "tag", "ratio", "verbose", "format"},
		flags: []flagWant{
			// kingpin writes the default where the placeholder goes
			{Name: "namespace", Short: "n", Type: "string", Default: "default"},
			{Name: "timeout", Type: "duration", Default: "30s"},
			{Name: "max-events", Type: "int", Default: "100"},
			{Name: "color", Type: "bool"},
			{Name: "filename", Short: "f", Type: "string", Required: true, ValueName: "FILENAME"},
			{Name: "tag", Type: "array", ValueName: "TAG"},
			{Name: "ratio", Type: "float", Default: "0.5"},
			{Name: "verbose", Short: "v", Type: "bool"},
			{Name: "format", Type: "string", Default: "json"},
		},
	}, {
		file:   "kong.txt",
		layout: "kingpin",
		desc:   "Lint Kubernetes manifests against a policy.",
		usage:  "kubectl-lint --config=STRING <paths> ... [flags]",
		names:  []string{"config", "level", "retries", "timeout", "tags", "labels", "color", "quiet"},
		flags: []flagWant{
			// kong lists required flags in the usage line
			{Name: "config", Type: "string", Required: true, ValueName: "STRING", Desc: "Policy file."},
			{Name: "level", Short: "l", Type: "string", Default: "info"},
			{Name: "retries", Type: "int", ValueName: "INT"},
			{Name: "timeout", Type: "duration"},
			{Name: "tags", Type: "array", ValueName: "TAGS"},
			{Name: "labels", Type: "array", ValueName: "KEY=VALUE"},
			{Name: "color", Type: "bool"},
			{Name: "quiet", Short: "q", Type: "bool"},
		},
	}, {
		file:   "getopts.txt",
		layout: "getopts",
		desc:   "Back up the resources of a namespace to a bucket.",
		usage:  "kubectl-backup [-n namespace] [-o dir] [-a] [-d] [-v] -b BUCKET NAME",
		names:  []string{"n", "o", "b", "a", "k", "v", "d"},
		flags: []flagWant{
			{Name: "n", Short: "n", Type: "string", Default: "current namespace", ValueName: "NAMESPACE"},
			{Name: "o", Short: "o", Type: "string", Default: "/tmp/backup"},
			// outside the usage line's brackets: required
			{Name: "b", Short: "b", Type: "string", Required: true, ValueName: "BUCKET"},
			{Name: "a", Short: "a", Type: "bool"},
			{Name: "k", Short: "k", Type: "int", Default: "5"},
			{Name: "v", Short: "v", Type: "bool"},
			// only in the usage line
			{Name: "d", Short: "d", Type: "bool"},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			b, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			h := Parse(string(b))
			if h.Layout != tt.layout {
				t.Errorf("layout %q, want %q", h.Layout, tt.layout)
			}
			if h.Description != tt.desc {
				t.Errorf("description %q, want %q", h.Description, tt.desc)
			}
			if h.Usage != tt.usage {
				t.Errorf("usage %q, want %q", h.Usage, tt.usage)
			}
			if got := strings.Join(names(h), " "); got != strings.Join(tt.names, " ") {
				t.Errorf("parameters\n got %s\nwant %s", got, strings.Join(tt.names, " "))
			}
			checkFlags(t, h, tt.flags)
		})
	}
}

// Smaller shapes, inline.
func TestParseShapes(t *testing.T) {
	tests := []struct {
		name, text, layout string
		names              []string
		flags              []flagWant
	}{{
		name: "go flag package",
		text: "Usage of kubectl-foo:\n  -kubeconfig string\n    \tpath to the kubeconfig (default \"~/.kube/config\")\n  -timeout duration\n    \thow long to wait (default 5s)\n  -v\tverbose\n",
		// no long/short convention and no cobra header: the fallback
		layout: "getopts",
		names:  []string{"kubeconfig", "timeout", "v"},
		flags: []flagWant{
			{Name: "kubeconfig", Type: "string", Default: "~/.kube/config", Desc: "path to the kubeconfig"},
			{Name: "timeout", Type: "duration", Default: "5s"},
			{Name: "v", Short: "v", Type: "bool", Desc: "verbose"},
		},
	}, {
		name: "kubectx-style mode listing",
		text: "USAGE:\n  kubectl foo                   : list the things\n  kubectl foo <NAME>            : switch to <NAME>\n  kubectl foo -                 : switch back\n" +
			"  kubectl foo -c, --current     : show the current thing\n  kubectl foo -d <NAME> [<NAME...>] : delete <NAME>\n                                  (not the user)\n\n  kubectl foo -h,--help         : show this message\n",
		layout: "getopts",
		names:  []string{"current", "d"},
		flags: []flagWant{
			{Name: "current", Short: "c", Type: "bool", Desc: "show the current thing"},
			{Name: "d", Short: "d", Type: "array", ValueName: "NAME", Desc: "delete <NAME> (not the user)"},
		},
	}, {
		name:   "description marks required",
		text:   "Flags:\n      --a string   Required. The a.\n      --b string   The b. Required.\n      --c string   The c [required]\n      --d string   Not required.\n      --e string   Required when --a is set to x.\n      --f string   This flag is required.\n",
		layout: "cobra",
		names:  []string{"a", "b", "c", "d", "e", "f"},
		flags: []flagWant{
			{Name: "a", Type: "string", Required: true},
			{Name: "b", Type: "string", Required: true},
			{Name: "c", Type: "string", Required: true},
			{Name: "d", Type: "string"},
			{Name: "e", Type: "string"},
			{Name: "f", Type: "string", Required: true},
		},
	}, {
		name:   "colours and CRLF",
		text:   "\x1b[1mFlags:\x1b[0m\r\n  -n, --namespace string   \x1b[32mthe namespace\x1b[0m (default \"x\")\r\n",
		layout: "cobra",
		names:  []string{"namespace"},
		flags:  []flagWant{{Name: "namespace", Short: "n", Type: "string", Default: "x", Desc: "the namespace"}},
	}, {
		name:   "kong env after the sentence",
		text:   "Usage: x [flags]\n\nFlags:\n  -h, --help          Show context-sensitive help.\n      --token=STRING  API token. ($X_TOKEN)\n",
		layout: "kingpin",
		names:  []string{"token"},
		flags:  []flagWant{{Name: "token", Type: "string", ValueName: "STRING", Desc: "API token."}},
	}, {
		name:   "prose is not flags",
		text:   "Some tool.\n\n- first point\n-- a separator --\nThe --force flag is dangerous, see below.\n---\n  -  dash item\n",
		layout: "",
		names:  nil,
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := Parse(tt.text)
			if h.Layout != tt.layout {
				t.Errorf("layout %q, want %q", h.Layout, tt.layout)
			}
			if got := strings.Join(names(h), " "); got != strings.Join(tt.names, " ") {
				t.Errorf("parameters\n got %s\nwant %s", got, strings.Join(tt.names, " "))
			}
			checkFlags(t, h, tt.flags)
		})
	}
}

func TestParseNotHelp(t *testing.T) {
	for name, text := range map[string]string{
		"empty":   "",
		"spaces":  "   \n\t\n",
		"garbage": "\x00\xff\xfe[[[((--=:\n\t-\n--\n-=\n--[no-]\n---x\n--=x\n-\xff\n",
		"error":   "Error: unknown command \"--help\" for \"foo\"\n",
	} {
		t.Run(name, func(t *testing.T) {
			h := Parse(text)
			if len(h.Parameters) != 0 || h.Layout != "" {
				t.Errorf("got layout %q and %v from %q", h.Layout, names(h), text)
			}
		})
	}
}

// A huge text is cut at MaxInput: it must stay fast and still parse its start.
func TestParseHuge(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("testdata", "cobra.txt"))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for sb.Len() < 5<<20 {
		sb.Write(b)
		sb.WriteString("      --x" + strings.Repeat("y", sb.Len()%97) + " string   filler\n")
	}
	for name, text := range map[string]string{
		"many lines": sb.String(),
		"one line":   "  --a string  " + strings.Repeat("x ", 5<<19),
		"dashes":     strings.Repeat("-", 5<<20),
	} {
		t.Run(name, func(t *testing.T) {
			start := time.Now()
			h := Parse(text)
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
			if name == "many lines" && (len(h.Parameters) < 25 || h.Layout != "cobra") {
				t.Errorf("layout %q, %d parameters", h.Layout, len(h.Parameters))
			}
		})
	}
}

var validTypes = map[string]bool{"string": true, "int": true, "bool": true, "duration": true, "float": true, "array": true}

func FuzzParse(f *testing.F) {
	for _, name := range []string{"cobra.txt", "kubectl.txt", "urfave.txt", "kingpin.txt", "kong.txt", "getopts.txt"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("")
	f.Add("  -x, --[no-]y=Z...  (default \"\\x\") [$A]\n")
	f.Add("USAGE:\n  p -d <N> [<N...>] : d\n")
	f.Fuzz(func(t *testing.T, text string) {
		h := Parse(text)
		seen := map[string]bool{}
		for _, p := range h.Parameters {
			if p.Name == "" || strings.HasPrefix(p.Name, "-") || strings.HasPrefix(p.Short, "-") {
				t.Fatalf("bad name %+v", p)
			}
			if seen[p.Name] {
				t.Fatalf("duplicate %q", p.Name)
			}
			seen[p.Name] = true
			if !validTypes[p.Type] {
				t.Fatalf("bad type %+v", p)
			}
		}
	})
}
