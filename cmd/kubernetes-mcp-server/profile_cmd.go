package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newProfileCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Audit the sandbox a plugin call gets",
	}
	var cluster string
	var explain bool
	show := &cobra.Command{
		Use:   "show NAME",
		Short: "Print the OCI runtime spec a call of this plugin would run with",
		Long: `Print, as JSON, the OCI runtime spec the container sandbox gives a call of
the plugin NAME on --cluster (default: default_cluster). It is computed
from the configuration by the same code the sandbox uses; nothing runs.
CALL-ID stands for the call's id and ARGS for its arguments. --explain
prints the profile's named options, top to bottom, before the spec.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			reg, err := loadClusters(cfg)
			if err != nil {
				return err
			}
			rt, err := newRuntimeWith(cmd, cfg, reg)
			if err != nil {
				return err
			}
			p, err := rt.Profile(cmd.Context(), args[0], cluster)
			if err != nil {
				return err
			}
			if explain {
				fmt.Fprintf(cmd.OutOrStdout(), "# sandbox profile of plugin %s on cluster %q, top to bottom:\n", p.Plugin, p.Cluster)
				for i, o := range p.Options {
					fmt.Fprintf(cmd.OutOrStdout(), "# %2d. %s\n", i+1, o)
				}
			}
			return writeJSON(cmd.OutOrStdout(), p.Spec)
		},
	}
	show.Flags().StringVar(&cluster, "cluster", "", "Target cluster (default: default_cluster)")
	show.Flags().BoolVar(&explain, "explain", false, "Print the profile's named options as comments before the spec")
	cmd.AddCommand(show)
	return cmd
}
