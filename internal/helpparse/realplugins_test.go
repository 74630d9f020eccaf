package helpparse

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// realPlugins builds (first run: minutes) or finds (then: milliseconds) the
// cached real plugins. A failure fails the test: these tests never skip.
func realPlugins(t *testing.T) string { return testenv.RealPlugins(t) }

// helpOf runs a plugin as an agent's server would: argv only, a short
// deadline, nothing of the caller's environment but PATH, and a fresh HOME
// (so no kubeconfig or plugin state leaks in). stdout and stderr together:
// kube-score prints its flags on stderr.
func helpOf(t *testing.T, dir, plugin string, args ...string) string {
	t.Helper()
	// A hang check, not a benchmark: make test loads the machine.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, plugin), args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", plugin, strings.Join(args, " "), err, out)
	}
	if len(out) == 0 {
		t.Fatalf("%s %s: no output", plugin, strings.Join(args, " "))
	}
	return string(out)
}

func TestRealPlugins(t *testing.T) {
	dir := realPlugins(t)
	tests := []struct {
		plugin string
		args   []string
		layout string
		desc   string
		usage  string
		names  []string // when set: exactly these parameters, in order
		flags  []flagWant
	}{{
		plugin: "kubectl-stern", args: []string{"--help"},
		layout: "cobra",
		desc:   "Tail multiple pods and containers from Kubernetes",
		usage:  "stern pod-query [flags]",
		flags: []flagWant{
			{Name: "all-namespaces", Short: "A", Type: "bool"},
			// since v1.31 --namespace takes several namespaces
			{Name: "namespace", Short: "n", Type: "array", ValueName: "strings"},
			{Name: "since", Short: "s", Type: "duration", Default: "48h0m0s"},
			{Name: "tail", Type: "int", Default: "-1", Desc: "Defaults to -1, showing all logs."},
			// "-t, --timestamps string[="default"]": a bare --timestamps means "default"
			{Name: "timestamps", Short: "t", Type: "string", Optional: "default"},
			{Name: "container", Short: "c", Type: "string", Default: ".*"},
			{Name: "container-state", Type: "array", Default: "[all]"},
			{Name: "exclude", Short: "e", Type: "array", ValueName: "stringArray"},
			{Name: "ephemeral-containers", Type: "bool", Default: "true"},
			{Name: "max-log-requests", Type: "int", Default: "-1"},
			{Name: "output", Short: "o", Type: "string", Default: "default"},
			{Name: "config", Type: "string", Default: "~/.config/stern/config.yaml"},
			{Name: "version", Short: "v", Type: "bool"},
		},
	}, {
		// krew's root command lists subcommands and one global flag, klog's -v.
		plugin: "kubectl-krew", args: []string{"--help"},
		layout: "cobra",
		desc:   "krew is the kubectl plugin manager.",
		usage:  "kubectl krew [command]",
		names:  []string{"v"},
		flags:  []flagWant{{Name: "v", Short: "v", Type: "string", ValueName: "Level", Desc: "log level verbosity"}},
	}, {
		// A subcommand's help: its own flags, then the inherited global one.
		plugin: "kubectl-krew", args: []string{"install", "--help"},
		layout: "cobra",
		desc:   "Install one or multiple kubectl plugins.",
		usage:  "kubectl krew install [flags]",
		names:  []string{"archive", "manifest", "manifest-url", "no-update-index", "v"},
		flags: []flagWant{
			{Name: "archive", Type: "string", Desc: "(Development-only)"},
			{Name: "manifest", Type: "string"},
			{Name: "manifest-url", Type: "string"},
			{Name: "no-update-index", Type: "bool"},
			{Name: "v", Short: "v", Type: "string", ValueName: "Level"},
		},
	}, {
		plugin: "kubectl-validate", args: []string{"--help"},
		layout: "cobra",
		desc:   "kubectl-validate is a CLI tool to validate Kubernetes manifests against their schemas",
		usage:  "kubectl-validate [manifests to validate] [flags]",
		flags: []flagWant{
			{Name: "kube-namespace", Short: "n", Type: "string"},
			{Name: "kube-as-group", Type: "array", ValueName: "stringArray"},
			{Name: "kube-insecure-skip-tls-verify", Type: "bool"},
			// a string that holds a duration: pflag says string, so string
			{Name: "kube-request-timeout", Type: "string", Default: "0"},
			{Name: "local-crds", Type: "array"},
			// a custom pflag type with an unquoted default
			{Name: "output", Short: "o", Type: "string", Default: "human", ValueName: "OutputFormat"},
			// "Required if not connected directly to cluster": conditional, so not required
			{Name: "version", Type: "string", Default: "1.30"},
		},
	}, {
		// kube-score prints Go-flag-style "Usage of" then pflag's listing on stderr.
		plugin: "kubectl-score", args: []string{"--help"},
		layout: "cobra",
		usage:  "kubectl score [action] --flags",
		flags: []flagWant{
			{Name: "all-default-optional", Type: "bool"},
			{Name: "color", Type: "string", Default: "auto"},
			{Name: "enable-optional-test", Type: "array"},
			{Name: "min-replicas-deployment", Type: "int", Default: "2"},
			{Name: "kubernetes-version", Type: "string", Default: "v1.18"},
			{Name: "output-format", Short: "o", Type: "string", Default: "human"},
			// pflag's count: -vvv
			{Name: "verbose", Short: "v", Type: "int", ValueName: "count"},
		},
	}, {
		// kubectx is a bash script; its help lists modes ("kubectl ctx -c,
		// --current : ..."), and positional forms (<NAME>, -) are no flags.
		plugin: "kubectl-ctx", args: []string{"--help"},
		layout: "getopts",
		names:  []string{"current", "d", "unset"},
		flags: []flagWant{
			{Name: "current", Short: "c", Type: "bool", Desc: "show the current context name"},
			// "-d <NAME> [<NAME...>]": one or more names
			{Name: "d", Short: "d", Type: "array", ValueName: "NAME", Desc: "won't delete the user/cluster entry"},
			{Name: "unset", Short: "u", Type: "bool"},
		},
	}, {
		plugin: "kubectl-ns", args: []string{"--help"},
		layout: "getopts",
		names:  []string{"current"},
		flags:  []flagWant{{Name: "current", Short: "c", Type: "bool", Desc: "show the current namespace"}},
	}}
	for _, tt := range tests {
		t.Run(tt.plugin+" "+strings.Join(tt.args, " "), func(t *testing.T) {
			text := helpOf(t, dir, tt.plugin, tt.args...)
			h := Parse(text)
			if h.Layout != tt.layout {
				t.Errorf("layout %q, want %q", h.Layout, tt.layout)
			}
			if h.Description != tt.desc {
				t.Errorf("description %q, want %q", h.Description, tt.desc)
			}
			if tt.usage != "" && h.Usage != tt.usage {
				t.Errorf("usage %q, want %q", h.Usage, tt.usage)
			}
			if tt.names != nil {
				if got := strings.Join(names(h), " "); got != strings.Join(tt.names, " ") {
					t.Errorf("parameters\n got %s\nwant %s", got, strings.Join(tt.names, " "))
				}
			}
			for _, p := range h.Parameters {
				// --help/-h never; and every flag found is in the text as written
				if p.Name == "help" || p.Name == "h" {
					t.Errorf("help flag listed: %+v", p)
				}
				if len(p.Name) > 1 && !strings.Contains(text, "--"+p.Name) || p.Short != "" && !strings.Contains(text, "-"+p.Short) {
					t.Errorf("invented: %+v", p)
				}
			}
			checkFlags(t, h, tt.flags)
			if t.Failed() {
				t.Logf("help text:\n%s", text)
			}
		})
	}
}
