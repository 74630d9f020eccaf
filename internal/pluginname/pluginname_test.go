package pluginname

import (
	"strings"
	"testing"
)

func TestNormalizeSpellsEveryFormOneWay(t *testing.T) {
	for in, want := range map[string]string{
		"get_all": "get-all", "get-all": "get-all", "kubectl-get_all": "get-all", "foo bar": "foo-bar",
		" ns ": "ns", "evict*": "evict*", "kubectl-": "", "*_*": "*-*",
		"kubectl_x": "kubectl-x", "my-kubectl-x": "my-kubectl-x", // only "kubectl-" is a prefix
	} {
		if got := Normalize(in); got != want {
			t.Errorf("Normalize(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckRefusesWhatCannotBeAName(t *testing.T) {
	for _, bad := range []string{"", " ", "../x", "a/b", `a\b`, "a\x00b", "é", "a\nb", strings.Repeat("a", MaxLen+1)} {
		if Check(bad) == nil {
			t.Errorf("Check(%q) accepted it", bad)
		}
	}
	for _, good := range []string{"ns", "get_all", "foo-bar", "kubectl-ns", "foo bar"} {
		if err := Check(good); err != nil {
			t.Errorf("Check(%q): %v", good, err)
		}
	}
}

func TestToolNameAndCommand(t *testing.T) {
	if got := ToolName("foo-bar_baz"); got != "plugin_foo_bar_baz" {
		t.Errorf("ToolName = %q", got)
	}
	if got := ToolName(strings.Repeat("a", 58)); got != "" {
		t.Errorf("a 65-character tool name was accepted: %q", got)
	}
	if got := Command("foo-bar_baz"); got != "foo bar-baz" {
		t.Errorf("Command = %q", got)
	}
}

func TestSplitKrew(t *testing.T) {
	for _, tt := range []struct {
		ref, index, name, err string
	}{
		{ref: "ctx", name: "ctx"},
		{ref: "default/ctx", index: "default", name: "ctx"},
		{ref: " my_index/view-secret ", index: "my_index", name: "view-secret"},
		{ref: "kubectl-ctx", name: "ctx"},
		{ref: "", err: "krew plugin name"},
		{ref: "a/b/c", err: "krew plugin name"},
		{ref: "../ctx", err: "krew index name"},
		{ref: "idx/..", err: "krew plugin name"},
		{ref: "ctx --archive=/etc/passwd", err: "krew index name"},
		{ref: "ctx --update", err: "krew plugin name"},
		{ref: "-ctx", err: "krew plugin name"},
		{ref: "-x/ctx", err: "krew index name"},
	} {
		index, name, err := SplitKrew(tt.ref)
		switch {
		case tt.err != "":
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("SplitKrew(%q) error %v, want %q", tt.ref, err, tt.err)
			}
		case err != nil || index != tt.index || name != tt.name:
			t.Errorf("SplitKrew(%q) = %q, %q, %v; want %q, %q", tt.ref, index, name, err, tt.index, tt.name)
		}
	}
}
