package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

func newProfileCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "Audit the sandbox a plugin call gets",
	}
	var cluster, output string
	var explain, all bool
	show := &cobra.Command{
		Use:   "show NAME | --all",
		Short: "Print the sandbox a call of this plugin would run with",
		Long: `Print, as JSON, what the sandbox gives a call of the plugin NAME on
--cluster (default: default_cluster): for a native plugin the OCI runtime
spec of its container, for a WebAssembly plugin (kubectl-NAME.wasm) the
settings of its wasm guest (memory limit, timeout, argv, environment,
folders, host functions). It is computed from the configuration by the
same code the sandbox uses; nothing runs. CALL-ID stands for the call's id
and ARGS for its arguments. --explain prints the profile's named options,
top to bottom, and the request rules the call's API gateway applies,
before the spec. --output json prints all of it as one JSON object:
options, request_rules and spec (or wasm). --all prints, for an auditor,
one JSON document with that object for every plugin policy allows, and the
plugins it does not, each with the reason.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if all {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			rt, err := newCallRuntime(cmd)
			if err != nil {
				return err
			}
			defer rt.Close()
			if all {
				set, err := rt.Profiles(cmd.Context(), cluster)
				if err != nil {
					return err
				}
				return writeJSON(cmd.OutOrStdout(), set)
			}
			p, err := rt.Profile(cmd.Context(), args[0], cluster)
			if err != nil {
				return err
			}
			if p.Note != "" {
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %s\n", p.Note)
			}
			switch output {
			case "json":
				return writeJSON(cmd.OutOrStdout(), p)
			case "spec":
			default:
				return fmt.Errorf("--output must be spec or json, not %q", output)
			}
			if explain {
				out := cmd.OutOrStdout()
				if p.Note != "" {
					fmt.Fprintf(out, "# NOTE: %s\n", p.Note)
				}
				fmt.Fprintf(out, "# sandbox profile of plugin %s on cluster %q, top to bottom:\n", p.Plugin, p.Cluster)
				for i, o := range p.Options {
					fmt.Fprintf(out, "# %2d. %s\n", i+1, o)
				}
				if p.Launch != nil {
					fmt.Fprintf(out, "# the launcher execs argv %q\n#   with environment %q\n", p.Launch.Argv, p.Launch.Env)
				}
				fmt.Fprintln(out, "# API requests, decided by the first rule that matches:")
				for _, r := range p.RequestRules {
					what := strings.Join(r.Resources, ",")
					if len(r.NonResourceURLs) > 0 {
						what = strings.Join(r.NonResourceURLs, ",")
					}
					verdict := "deny"
					if r.Allow {
						verdict = "allow"
					}
					line := fmt.Sprintf("#   %-5s %s: verbs %s on %s", verdict, r.Name, strings.Join(r.Verbs, ","), what)
					if len(r.Except) > 0 {
						line += " except " + strings.Join(r.Except, ",")
					}
					if len(r.Namespaces) > 0 {
						line += " in namespaces " + strings.Join(r.Namespaces, ",")
					}
					fmt.Fprintln(out, line)
				}
			}
			if p.Wasm != nil {
				return writeJSON(cmd.OutOrStdout(), p.Wasm)
			}
			return writeJSON(cmd.OutOrStdout(), p.Spec)
		},
	}
	show.Flags().BoolVar(&all, "all", false, "Every plugin's profile and request rules as one JSON document")
	show.Flags().StringVar(&cluster, "cluster", "", "Target cluster (default: default_cluster)")
	show.Flags().BoolVar(&explain, "explain", false, "Print the profile's named options and request rules as comments before the spec")
	show.Flags().StringVarP(&output, "output", "o", "spec", "Output: spec (the OCI spec) or json (options, request rules and spec)")
	cmd.AddCommand(show)
	return cmd
}
