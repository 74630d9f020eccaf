package main

import (
	"fmt"

	"github.com/spf13/cobra"
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
env (with the variable) or flag.`,
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
			if _, err := loadClusters(cfg); err != nil {
				return err
			}
			switch output {
			case "toml":
				return cfg.WriteTOML(cmd.OutOrStdout())
			case "json":
				return cfg.WriteJSON(cmd.OutOrStdout())
			default:
				return fmt.Errorf("--output must be toml or json, not %q", output)
			}
		},
	}
	show.Flags().StringVarP(&output, "output", "o", "toml", "Output format: toml or json")
	cmd.AddCommand(show)
	return cmd
}
