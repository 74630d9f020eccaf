package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"text/tabwriter"

	"github.com/hashicorp/go-hclog"
	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/compose"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/metrics"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

func newPluginsCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "plugins",
		Short: "Discover, inspect, run and install kubectl plugins",
	}
	cmd.AddCommand(newPluginsListCommand(), newPluginsInfoCommand(), newPluginsInstallCommand(), newPluginsRunCommand(), newPluginsCheckCommand())
	return cmd
}

// newRuntime loads the configuration and discovers the plugins once.
func newRuntime(cmd *cobra.Command) (*runtime.Runtime, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	return newRuntimeWith(cmd, cfg, nil)
}

// newCallRuntime is newRuntime with the clusters: the runtime of a command
// that runs or profiles calls.
func newCallRuntime(cmd *cobra.Command) (*runtime.Runtime, error) {
	cfg, err := loadConfig(cmd)
	if err != nil {
		return nil, err
	}
	reg, err := loadClusters(cfg)
	if err != nil {
		return nil, err
	}
	return newRuntimeWith(cmd, cfg, reg)
}

// newRuntimeWith discovers the plugins once for a loaded configuration.
// The caller closes the runtime, which waits for its sandboxes' removal.
func newRuntimeWith(cmd *cobra.Command, cfg *config.Config, reg *clusters.Registry) (*runtime.Runtime, error) {
	log := newLogger(cfg, cmd.ErrOrStderr())
	for _, w := range cfg.Warnings {
		log.Warn(w)
	}
	rt, _, err := buildRuntime(cmd.Context(), cfg, reg, log, false, nil)
	if err != nil {
		return nil, err
	}
	if _, err := rt.Discover(cmd.Context()); err != nil {
		rt.Close()
		return nil, fmt.Errorf("discover plugins: %w", err)
	}
	return rt, nil
}

// buildRuntime is the one way the commands make a runtime: the policy and
// sandbox backends the configuration describes (internal/compose), with the
// process's PATH and KREW_ROOT, the plugin cache and the clusters.
// noNative says why native plugins cannot run, nil when they can.
func buildRuntime(ctx context.Context, cfg *config.Config, reg *clusters.Registry, log hclog.Logger, server bool, m *metrics.Metrics) (rt *runtime.Runtime, noNative error, err error) {
	parts, err := compose.Build(ctx, cfg, compose.Env{PathEnv: os.Getenv("PATH"), KrewRoot: os.Getenv("KREW_ROOT"), Server: server}, log)
	if err != nil {
		return nil, nil, fmt.Errorf("invalid configuration: %w", err)
	}
	rt, err = runtime.New(cfg, runtime.Options{
		Policy: parts.Policy, Backends: parts.Backends, Dirs: parts.Dirs, Container: parts.Container, Wasm: parts.Wasm, Kubernetes: parts.Kubernetes,
		Installer: parts.Installer, Metrics: m, Logger: log, CacheFile: compose.DefaultCacheFile(), Clusters: reg,
	})
	if err != nil {
		parts.Backends.Close()
		return nil, nil, fmt.Errorf("invalid configuration: %w", err)
	}
	return rt, parts.NoNative, nil
}

