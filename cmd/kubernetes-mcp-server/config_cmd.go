package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
)

func newConfigCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the server's configuration",
	}
	var output string
	show := &cobra.Command{
		Use:   "show",
		Short: "Print the effective configuration and where each value came from",
		Long: `Print the configuration a server started with the same flags, environment and
file would use. Every value names its source: default, file (with the line),
env (with the variable) or flag. Then the clusters it resolves to: those of
kubeconfig_dir and the kubeconfig, and with rancher_url Rancher's, asked
once as the server does at start-up (TOML: as comments at the end; JSON:
"clusters", "default_cluster" and "rancher").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "toml" && output != "json" {
				return fmt.Errorf("--output must be toml or json, not %q", output)
			}
			// Fail exactly where serving would: settings, policy, clusters.
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			reg, _, err := loadClusterSources(cmd.Context(), cfg, newLogger(cfg, cmd.ErrOrStderr()))
			if err != nil {
				return err
			}
			shown := listClusters(reg)
			switch output {
			case "toml":
				if err := cfg.WriteTOML(cmd.OutOrStdout()); err != nil {
					return err
				}
				return shown.writeTOML(cmd.OutOrStdout())
			default:
				var b bytes.Buffer
				if err := cfg.WriteJSON(&b); err != nil {
					return err
				}
				return shown.writeJSON(cmd.OutOrStdout(), b.Bytes())
			}
		},
	}
	show.Flags().StringVarP(&output, "output", "o", "toml", "Output format: toml or json")
	cmd.AddCommand(show)
	return cmd
}

// shownCluster is one cluster as config show lists it: never a credential.
type shownCluster struct {
	Name    string `json:"name"`
	Server  string `json:"server"`
	Source  string `json:"source"`
	Default bool   `json:"default,omitempty"`
}

type shownClusters struct {
	Clusters []shownCluster         `json:"clusters"`
	Default  string                 `json:"default_cluster"`
	Rancher  *clusters.SourceStatus `json:"rancher,omitempty"`
}

func listClusters(reg *clusters.Registry) shownClusters {
	out := shownClusters{Clusters: []shownCluster{}, Default: reg.Default()}
	for _, name := range reg.Names() {
		c, err := reg.Get(name)
		if err != nil {
			continue // gone since Names
		}
		out.Clusters = append(out.Clusters, shownCluster{Name: name, Server: c.Server, Source: c.Source, Default: name == out.Default})
	}
	if st, ok := reg.Sources()[clusters.RancherSource]; ok {
		out.Rancher = &st
	}
	return out
}

// writeTOML appends the clusters as comments, so the output still loads.
func (s shownClusters) writeTOML(w io.Writer) error {
	var b strings.Builder
	b.WriteString("\n# Clusters this configuration resolves to")
	if s.Rancher != nil {
		b.WriteString(" (Rancher asked once, as a server does at start-up)")
	}
	b.WriteString(":\n")
	if len(s.Clusters) == 0 {
		b.WriteString("#   none\n")
	}
	for _, c := range s.Clusters {
		def := ""
		if c.Default {
			def = " (default)"
		}
		fmt.Fprintf(&b, "#   %s%s: %s, from %s\n", c.Name, def, c.Server, oneLine(c.Source))
	}
	if s.Default != "" && !slicesContains(s.Clusters, s.Default) {
		fmt.Fprintf(&b, "#   default_cluster %s is not among them now\n", s.Default)
	}
	if r := s.Rancher; r != nil {
		fmt.Fprintf(&b, "# Rancher: %s, %d clusters", r.Status, r.Clusters)
		if r.LastSuccess != nil {
			fmt.Fprintf(&b, ", last success %s", r.LastSuccess.UTC().Format(time.RFC3339))
		}
		b.WriteString("\n")
		if r.Error != "" {
			fmt.Fprintf(&b, "#   error: %s\n", oneLine(r.Error))
		}
		for _, w := range r.Warnings {
			fmt.Fprintf(&b, "#   warning: %s\n", oneLine(w))
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeJSON adds the clusters to config's own JSON object.
func (s shownClusters) writeJSON(w io.Writer, configJSON []byte) error {
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(configJSON, &doc); err != nil {
		return err
	}
	for key, v := range map[string]any{"clusters": s.Clusters, "default_cluster": s.Default, "rancher": s.Rancher} {
		if key == "rancher" && s.Rancher == nil {
			continue
		}
		raw, err := json.Marshal(v)
		if err != nil {
			return err
		}
		doc[key] = raw
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(doc)
}

func slicesContains(cs []shownCluster, name string) bool {
	for _, c := range cs {
		if c.Name == name {
			return true
		}
	}
	return false
}

// oneLine keeps a comment on its line: errors may hold several.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", "; ") }
