package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// Exit codes of `plugins run` when the plugin's own cannot be had, chosen
// as timeout(1) and shells choose them, so a pipeline tells them apart from
// a plugin's.
const (
	exitNotRun    = 125 // refused, or could not start: nothing ran
	exitTimeout   = 124 // execution_timeout ended it
	exitCancelled = 130 // interrupted
	exitKilled    = 137 // a signal ended it
)

// exitError carries a process exit code out of a command without an
// "Error:" line: the result has said what happened.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newPluginsRunCommand() *cobra.Command {
	var output, cluster, stdinFile string
	cmd := &cobra.Command{
		Use:   "run [--cluster C] [--output json] [--stdin FILE] NAME [--] [ARGS...]",
		Short: "Run one plugin call exactly as the MCP tool would, and exit with its exit code",
		Long: `Run one plugin call as plugins_execute runs it: the same sandbox, policy,
argument checks, gateway and audit. The plugin's stdout and stderr are
printed as they came back (capped at max_output), and the command exits with
the plugin's exit code; ` + fmt.Sprintf("%d", exitNotRun) + ` when nothing ran (refused, or it could not
start), ` + fmt.Sprintf("%d", exitTimeout) + ` on execution_timeout, ` + fmt.Sprintf("%d", exitCancelled) + ` when interrupted, ` + fmt.Sprintf("%d", exitKilled) + ` when a signal
ended it. --output json prints the whole result instead, with api_requests:
every Kubernetes API request the plugin made, as the gateway decided it.
This command's flags go before NAME; everything after NAME (after an
optional --) is the plugin's own argv.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defer interruptible(cmd)()
			if output != "text" && output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", output)
			}
			var stdin string
			if stdinFile != "" {
				var data []byte
				var err error
				if stdinFile == "-" {
					data, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), runtime.MaxStdin+1))
				} else {
					data, err = os.ReadFile(stdinFile)
				}
				if err != nil {
					return fmt.Errorf("--stdin: %w", err)
				}
				stdin = string(data)
			}
			rt, err := newCallRuntime(cmd)
			if err != nil {
				return interrupted(cmd, args[0], err)
			}
			defer rt.Close()
			pluginArgs := args[1:]
			if len(pluginArgs) > 0 && pluginArgs[0] == "--" {
				pluginArgs = pluginArgs[1:]
			}
			res, err := rt.Execute(cmd.Context(), runtime.Call{Plugin: args[0], Args: pluginArgs, Cluster: cluster, Stdin: stdin})
			if err != nil && cmd.Context().Err() != nil {
				return interrupted(cmd, args[0], err)
			}
			if err != nil {
				res = &runtime.Result{Plugin: args[0], Cluster: cluster, ExitCode: -1, Timestamp: time.Now().UTC(),
					Sandbox: rt.Sandbox().Name, Status: "error", Message: err.Error()}
				if errors.Is(err, runtime.ErrRefused) {
					res.Status = "refused"
				}
			}
			// The audit record is written when the runtime closes: close it
			// before the exit code is known to the caller.
			if cerr := rt.Close(); cerr != nil && err == nil {
				return fmt.Errorf("plugin %s ran, but the server could not finish: %w", args[0], cerr)
			}
			if output == "json" {
				if err := writeJSON(cmd.OutOrStdout(), res); err != nil {
					return err
				}
			} else {
				fmt.Fprint(cmd.OutOrStdout(), res.Output)
				fmt.Fprint(cmd.ErrOrStderr(), res.Error)
				if res.Status != runtime.StatusOK || res.Truncated {
					fmt.Fprintf(cmd.ErrOrStderr(), "kubernetes-mcp-server: plugin %s: %s: %s\n", args[0], res.Status, res.Message)
				}
			}
			if code := runExitCode(res); code != 0 {
				return exitError{code}
			}
			return nil
		},
	}
	// Flags after NAME are the plugin's.
	cmd.Flags().SetInterspersed(false)
	cmd.Flags().StringVar(&cluster, "cluster", "", "Cluster to run on (default: the default cluster)")
	cmd.Flags().StringVar(&stdinFile, "stdin", "", "File whose content is the plugin's standard input; - reads this command's stdin")
	cmd.Flags().StringVarP(&output, "output", "o", "text", "Output format: text (the plugin's stdout and stderr) or json (the result)")
	return cmd
}

// runExitCode is the process's exit code for a call's result.
func runExitCode(res *runtime.Result) int {
	switch res.Status {
	case runtime.StatusOK:
		return 0
	case runtime.StatusFailed:
		if res.ExitCode > 0 {
			return res.ExitCode
		}
		return exitNotRun
	case runtime.StatusTimeout:
		return exitTimeout
	case runtime.StatusCancelled:
		return exitCancelled
	case runtime.StatusKilled:
		return exitKilled
	default:
		return exitNotRun
	}
}

// interrupted is the end of a run stopped by SIGINT or SIGTERM before its
// plugin ran: the exit code of a cancelled call, not of a failed command.
func interrupted(cmd *cobra.Command, plugin string, err error) error {
	if cmd.Context().Err() == nil {
		return err
	}
	fmt.Fprintf(cmd.ErrOrStderr(), "kubernetes-mcp-server: plugin %s: cancelled before it ran: interrupted\n", plugin)
	return exitError{exitCancelled}
}
