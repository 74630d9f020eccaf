package pluginname

import (
	"regexp"
	"strings"
	"testing"
)

// sourceNamePattern is what ToolName accepts: "plugin_" plus the name must
// match toolNamePattern, so at most 64-len("plugin_") = 57 characters.
var sourceNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,57}$`)

// FuzzPluginName checks, for any string, that Check, Normalize, Command and
// ToolName do not panic and keep the promises of their docs and tests.
func FuzzPluginName(f *testing.F) {
	for _, s := range []string{
		"", " ", "ns", "get_all", "get-all", "kubectl-get_all", "foo bar", " ns ", "evict*", "kubectl-", "*_*",
		"kubectl_x", "my-kubectl-x", "kubectl-kubectl-x", "kubectl kubectl-x", "foo-bar_baz",
		"../x", "a/b", `a\b`, "a\x00b", "é", "a\nb", "\tx", "kubectl-\tx", "x\u00a0", "\u2028kubectl-x",
		"-", "_", "--", "-x-", "a..b", ".", "plugin_x",
		strings.Repeat("a", 57), strings.Repeat("a", 58), strings.Repeat("a", MaxLen), strings.Repeat("a", MaxLen+1),
		strings.Repeat("é", 100),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := Check(name)
		norm := Normalize(name)
		cmd := Command(name)
		tool := ToolName(name)

		// Check refuses what cannot be a name: empty, too long, NUL, a
		// path, characters outside printable ASCII.
		if err == nil {
			switch {
			case strings.TrimSpace(name) == "":
				t.Fatalf("Check(%q) accepted an empty name", name)
			case len(name) > MaxLen:
				t.Fatalf("Check accepted a name of %d bytes", len(name))
			case strings.ContainsAny(name, "/\\\x00") || strings.Contains(name, ".."):
				t.Fatalf("Check(%q) accepted a path or NUL", name)
			}
			for i := 0; i < len(name); i++ {
				if name[i] < 0x20 || name[i] > 0x7e {
					t.Fatalf("Check(%q) accepted byte %#x outside printable ASCII", name, name[i])
				}
			}
		} else if err.Error() == "" {
			t.Fatalf("Check(%q) refused it without saying why", name)
		}

		// ToolName is "" or a valid MCP tool name, and it is "" exactly
		// when "plugin_"+name (with "_" for "-") cannot be one.
		if tool != "" {
			if !toolNamePattern.MatchString(tool) || len(tool) > 64 {
				t.Fatalf("ToolName(%q) = %q, not a valid MCP tool name", name, tool)
			}
			if !strings.HasPrefix(tool, "plugin_") || strings.Contains(tool, "-") {
				t.Fatalf("ToolName(%q) = %q, want plugin_ and no '-'", name, tool)
			}
			if tool != "plugin_"+strings.ReplaceAll(name, "-", "_") {
				t.Fatalf("ToolName(%q) = %q, not plugin_ and the name", name, tool)
			}
			// A plugin that gets a tool has a name Check accepts.
			if err != nil {
				t.Fatalf("ToolName(%q) = %q, but Check refuses the name: %v", name, tool, err)
			}
		}
		if got, want := tool != "", sourceNamePattern.MatchString(name); got != want {
			t.Fatalf("ToolName(%q) = %q; want a tool name: %v", name, tool, want)
		}
		// Tool names do not tell "-" from "_".
		if other := ToolName(strings.ReplaceAll(name, "-", "_")); other != tool {
			t.Fatalf("ToolName(%q) = %q, but with '_' for '-' %q", name, tool, other)
		}
		// A plugin and its alias (Normalize of its name) get one tool,
		// unless the name starts with the prefix Normalize strips.
		if tool != "" && !strings.HasPrefix(name, Prefix) {
			if got := ToolName(norm); got != tool {
				t.Fatalf("ToolName(Normalize(%q)) = ToolName(%q) = %q, want %q", name, norm, got, tool)
			}
		}

		// Command spells "-" as " " and "_" as "-", and nothing else.
		if len(cmd) != len(name) {
			t.Fatalf("Command(%q) = %q changed the length", name, cmd)
		}
		for i := 0; i < len(name); i++ {
			want := name[i]
			switch want {
			case '-':
				want = ' '
			case '_':
				want = '-'
			}
			if cmd[i] != want {
				t.Fatalf("Command(%q) = %q: byte %d is %q, want %q", name, cmd, i, cmd[i], want)
			}
		}
		// kubectl runs kubectl-get_all as `kubectl get-all`: the command
		// and the name are one plugin to lookups and policy.
		if err == nil && !strings.HasPrefix(strings.TrimSpace(name), Prefix) && strings.Trim(name, "- ") == name &&
			!strings.HasPrefix(strings.TrimSpace(cmd), Prefix) {
			if got := Normalize(cmd); got != norm {
				t.Fatalf("Normalize(Command(%q)) = Normalize(%q) = %q, want Normalize(%q) = %q", name, cmd, got, name, norm)
			}
		}

		// Normalize spells separators one way: no "_" and no " " are left.
		if strings.ContainsAny(norm, "_ ") {
			t.Fatalf("Normalize(%q) = %q still has '_' or ' '", name, norm)
		}
		if len(norm) > len(name) {
			t.Fatalf("Normalize(%q) = %q grew", name, norm)
		}
		// Normalize is idempotent on the names Check accepts, except that
		// it strips one "kubectl-" only: the package's tests pin
		// Normalize("kubectl_x") = "kubectl-x", which normalizes again to
		// "x". Check refuses the other whitespace TrimSpace would remove.
		if err == nil && !strings.HasPrefix(norm, Prefix) {
			if again := Normalize(norm); again != norm {
				t.Fatalf("Normalize(Normalize(%q)) = %q, want %q", name, again, norm)
			}
		}
		// Normalizing a normalized name that passes Check keeps it a
		// name Check accepts (or the empty one "kubectl-" normalizes to).
		if err == nil && norm != "" {
			if err := Check(norm); err != nil {
				t.Fatalf("Check(Normalize(%q)) = Check(%q): %v", name, norm, err)
			}
		}
	})
}