func newPluginsListCommand() *cobra.Command {
	var output, filter string
	var details bool
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List the plugins found on PATH, plugin_paths and krew's bin folder",
		Long: `List every kubectl plugin the server finds, the way 'kubectl plugin list'
does (PATH order, the first file of a name wins), with kubectl's warnings:
overshadowed plugins, files that are not executable, plugins that would
overwrite a built-in command. JSON is {"plugins": [...], "warnings": [...]}
and always has every field; --details adds them to the table.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output must be table or json, not %q", output)
			}
			if filter != "" {
				if _, err := path.Match(filter, ""); err != nil {
					return fmt.Errorf("--filter %q: %w", filter, err)
				}
			}
			rt, err := newRuntime(cmd)
			if err != nil {
				return err
			}
			defer rt.Close()
			plugins := []runtime.PluginInfo{}
			for _, p := range rt.Plugins() {
				if matchesFilter(p, filter) {
					plugins = append(plugins, p)
				}
			}
			warnings := rt.Warnings()
			if warnings == nil {
				warnings = []discovery.Warning{}
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), map[string]any{"plugins": plugins, "warnings": warnings})
			}
			writePluginTable(cmd.OutOrStdout(), cmd.ErrOrStderr(), plugins, warnings, details, rt.Sandbox().Available)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "Output format: table or json")
	cmd.Flags().StringVar(&filter, "filter", "", "Only plugins whose name matches this glob (for example 'get*')")
	cmd.Flags().BoolVar(&details, "details", false, "Show each plugin's kind, policy, description and parameters")
	return cmd
}

func newPluginsInfoCommand() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "info NAME",
		Short: "Show one plugin: where it is, what policy says, and its parameters",
		Long:  "Show one plugin. NAME may be spelled get_all, get-all or kubectl-get_all.",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", output)
			}
			rt, err := newRuntime(cmd)
			if err != nil {
				return err
			}
			defer rt.Close()
			p, err := rt.Plugin(args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return writeJSON(cmd.OutOrStdout(), p)
			}
			writePluginDetails(cmd.OutOrStdout(), p, "")
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "Output format: text or json")
	return cmd
}

func matchesFilter(p runtime.PluginInfo, filter string) bool {
	if filter == "" {
		return true
	}
	for _, name := range append([]string{p.Name, p.Command}, p.Aliases...) {
		if ok, _ := path.Match(filter, name); ok {
			return true
		}
	}
	return false
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// writePluginTable prints plugins as `kubectl plugin list` does: a path per
// plugin, its warnings under it.
func writePluginTable(out, errOut io.Writer, plugins []runtime.PluginInfo, warnings []discovery.Warning, details, runnable bool) {
	byPath := map[string][]string{}
	var others []string
	listed := map[string]bool{}
	for _, p := range plugins {
		listed[p.Path] = true
	}
	for _, w := range warnings {
		if w.Plugin == "" {
			fmt.Fprintf(errOut, "warning: %s\n", w.Message)
			continue
		}
		if !listed[w.Path] && byPath[w.Path] == nil {
			others = append(others, w.Path)
		}
		byPath[w.Path] = append(byPath[w.Path], w.Message)
	}
	if len(plugins) == 0 {
		fmt.Fprintln(out, "No kubectl plugins were found.")
	} else {
		fmt.Fprint(out, "The following compatible plugins are available:\n\n")
	}
	for _, p := range plugins {
		fmt.Fprintln(out, p.Path)
		for _, m := range byPath[p.Path] {
			fmt.Fprintf(out, "  - warning: %s\n", m)
		}
		if details {
			writePluginDetails(out, p, "    ")
		}
	}
	if len(others) > 0 {
		fmt.Fprint(out, "\nOther plugin files, which do not run:\n\n")
		for _, path := range others {
			fmt.Fprintln(out, path)
			for _, m := range byPath[path] {
				fmt.Fprintf(out, "  - warning: %s\n", m)
			}
		}
	}
	if !runnable && len(plugins) > 0 {
		fmt.Fprintln(errOut, "note: no sandbox backend for native plugins is available, so no native plugin's --help was run and none can run (WebAssembly plugins can).")
	}
}

func writePluginDetails(out io.Writer, p runtime.PluginInfo, indent string) {
	allowed := "no"
	if p.Allowed {
		allowed = "yes"
	}
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s%s:\t%s\n", indent, k, v)
		}
	}
	row("name", p.Name)
	row("command", "kubectl "+p.Command)
	row("path", p.Path)
	if p.ResolvedPath != p.Path {
		row("resolved path", p.ResolvedPath)
	}
	row("kind", string(p.Kind))
	row("sha256", p.SHA256)
	row("allowed", fmt.Sprintf("%s (%s: %s)", allowed, p.PolicyRule, p.PolicyReason))
	row("destructive", fmt.Sprint(p.Destructive))
	row("tool", p.ToolName)
	row("description", p.Description)
	row("help", p.HelpWarning)
	tw.Flush()
	if len(p.Parameters) == 0 {
		return
	}
	fmt.Fprintf(out, "%sparameters:\n", indent)
	tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	for _, prm := range p.Parameters {
		flag := "--" + prm.Name
		if prm.Short != "" {
			flag = "-" + prm.Short + ", " + flag
		}
		var notes []string
		if prm.Required {
			notes = append(notes, "required")
		}
		if prm.Default != "" {
			notes = append(notes, "default "+prm.Default)
		}
		desc := prm.Description
		if len(notes) > 0 {
			desc += " (" + strings.Join(notes, ", ") + ")"
		}
		fmt.Fprintf(tw, "%s  %s\t%s\t%s\n", indent, flag, prm.Type, desc)
	}
	tw.Flush()
}
