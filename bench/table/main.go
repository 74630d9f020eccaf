// Command table reads the output of the `go test -bench` runs that
// bench/run.sh makes and prints the speed table: each figure's median and
// tail, the anchor measured in the same run, their ratio, the goal and
// whether it is met, in Markdown, to stdout and to -out with the date, the
// machine and the command that reproduces it.
//
// It reads the standard benchmark lines
//
//	BenchmarkX/sub-2   1   123 ns/op   4.5 p50-ms   0.8 ratio
//
// keyed by benchmark name (without the -GOMAXPROCS suffix) and unit; the
// rows (rows.go) say which units make each figure. A file's first line
// may be "# command: ..." naming the command that wrote it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"
)

func main() {
	out := flag.String("out", "", "also write the table, with the date and the machine, to this Markdown file")
	command := flag.String("command", "make bench", "the command that reproduces the run, for -out")
	elapsed := flag.Duration("elapsed", 0, "how long the run took, for -out")
	load := flag.String("load", "", "the 1-minute load average when the run started, for -out")
	flag.Parse()
	runs, err := readFiles(flag.Args())
	if err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
	table := render(rows, runs)
	fmt.Print(table)
	if *out == "" {
		return
	}
	m := machine()
	if *load != "" {
		m = append(m, "load average (1 min) when the run started: "+*load)
	}
	doc := document(table, runs, m, *command, *elapsed, time.Now())
	if err := os.WriteFile(*out, []byte(doc), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, "table:", err)
		os.Exit(1)
	}
}

// result is one benchmark's metrics, by unit.
type result struct {
	pkg     string
	command string
	metrics map[string]float64
}

// runs is what the benchmark output said.
type runs struct {
	results map[string]*result // by benchmark name
	failed  map[string]bool    // benchmarks (and packages) that failed
	lines   []string           // the benchmark lines as printed, for the record
	cmds    []string           // the commands, in order
}

func readFiles(files []string) (*runs, error) {
	r := &runs{results: map[string]*result{}, failed: map[string]bool{}}
	for _, file := range files {
		f, err := os.Open(file)
		if err != nil {
			return nil, err
		}
		err = r.read(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
	}
	return r, nil
}

var (
	benchLine = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s+(\d+)\s+(\S+ ns/op.*)$`)
	// A benchmark that prints goes on its name's line; its figures
	// follow on a line of their own.
	benchName    = regexp.MustCompile(`^(Benchmark\S+?)(-\d+)?\s`)
	benchFigures = regexp.MustCompile(`^\s*(\d+)\s+(\S+ ns/op.*)$`)
	failLine     = regexp.MustCompile(`^\s*--- FAIL: (Benchmark\S+)`)
)

// read adds one `go test -bench` output to r.
func (r *runs) read(in io.Reader) error {
	// pending is the benchmark whose name line came without its figures:
	// its name and the name as printed.
	pkg, command, pending, pendingAs := "", "", "", ""
	s := bufio.NewScanner(in)
	s.Buffer(make([]byte, 1<<20), 1<<20)
	for s.Scan() {
		line := s.Text()
		switch {
		case strings.HasPrefix(line, "# command: "):
			command = strings.TrimPrefix(line, "# command: ")
			r.cmds = append(r.cmds, command)
		case strings.HasPrefix(line, "# load: ") && len(r.cmds) > 0:
			r.cmds[len(r.cmds)-1] += "    # load average (1 min) " + strings.TrimPrefix(line, "# load: ")
		case strings.HasPrefix(line, "pkg: "):
			pkg = strings.TrimPrefix(line, "pkg: ")
		case failLine.MatchString(line):
			r.failed[failLine.FindStringSubmatch(line)[1]] = true
		case strings.HasPrefix(line, "FAIL\t") || strings.HasPrefix(line, "FAIL "):
			if f := strings.Fields(line); len(f) > 1 {
				r.failed[f[1]] = true
			}
		default:
			name, figures := "", ""
			if m := benchLine.FindStringSubmatch(line); m != nil {
				name, figures = m[1], m[4]
			} else if m := benchFigures.FindStringSubmatch(line); m != nil && pending != "" {
				name, figures = pending, m[2]
				line = pendingAs + "\t" + strings.TrimSpace(line)
			} else if m := benchName.FindStringSubmatch(line); m != nil {
				pending, pendingAs = m[1], m[1]+m[2]
				continue
			} else {
				continue
			}
			pending = ""
			fields := strings.Fields(figures)
			if len(fields)%2 != 0 {
				continue
			}
			res := &result{pkg: pkg, command: command, metrics: map[string]float64{}}
			for i := 0; i < len(fields); i += 2 {
				v, err := strconv.ParseFloat(fields[i], 64)
				if err != nil {
					res = nil
					break
				}
				res.metrics[fields[i+1]] = v
			}
			if res != nil {
				r.results[name] = res
				r.lines = append(r.lines, line)
			}
		}
	}
	return s.Err()
}

// machine describes this machine: cores, memory, kernel and the versions
// of what the figures depend on.
func machine() []string {
	first := func(argv ...string) string {
		out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
		if err != nil {
			return "not found"
		}
		line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return line
	}
	cpu, mem := "", ""
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(data), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	if data, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kib float64
		fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(data), "\n", 2)[0], "MemTotal:"), "%f", &kib)
		mem = fmt.Sprintf("%.1f GiB", kib/1024/1024)
	}
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return []string{
		fmt.Sprintf("cores: %d (%s)", runtime.NumCPU(), cpu),
		"memory: " + mem,
		"kernel: " + strings.TrimSpace(string(kernel)),
		"go: " + first("go", "version"),
		"containerd: " + first("containerd", "--version"),
		"runc: " + first("runc", "--version"),
		"runsc: " + first("runsc", "--version"),
	}
}

// document is the results file: the table with its date, machine,
// command, notes and the benchmark lines it was made from.
func document(table string, r *runs, machine []string, command string, elapsed time.Duration, now time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Benchmark results\n\nWritten by `%s` (bench/run.sh, then bench/table) on %s", command, now.UTC().Format("2006-01-02 15:04 MST"))
	if elapsed > 0 {
		fmt.Fprintf(&b, "; the run took %s", elapsed.Round(time.Second))
	}
	b.WriteString(".\n\nMachine:\n\n")
	for _, m := range machine {
		fmt.Fprintf(&b, "- %s\n", m)
	}
	b.WriteString("\n")
	b.WriteString(table)
	b.WriteString("\nNotes:\n\n")
	for _, n := range notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	if len(r.cmds) > 0 {
		b.WriteString("\nCommands (each row's benchmark ran in one of them):\n\n```\n")
		for _, c := range r.cmds {
			b.WriteString(c + "\n")
		}
		b.WriteString("```\n")
	}
	lines := append([]string(nil), r.lines...)
	sort.Strings(lines)
	b.WriteString("\nThe benchmark lines the table was made from:\n\n```\n")
	for _, l := range lines {
		b.WriteString(l + "\n")
	}
	b.WriteString("```\n")
	return b.String()
}
