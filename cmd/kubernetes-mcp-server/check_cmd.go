package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/spf13/cobra"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/gateway"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy/rulesyntax"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// checkFile is a file of `plugins check` cases.
type checkFile struct {
	Cases []checkCase `toml:"case"`
}

// checkCase is one call and what must hold of it.
type checkCase struct {
	Name    string   `toml:"name"`
	Plugin  string   `toml:"plugin"`
	Args    []string `toml:"args"`
	Cluster string   `toml:"cluster"`
	Stdin   string   `toml:"stdin"`
	// StdinFile is read relative to the cases file.
	StdinFile string `toml:"stdin_file"`
	// ExitCode is what `plugins run` would exit with; 0 when not written.
	ExitCode int `toml:"exit_code"`
	// Output and Error are regular expressions stdout and stderr must match.
	Output string `toml:"output"`
	Error  string `toml:"error"`
	// Requests must each match at least one API request of the call;
	// NoRequests none. Each is "VERB RESOURCE": VERB a Kubernetes verb,
	// read, write or *; RESOURCE a resource (pods, or pods/log) or *.
	Requests   []string `toml:"requests"`
	NoRequests []string `toml:"no_requests"`

	output, stderr *regexp.Regexp
	requests       []requestPattern
	noRequests     []requestPattern
}

// requestPattern is one "VERB RESOURCE" of a case.
type requestPattern struct {
	raw, verb, resource, subresource string
}

func (p requestPattern) matches(r gateway.Record) bool {
	switch p.verb {
	case "*":
	case "read":
		if !rulesyntax.IsRead(r.Verb) {
			return false
		}
	case "write":
		if !rulesyntax.IsWrite(r.Verb) {
			return false
		}
	default:
		if r.Verb != p.verb {
			return false
		}
	}
	if p.resource == "*" {
		return true
	}
	return r.Resource == p.resource && (p.subresource == "" || r.Subresource == p.subresource)
}

func parseRequestPattern(s string) (requestPattern, error) {
	f := strings.Fields(s)
	if len(f) != 2 {
		return requestPattern{}, fmt.Errorf("request %q: write \"VERB RESOURCE\", e.g. \"list pods\", \"write *\" or \"* secrets\"", s)
	}
	p := requestPattern{raw: s, verb: f[0]}
	if p.verb != "read" && p.verb != "write" {
		if err := rulesyntax.CheckVerb(p.verb); err != nil {
			return requestPattern{}, fmt.Errorf("request %q: %w", s, err)
		}
	}
	p.resource, p.subresource, _ = strings.Cut(f[1], "/")
	return p, nil
}

// loadChecks reads and checks a cases file; a mistake anywhere in it runs
// no case.
func loadChecks(path string) ([]checkCase, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var file checkFile
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&file); err != nil {
		var strict *toml.StrictMissingError
		if errors.As(err, &strict) {
			return nil, fmt.Errorf("%s: %s", path, strict.String())
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(file.Cases) == 0 {
		return nil, fmt.Errorf("%s: no [[case]] tables", path)
	}
	seen := map[string]bool{}
	for i := range file.Cases {
		c := &file.Cases[i]
		where := fmt.Sprintf("%s: case %d", path, i+1)
		if c.Name == "" {
			c.Name = fmt.Sprintf("%d %s", i+1, c.Plugin)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%s: the name %q is used twice", where, c.Name)
		}
		seen[c.Name] = true
		if c.Plugin == "" {
			return nil, fmt.Errorf("%s (%s): no plugin", where, c.Name)
		}
		if c.StdinFile != "" {
			if c.Stdin != "" {
				return nil, fmt.Errorf("%s (%s): stdin and stdin_file exclude each other", where, c.Name)
			}
			f := c.StdinFile
			if !filepath.IsAbs(f) {
				f = filepath.Join(filepath.Dir(path), f)
			}
			b, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("%s (%s): stdin_file: %w", where, c.Name, err)
			}
			c.Stdin = string(b)
		}
		for _, re := range []struct {
			src string
			dst **regexp.Regexp
			key string
		}{{c.Output, &c.output, "output"}, {c.Error, &c.stderr, "error"}} {
			if re.src == "" {
				continue
			}
			if *re.dst, err = regexp.Compile(re.src); err != nil {
				return nil, fmt.Errorf("%s (%s): %s: %w", where, c.Name, re.key, err)
			}
		}
		for _, list := range []struct {
			src []string
			dst *[]requestPattern
		}{{c.Requests, &c.requests}, {c.NoRequests, &c.noRequests}} {
			for _, s := range list.src {
				p, err := parseRequestPattern(s)
				if err != nil {
					return nil, fmt.Errorf("%s (%s): %w", where, c.Name, err)
				}
				*list.dst = append(*list.dst, p)
			}
		}
	}
	return file.Cases, nil
}

