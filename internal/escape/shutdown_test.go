package escape

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/containerd/containerd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// A shutdown with calls in flight, on every tier, as SIGTERM starts it
// (cmd's TestE2EShutdown sends the signal itself): a call that ends within
// the grace period ends ok, one that never ends is cancelled, both say the
// server is shutting down, a new call is refused, every call has its audit
// record, and nothing of the calls is left.
func TestShutdownWithCallsInFlightOnEveryTier(t *testing.T) {
	tg := hostTargets(t)
	ctrd, err := containerd.New(testenv.TestContainerd(t).Address)
	if err != nil {
		t.Fatal(err)
	}
	defer ctrd.Close()
	for _, tr := range tiers {
		t.Run(tr.name, func(t *testing.T) {
			h := newHarness(t, tr, tg, "")
			before := h.state(t, ctrd)
			type outcome struct {
				res *runtime.Result
				err error
			}
			short, endless := make(chan outcome, 1), make(chan outcome, 1)
			go func() {
				res, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: "hostile", Args: []string{"sleep", "1s"}})
				short <- outcome{res, err}
			}()
			go func() {
				res, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: "hostile", Args: []string{"spin"}})
				endless <- outcome{res, err}
			}()
			time.Sleep(300 * time.Millisecond) // both admitted: calls take their slots at once
			const grace = 6 * time.Second
			done := make(chan error, 1)
			go func() { done <- h.rt.Shutdown(context.Background(), grace) }()
			var problems []string
			ran := 2 // calls that ran: a probe may still run before the shutdown begins
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				_, err := h.rt.Execute(context.Background(), runtime.Call{Plugin: "hostile", Args: []string{"env"}})
				if errors.Is(err, runtime.ErrShuttingDown) {
					break
				}
				if err == nil {
					ran++
				}
				if time.Now().After(deadline) {
					problems = append(problems, fmt.Sprintf("a call during shutdown: %v", err))
					break
				}
			}
			if err := <-done; err != nil {
				problems = append(problems, "Shutdown: "+err.Error())
			}
			for _, c := range []struct {
				name string
				got  outcome
				want runtime.Status
			}{{"the call that ends in time", <-short, runtime.StatusOK}, {"the endless call", <-endless, runtime.StatusCancelled}} {
				switch {
				case c.got.err != nil:
					problems = append(problems, c.name+": "+c.got.err.Error())
				case c.got.res.Status != c.want || !strings.Contains(c.got.res.Message, "shutting down"):
					problems = append(problems, fmt.Sprintf("%s: %s %q, want %s saying the server is shutting down", c.name, c.got.res.Status, c.got.res.Message, c.want))
				}
			}
			if err := h.rt.Close(); err != nil {
				problems = append(problems, "Close: "+err.Error())
			}
			audit, _ := os.ReadFile(h.auditFile)
			if n := strings.Count(string(audit), `"type":"call"`); n != ran {
				problems = append(problems, fmt.Sprintf("%d call records in the audit file, want %d", n, ran))
			}
			problems = append(problems, h.state(t, ctrd).grown(before)...)
			for _, p := range problems {
				t.Error(p)
			}
			observed := "the short call ended ok, the endless one was cancelled, both saying so; a new call was refused; every call's audit record written; nothing left"
			if len(problems) > 0 {
				observed = strings.Join(problems, "; ")
			}
			record(reportRow{Category: "faults", Case: "shutdown with calls in flight", Tier: tr.name,
				Expected: "in-time calls end ok, the rest are cancelled, all say so; new calls refused; every audit record written; nothing left",
				Observed: observed, Held: len(problems) == 0})
		})
	}
}
