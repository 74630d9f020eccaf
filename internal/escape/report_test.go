package escape

import (
	"fmt"
	"os"
	"regexp"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"
	"time"
)

// A reportRow is one case on one tier.
type reportRow struct {
	Category, Case, Tier, Expected, Observed string
	Held                                     bool
}

var (
	reportMu sync.Mutex
	rows     []reportRow
)

// testFolder is a folder t.TempDir made: its name changes every run.
var testFolder = regexp.MustCompile(`/tmp/Test[^\s/:"]*(/[0-9]+)?`)

func record(r reportRow) {
	r.Observed = testFolder.ReplaceAllString(r.Observed, "<test folder>")
	reportMu.Lock()
	rows = append(rows, r)
	reportMu.Unlock()
}

// writeReport writes the Markdown report to path ("" writes nothing).
func writeReport(path string) error {
	if path == "" {
		return nil
	}
	reportMu.Lock()
	defer reportMu.Unlock()
	if len(rows) == 0 {
		return fmt.Errorf("no case ran")
	}
	order := map[string]int{}
	for i, tr := range tiers {
		order[tr.name] = i
	}
	sort.SliceStable(rows, func(i, j int) bool {
		if rows[i].Category != rows[j].Category {
			return rows[i].Category < rows[j].Category
		}
		if rows[i].Case != rows[j].Case {
			return rows[i].Case < rows[j].Case
		}
		return order[rows[i].Tier] < order[rows[j].Tier]
	})
	var b strings.Builder
	host, _ := os.Hostname()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "# Security report\n\nWritten by `make security-report` on %s, on %s (%s/%s, %d CPUs, Linux %s).\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), host, goruntime.GOOS, goruntime.GOARCH, goruntime.NumCPU(), strings.TrimSpace(string(kernel)))
	counts := map[string][2]int{}
	for _, r := range rows {
		c := counts[r.Tier]
		c[0]++
		if r.Held {
			c[1]++
		}
		counts[r.Tier] = c
	}
	fmt.Fprintf(&b, "| tier | cases | held |\n|---|---|---|\n")
	for _, name := range append(tierNames(), "all") {
		if c, ok := counts[name]; ok {
			fmt.Fprintf(&b, "| %s | %d | %d |\n", name, c[0], c[1])
		}
	}
	fmt.Fprintf(&b, "\n| case | tier | expected | observed | held |\n|---|---|---|---|---|\n")
	for _, r := range rows {
		held := "yes"
		if !r.Held {
			held = "**NO**"
		}
		fmt.Fprintf(&b, "| %s: %s | %s | %s | %s | %s |\n", r.Category, cell(r.Case), r.Tier, cell(r.Expected), cell(clip(r.Observed, 160)), held)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

func tierNames() []string {
	var names []string
	for _, tr := range tiers {
		names = append(names, tr.name)
	}
	return names
}

func cell(s string) string {
	s = strings.ReplaceAll(s, "|", `\|`)
	return strings.ReplaceAll(s, "\n", " ")
}
