// Command kubectl-manifest_lint is an example kubectl plugin (`kubectl
// manifest-lint`) that needs no cluster: it reads Kubernetes manifests and
// reports containers without resource limits, images without a pinned tag,
// long-running containers without probes, and privileged containers.
//
// `make run` builds it (static, for the sandbox image) and serves it as the
// MCP tool plugin_manifest_lint; give it a manifest as the call's stdin.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"
)

// Exit statuses.
const (
	exitClean    = 0 // nothing at or above --fail-on
	exitFindings = 1 // findings at or above --fail-on
	exitUsage    = 2 // bad flags or input that is not a manifest
)

// errFindings ends a run that found what --fail-on names.
var errFindings = errors.New("findings")

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	cmd := newCommand(stdin)
	cmd.SetArgs(args)
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	switch err := cmd.Execute(); {
	case err == nil:
		return exitClean
	case errors.Is(err, errFindings):
		return exitFindings
	default:
		fmt.Fprintln(stderr, "Error:", err)
		return exitUsage
	}
}

func newCommand(stdin io.Reader) *cobra.Command {
	var output, failOn string
	var skip []string
	cmd := &cobra.Command{
		Use: "manifest-lint [flags] [FILE...]",
		// kubectl runs it as `kubectl manifest-lint`: its help says so.
		Annotations: map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl manifest-lint"},
		Short:       "Check Kubernetes manifests for missing limits and probes, unpinned images and privileged containers",
		Long: `Check Kubernetes manifests for common mistakes, without a cluster.

It reads YAML (several documents) or JSON manifests from standard input, or
from the files named as arguments ("-" is standard input), and checks the
containers of every workload (Pod, Deployment, StatefulSet, DaemonSet,
ReplicaSet, ReplicationController, Job, CronJob, and any kind with a pod
template at spec.template.spec). Objects of kind List are checked item by item.

Checks:
  image-tag    error:   an image without a tag or with the "latest" tag
  privileged   error:   a container with securityContext.privileged: true
  limits       warning: a container without a cpu or memory limit
  probes       warning: a long-running container without a readiness or liveness probe

Exit status: 0 when nothing reaches --fail-on, 1 when something does, 2 when
the input is not a manifest or a flag is wrong.`,
		Example: `  kubectl manifest-lint < deployment.yaml
  kubectl manifest-lint --skip probes,limits -o json app.yaml`,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			if output != "text" && output != "json" {
				return fmt.Errorf("--output must be text or json, not %q", output)
			}
			if failOn != severityError && failOn != severityWarning && failOn != "none" {
				return fmt.Errorf("--fail-on must be error, warning or none, not %q", failOn)
			}
			l, err := newLinter(skip)
			if err != nil {
				return err
			}
			if len(args) == 0 {
				args = []string{"-"}
			}
			for _, name := range args {
				if err := lintSource(l, name, stdin); err != nil {
					return err
				}
			}
			rep := l.report
			for _, f := range rep.Findings {
				if f.Severity == severityError {
					rep.Errors++
				} else {
					rep.Warnings++
				}
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				for _, f := range rep.Findings {
					fmt.Fprintln(out, f)
				}
				fmt.Fprintf(out, "%d workload(s) checked: %d error(s), %d warning(s)\n", rep.Objects, rep.Errors, rep.Warnings)
			}
			if rep.Errors > 0 && failOn != "none" || rep.Warnings > 0 && failOn == severityWarning {
				return errFindings
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "text", "Output format: text or json")
	cmd.Flags().StringVar(&failOn, "fail-on", severityError, "Lowest severity that makes the exit status 1: error, warning or none")
	cmd.Flags().StringSliceVar(&skip, "skip", nil, "Checks not to run: image-tag, privileged, limits, probes")
	return cmd
}

func lintSource(l *linter, name string, stdin io.Reader) error {
	if name == "-" {
		return l.lint("-", stdin)
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	return l.lint(name, f)
}
