package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/spf13/cobra"
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
			if cfg.Audit.File == "" {
				return errors.New("no audit file is configured: set [audit] file (env PLUGINS_AUDIT_FILE)")
			}
			if lines < 0 {
				return fmt.Errorf("-n must be 0 or more, not %d", lines)
			}
			f, err := os.Open(cfg.Audit.File)
			if err != nil {
				return fmt.Errorf("audit file: %w", err)
			}
			defer f.Close()
			keep := func(line []byte) bool {
				if callID == "" {
					return true
				}
				var rec struct {
					CallID string `json:"call_id"`
				}
				return json.Unmarshal(line, &rec) == nil && rec.CallID == callID
			}
			out := cmd.OutOrStdout()
			r := bufio.NewReaderSize(f, 64<<10)
			var last [][]byte
			var partial []byte
			// readLines returns whole lines only: the server appends each
			// record in one write, but a reader may see it half-way.
			readLines := func(each func([]byte)) error {
				for {
					chunk, err := r.ReadBytes('\n')
					partial = append(partial, chunk...)
					if err == io.EOF {
						return nil
					}
					if err != nil {
						return err
					}
					line := bytes.TrimSpace(partial)
					partial = nil
					if len(line) > 0 && keep(line) {
						each(line)
					}
				}
			}
			if err := readLines(func(line []byte) {
				last = append(last, bytes.Clone(line))
				if lines > 0 && len(last) > lines {
					last = last[1:]
				}
			}); err != nil {
				return fmt.Errorf("audit file: %w", err)
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
				if err := readLines(func(line []byte) { fmt.Fprintf(out, "%s\n", line) }); err != nil {
					return fmt.Errorf("audit file: %w", err)
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
