package container

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// containerdPID finds the process of a test containerd: the one started
// as `containerd --config <its folder>/config.toml`.
func containerdPID(t *testing.T, ctrd *testenv.Containerd) int {
	t.Helper()
	config := filepath.Join(filepath.Dir(ctrd.Address), "config.toml")
	cmdlines, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range cmdlines {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(data), "\x00"), "\x00")
		if len(args) == 3 && filepath.Base(args[0]) == "containerd" && args[1] == "--config" && args[2] == config {
			if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(f))); err == nil {
				return pid
			}
		}
	}
	t.Fatalf("no containerd process with --config %s", config)
	return 0
}

// freezer stops containerd with SIGSTOP, as a stalled containerd would
// be: its socket still accepts connections, but nothing answers. thaw
// resumes it, and runs when the test ends in any case.
func freezer(t *testing.T, pid int) (freeze, thaw func()) {
	t.Helper()
	thaw = func() {
		if err := syscall.Kill(pid, syscall.SIGCONT); err != nil {
			t.Errorf("SIGCONT containerd: %v", err)
		}
	}
	t.Cleanup(thaw)
	freeze = func() {
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Errorf("SIGSTOP containerd: %v", err)
		}
		// The signal is delivered asynchronously: wait until every thread
		// is stopped.
		for deadline := time.Now().Add(5 * time.Second); !stopped(pid); time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("containerd (pid %d) did not stop within 5s of SIGSTOP", pid)
				return
			}
		}
	}
	return freeze, thaw
}

// stopped tells whether every thread of process pid is stopped.
func stopped(pid int) bool {
	stats, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	for _, f := range stats {
		data, err := os.ReadFile(f)
		if err != nil {
			return false
		}
		fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(fields) == 0 || fields[0] != "T" {
			return false
		}
	}
	return len(stats) > 0
}

// signalWriter closes started at the first byte written to it.
type signalWriter struct {
	started chan struct{}
	once    bool
}

func (w *signalWriter) Write(p []byte) (int, error) {
	if !w.once {
		w.once = true
		close(w.started)
	}
	return len(p), nil
}

// A stalled containerd fails the call with an error naming the stall, within
// the operation deadline (plus the call's own timeout when the plugin was
// running), instead of hanging it; once containerd answers again, nothing of
// the call is left and the next call works.
func TestAStalledContainerdFailsTheCallInTime(t *testing.T) {
	// Long enough that a containerd just woken, on a machine busy with
	// other tests, answers the next call within it; short enough to show
	// that a stall is caught at this deadline, not at the default one.
	const opTimeout = 5 * time.Second
	const slack = 3 * time.Second
	echo, sleeper := plugin(t, `echo never`), plugin(t, `echo started; sleep 60`)
	for _, tc := range []struct {
		name string
		// run makes a call (or a backend), freezing containerd on the way,
		// and returns how it ended and within what time it should have.
		// It runs on a goroutine of its own, so it reports with t.Error.
		run func(t *testing.T, b *Backend, freeze func()) (bound time.Duration, err error)
	}{
		{"at start-up", func(t *testing.T, b *Backend, freeze func()) (time.Duration, error) {
			freeze()
			cfg := b.cfg
			cfg.Sweep = false
			other, err := New(context.Background(), cfg)
			if err == nil {
				other.Close()
			}
			return opTimeout, err
		}},
		{"before the call", func(t *testing.T, b *Backend, freeze func()) (time.Duration, error) {
			freeze()
			_, err := b.Run(context.Background(), sandbox.Spec{ID: "test", Plugin: echo})
			return opTimeout, err
		}},
		{"while the plugin runs", func(t *testing.T, b *Backend, freeze func()) (time.Duration, error) {
			const callTimeout = 3 * time.Second
			ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
			defer cancel()
			out := &signalWriter{started: make(chan struct{})}
			done := make(chan error, 1)
			go func() {
				_, err := b.Run(ctx, sandbox.Spec{ID: "test", Plugin: sleeper, Stdout: out})
				done <- err
			}()
			select {
			case <-out.started:
			case err := <-done:
				t.Errorf("the plugin did not start: %v", err)
				return 0, err
			}
			// Start has answered by now: the plugin's first output comes
			// within microseconds of it.
			time.Sleep(500 * time.Millisecond)
			freeze()
			// Its exit cannot be reported: the call's timeout ends it, and
			// then its kill stalls.
			return callTimeout + opTimeout, <-done
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctrd := testenv.NewContainerd(t)
			cfg := testConfig(t, ctrd)
			cfg.OperationTimeout = opTimeout
			b := newBackendFrom(t, cfg)
			freeze, thaw := freezer(t, containerdPID(t, ctrd))

			type outcome struct {
				err   error
				bound time.Duration
			}
			start := time.Now()
			returned := make(chan outcome, 1)
			go func() {
				bound, err := tc.run(t, b, freeze)
				returned <- outcome{err, bound}
			}()
			var o outcome
			select {
			case o = <-returned:
			case <-time.After(time.Minute):
				t.Fatal("no return within a minute of containerd stalling")
			}
			took := time.Since(start)
			t.Logf("returned after %s: %v", took.Round(time.Millisecond), o.err)
			if o.err == nil || !strings.Contains(o.err.Error(), fmt.Sprintf("did not answer within %s", opTimeout)) {
				t.Errorf("error %v does not name the stall", o.err)
			}
			if took > o.bound+slack {
				t.Errorf("returned after %s, more than %s", took, o.bound+slack)
			}

			thaw()
			// The removals the stall prevented are retried: nothing is left.
			assertNothingLeft(t, b)
			if r := runPlugin(t, b, context.Background(), sandbox.Spec{Plugin: plugin(t, `echo back`)}); r.err != nil || r.stdout != "back\n" {
				t.Errorf("the next call: %v %+v %q", r.err, r.res, r.stdout)
			}
			assertNothingLeft(t, b)
		})
	}
}
