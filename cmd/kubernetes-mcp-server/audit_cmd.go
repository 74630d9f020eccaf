package main

import (
	"bytes"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

func newAuditCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read the audit file",
	}
	var callID string
	var follow bool
	var lines int
	tail := &cobra.Command{
		Use:   "tail [--call ID] [--follow] [-n N]",
		Short: "Print the audit file's last records, or one call's",
		Long: `Print the audit file's records (audit.file), one JSON line each, as the
server wrote them: a "call" line per plugin call, a "request" line per
Kubernetes API request, an "install" line per install and an "audit_gap"
line where records were lost. --call ID prints that call's records only;
-n N the last N (default 20; 0 for all); --follow goes on printing records
as they are written, until interrupted.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			defer interruptible(cmd)()
			cfg, err := loadConfig(cmd)
			if err != nil {
				return err
			}
			if lines < 0 {
				return fmt.Errorf("-n must be 0 or more, not %d", lines)
			}
			a, err := runtime.OpenAuditFile(cfg.Audit.File, callID)
			if err != nil {
				return err
			}
			defer a.Close()
			out := cmd.OutOrStdout()
			var last [][]byte
			if err := a.Read(func(line []byte) {
				last = append(last, bytes.Clone(line))
				if lines > 0 && len(last) > lines {
					last = last[1:]
				}
			}); err != nil {
				return err
			}
			for _, line := range last {
				fmt.Fprintf(out, "%s\n", line)
			}
			if !follow {
				return nil
			}
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-tick.C:
				}
				if err := a.Read(func(line []byte) { fmt.Fprintf(out, "%s\n", line) }); err != nil {
					return err
				}
			}
		},
	}
	tail.Flags().StringVar(&callID, "call", "", "Only the records of this call (its call_id)")
	tail.Flags().BoolVarP(&follow, "follow", "f", false, "Go on printing records as they are written")
	tail.Flags().IntVarP(&lines, "lines", "n", 20, "How many of the last records to print; 0 prints all")
	cmd.AddCommand(tail)
	return cmd
}