// verdict is what a case found: nothing for a pass.
func (c *checkCase) verdict(res *runtime.Result) []string {
	var failures []string
	if code := runExitCode(res); code != c.ExitCode {
		why := ""
		if res.Message != "" {
			why = ": " + res.Message
		}
		failures = append(failures, fmt.Sprintf("exit code %d, want %d (status %s%s)", code, c.ExitCode, res.Status, why))
	}
	if c.output != nil && !c.output.MatchString(res.Output) {
		failures = append(failures, fmt.Sprintf("stdout does not match %q", c.Output))
	}
	if c.stderr != nil && !c.stderr.MatchString(res.Error) {
		failures = append(failures, fmt.Sprintf("stderr does not match %q", c.Error))
	}
	for _, p := range c.requests {
		found := false
		for _, r := range res.APIRequests {
			found = found || p.matches(r)
		}
		if !found {
			failures = append(failures, fmt.Sprintf("no API request matched %q", p.raw))
		}
	}
	for _, p := range c.noRequests {
		for _, r := range res.APIRequests {
			if p.matches(r) {
				failures = append(failures, fmt.Sprintf("API request %s %s (%s) matched %q, which must not happen", r.Verb, r.Path, r.Decision, p.raw))
				break
			}
		}
	}
	return failures
}

// junitSuite is the JUnit XML that CI systems read.
type junitSuite struct {
	XMLName  xml.Name    `xml:"testsuite"`
	Name     string      `xml:"name,attr"`
	Tests    int         `xml:"tests,attr"`
	Failures int         `xml:"failures,attr"`
	Time     string      `xml:"time,attr"`
	Cases    []junitCase `xml:"testcase"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
	SystemErr string        `xml:"system-err,omitempty"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Text    string `xml:",chardata"`
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.3f", d.Seconds()) }

func newPluginsCheckCommand() *cobra.Command {
	var junit string
	cmd := &cobra.Command{
		Use:   "check FILE [--junit REPORT.xml]",
		Short: "Run a file of plugin cases and check how each plugin behaved",
		Long: `Run every [[case]] of a TOML file as 'plugins run' would (same sandbox,
policy, gateway and audit) and check each one: its exit code (exit_code,
default 0; 125 when it did not run), its stdout and stderr (output and error,
regular expressions), and the Kubernetes API requests it made: requests that
must happen and no_requests that must not, each "VERB RESOURCE" where VERB
is a verb, read, write or *, and RESOURCE a resource (pods, pods/log) or *:
no_requests = ["write *", "* secrets"] says no write and nothing of secrets.
A case names plugin, and may name args, cluster, stdin or stdin_file.

Prints one line a case and a summary; --junit writes JUnit XML. Exits 1 when
any case fails, so a pipeline can gate on it. A mistake in the file runs no
case.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			defer interruptible(cmd)()
			cases, err := loadChecks(args[0])
			if err != nil {
				return err
			}
			rt, err := newCallRuntime(cmd)
			if err != nil {
				return err
			}
			defer rt.Close()
			out := cmd.OutOrStdout()
			suite := junitSuite{Name: "kubernetes-mcp-server plugins check " + filepath.Base(args[0])}
			started := time.Now()
			for _, c := range cases {
				res, err := rt.Execute(cmd.Context(), runtime.Call{Plugin: c.Plugin, Args: c.Args, Cluster: c.Cluster, Stdin: c.Stdin})
				if err != nil {
					status := runtime.Status("error")
					if errors.Is(err, runtime.ErrRefused) {
						status = "refused"
					}
					res = &runtime.Result{Plugin: c.Plugin, Cluster: c.Cluster, ExitCode: -1, Status: status, Message: err.Error()}
				}
				failures := c.verdict(res)
				jc := junitCase{Name: c.Name, Classname: "plugin." + c.Plugin, Time: seconds(time.Duration(res.DurationMS) * time.Millisecond),
					SystemOut: res.Output, SystemErr: res.Error}
				mark := "PASS"
				if len(failures) > 0 {
					mark = "FAIL"
					suite.Failures++
					jc.Failure = &junitFailure{Message: failures[0], Text: strings.Join(failures, "\n")}
				}
				suite.Cases = append(suite.Cases, jc)
				fmt.Fprintf(out, "%s  %s (%s, %s, %d API requests, call %s)\n", mark, c.Name, res.Status, sandboxOf(res), len(res.APIRequests), res.CallID)
				for _, f := range failures {
					fmt.Fprintf(out, "      %s\n", f)
				}
			}
			suite.Tests, suite.Time = len(cases), seconds(time.Since(started))
			fmt.Fprintf(out, "%d cases: %d passed, %d failed\n", suite.Tests, suite.Tests-suite.Failures, suite.Failures)
			if junit != "" {
				if err := writeJUnit(junit, suite); err != nil {
					return fmt.Errorf("--junit: %w", err)
				}
			}
			if err := rt.Close(); err != nil {
				return fmt.Errorf("the cases ran, but the server could not finish: %w", err)
			}
			if suite.Failures > 0 {
				return exitError{1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&junit, "junit", "", "Write a JUnit XML report to this file")
	return cmd
}

func sandboxOf(res *runtime.Result) string {
	if res.Sandbox == "" {
		return "no sandbox"
	}
	return "sandbox " + res.Sandbox
}

// writeJUnit writes the report whole or not at all.
func writeJUnit(path string, suite junitSuite) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	io.WriteString(f, xml.Header)
	enc := xml.NewEncoder(f)
	enc.Indent("", "  ")
	err = errors.Join(enc.Encode(suite), f.Close())
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}
