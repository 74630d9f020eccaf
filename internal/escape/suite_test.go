package escape

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// Every case on every tier it applies to, through the runtime as the
// server composes it: real policy, a real gateway to a real API server, a
// real audit file, and the tier's real sandbox.
func TestHostilePluginsAreContained(t *testing.T) {
	tg := hostTargets(t)
	// One tier at a time, a few cases at once: make test runs other
	// packages' sandboxes beside these, on two cores.
	for _, tr := range tiers {
		t.Run(tr.name, func(t *testing.T) {
			h := newHarness(t, tr, tg, "")
			// t.Run from several goroutines: the cases wait on sandboxes
			// more than they use the CPU.
			sem := make(chan struct{}, 3)
			var wg sync.WaitGroup
			for _, c := range cases {
				if !c.appliesTo(tr) {
					continue
				}
				wg.Add(1)
				sem <- struct{}{}
				go func() {
					defer func() { <-sem; wg.Done() }()
					t.Run(c.category+"/"+c.name, func(t *testing.T) { h.run(t, c) })
				}()
			}
			wg.Wait()
		})
	}
}

// run makes one call, decides whether the case held, reports why not, and
// records the outcome for the report.
func (h *harness) run(t *testing.T, c escapeCase) {
	res, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: "hostile", Args: append([]string{c.action}, c.args(h)...), Stdin: c.stdin})
	var problems []string
	observed := ""
	if err != nil {
		problems = append(problems, "the call failed: "+err.Error())
		res = &runtime.Result{}
	} else {
		problems, observed = h.judge(c, res)
	}
	observed = h.named(observed)
	held := len(problems) == 0
	if !held {
		t.Errorf("%s on %s did not hold: %s\nexpected: %s\nstatus %s %s\noutput:\n%s\nerror:\n%s", c.name, h.tier.name,
			strings.Join(problems, "; "), c.expect, res.Status, res.Message, clip(res.Output, 4000), clip(res.Error, 2000))
		observed = strings.Join(problems, "; ")
	}
	record(reportRow{Category: c.category, Case: c.name, Tier: h.tier.name, Expected: c.expect, Observed: observed, Held: held})
}

func (h *harness) judge(c escapeCase, res *runtime.Result) (problems []string, observed string) {
	var blocked []string
	for _, line := range strings.Split(res.Output, "\n") {
		switch {
		case strings.HasPrefix(line, "BREACH: "):
			problems = append(problems, strings.TrimPrefix(line, "BREACH: "))
		case strings.HasPrefix(line, "BLOCKED: "):
			blocked = append(blocked, strings.TrimPrefix(line, "BLOCKED: "))
		case strings.HasPrefix(line, "NOTAPPLICABLE: "):
			problems = append(problems, "the plugin cannot try "+strings.TrimPrefix(line, "NOTAPPLICABLE: ")+" here")
		}
	}
	if len(blocked) == 0 && !c.answered {
		problems = append(problems, "the plugin reported no attempt")
	}
	all := res.Output + res.Error
	for _, secret := range leaks(h) {
		if strings.Contains(all, secret) {
			problems = append(problems, "a host secret is in the output")
		}
	}
	if c.check != nil {
		problems = append(problems, c.check(h, res)...)
	}
	switch {
	case len(blocked) == 1:
		observed = blocked[0]
	case len(blocked) > 1:
		observed = fmt.Sprintf("%s (and %d more refused)", blocked[0], len(blocked)-1)
	default:
		observed = fmt.Sprintf("status %s, exit %d", res.Status, res.ExitCode)
		if s := resultValue(res, "status"); s != "" {
			observed += ", HTTP " + s
		}
		if res.Truncated {
			observed += ", output truncated"
		}
	}
	if res.Status == runtime.StatusTimeout || res.Status == runtime.StatusKilled {
		observed += fmt.Sprintf("; the call ended %s", res.Status)
	}
	return problems, observed
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}

// named puts names for the suite's host paths, which change every run.
func (h *harness) named(s string) string {
	return strings.NewReplacer(h.configFile, "<server config>", h.auditFile, "<audit file>", h.pluginFile, "<plugin file>",
		h.tg.canary, "<host canary>", h.tg.clusters.KubeconfigDir, "<kubeconfig folder>", h.dir, "<plugin folder>").Replace(s)
}
