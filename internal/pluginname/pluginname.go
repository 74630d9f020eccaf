// Package pluginname is the one description of a kubectl plugin's name: how
// it is checked, compared, run as a command and served as an MCP tool.
package pluginname

import (
	"fmt"
	"regexp"
	"strings"
)

// MaxLen bounds a plugin name an agent may send.
const MaxLen = 255

// Prefix starts every plugin's file name.
const Prefix = "kubectl-"

// Check refuses what cannot be a plugin's name, before any lookup: an
// empty name, a path, a NUL or characters outside printable ASCII.
func Check(name string) error {
	shown := name
	if len(shown) > 80 {
		shown = shown[:80] + "..."
	}
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("plugin name is empty (plugins_list shows the plugins)")
	case len(name) > MaxLen:
		return fmt.Errorf("plugin name %q is longer than %d bytes", shown, MaxLen)
	case strings.IndexByte(name, 0) >= 0:
		return fmt.Errorf("plugin name %q contains a NUL byte", shown)
	case strings.ContainsAny(name, `/\`) || strings.Contains(name, ".."):
		return fmt.Errorf("plugin name %q may not contain a path (/, \\ or ..): give the name only, e.g. get_all", shown)
	}
	for _, r := range name {
		if r < 0x20 || r > 0x7e {
			return fmt.Errorf("plugin name %q has characters outside printable ASCII", shown)
		}
	}
	return nil
}

// Normalize spells a plugin name, or a glob of names, the one way lookups
// and policy compare them: without a leading "kubectl-", with "-" for "_"
// and for the spaces of a command, as kubectl runs kubectl-get_all as
// `kubectl get-all` and kubectl-foo-bar as `kubectl foo bar`.
func Normalize(name string) string {
	return separators.Replace(strings.TrimPrefix(strings.TrimSpace(name), Prefix))
}

// separators allocates only when it changes something, which keeps policy's
// per-request decisions free of allocations.
var separators = strings.NewReplacer("_", "-", " ", "-")

// Command spells a plugin name as kubectl's command line does: "-" nests,
// "_" is "-".
func Command(name string) string {
	return strings.ReplaceAll(strings.ReplaceAll(name, "-", " "), "_", "-")
}

// toolNamePattern is what MCP clients accept as a tool name.
var toolNamePattern = regexp.MustCompile(`^[a-zA-Z0-9_-]{1,64}$`)

// ToolName is the MCP tool that serves a plugin, or "" when its name
// cannot form one.
func ToolName(name string) string {
	t := "plugin_" + strings.ReplaceAll(name, "-", "_")
	if name == "" || !toolNamePattern.MatchString(t) {
		return ""
	}
	return t
}

// krewNamePattern is what krew accepts as a plugin's or an index's name
// (sigs.k8s.io/krew's validation.IsSafePluginName: it becomes a folder),
// less a leading "-", which krew would read as a flag.
var krewNamePattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_-]{0,62}$`)

// CheckKrewIndex refuses what krew could not take as an index name.
func CheckKrewIndex(name string) error {
	if !krewNamePattern.MatchString(name) {
		return fmt.Errorf("krew index name %q: use letters, digits, - and _ (at most 63, not starting with -)", name)
	}
	return nil
}

// SplitKrew reads a krew plugin reference, "NAME" or "INDEX/NAME" as
// `kubectl krew install` takes it, and returns its index ("" when none was
// written) and name, checked as krew checks them.
func SplitKrew(ref string) (index, name string, err error) {
	ref = strings.TrimSpace(ref)
	index, name, found := strings.Cut(ref, "/")
	if !found {
		index, name = "", ref
	} else if err := CheckKrewIndex(index); err != nil {
		return "", "", err
	}
	name = strings.TrimPrefix(name, Prefix)
	if !krewNamePattern.MatchString(name) {
		return "", "", fmt.Errorf("krew plugin name %q: write NAME or INDEX/NAME, with letters, digits, - and _ (plugins_list shows what is installed)", ref)
	}
	return index, name, nil
}
