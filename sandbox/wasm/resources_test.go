package wasm_test

import (
	"bufio"
	"context"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// rssMiB is the test process's resident set size.
func rssMiB(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc: %v", err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if rest, ok := strings.CutPrefix(s.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb >> 10
		}
	}
	t.Skip("no VmRSS in /proc/self/status")
	return 0
}

// TestMemoryLimit has a guest grow its memory without end: it must end
// with a non-zero exit having used no more than the limit, the server must
// not keep the memory, and the backend must go on serving. Not parallel:
// the RSS figures are the test's alone.
func TestMemoryLimit(t *testing.T) {
	const limit = 64
	b := newBackend(t, wasm.Config{Limits: wasm.Limits{MemoryMiB: limit}})
	plugin := hostileGuest(t)
	assertServes(t, b) // load the module before measuring
	runtime.GC()
	debug.FreeOSMemory()
	before := rssMiB(t)
	const runs = 3
	for i := range runs {
		r := runGuest(t, b, plugin, sandbox.Spec{Args: []string{"memory"}})
		if r.err != nil || r.res.Stopped || r.res.ExitCode == 0 {
			t.Fatalf("want a non-zero exit: %s", r)
		}
		last := 0
		for _, m := range regexp.MustCompile(`(?m)^(\d+) MiB$`).FindAllStringSubmatch(r.stderr, -1) {
			last, _ = strconv.Atoi(m[1])
		}
		if last > limit {
			t.Fatalf("the guest held %d MiB under a limit of %d", last, limit)
		}
		if i == 0 {
			t.Logf("exit %d after %d MiB; stderr ends %q", r.res.ExitCode, last, lastLine(r.stderr))
		}
	}
	runtime.GC()
	debug.FreeOSMemory()
	after := rssMiB(t)
	t.Logf("RSS %d MiB before %d runs, %d MiB after", before, runs, after)
	// Each run touched its whole 64 MiB: kept, that is 192 MiB.
	if after-before > limit {
		t.Errorf("RSS grew by %d MiB over %d runs of %d MiB each: guest memory is kept", after-before, runs, limit)
	}
	assertServes(t, b)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestStopped ends guests that will not end by themselves, each in its
// way; Run must return promptly once the run should end, with Stopped.
func TestStopped(t *testing.T) {
	t.Parallel()
	b := newBackend(t, wasm.Config{})
	plugin := hostileGuest(t)
	const slack = 3 * time.Second // a hang check, not a benchmark
	for _, tc := range []struct {
		name string
		args []string
		// end returns the run's ctx and spec changes, and when it should end.
		end func(spec *sandbox.Spec) (context.Context, context.CancelFunc, time.Duration)
	}{
		{"busy loop, ctx deadline", []string{"loop"}, func(*sandbox.Spec) (context.Context, context.CancelFunc, time.Duration) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			return ctx, cancel, time.Second
		}},
		{"busy loop, cancel", []string{"loop"}, cancelAfter(time.Second)},
		{"busy loop, RunTimeout", []string{"loop"}, func(spec *sandbox.Spec) (context.Context, context.CancelFunc, time.Duration) {
			spec.RunTimeout = time.Second
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, cancel, time.Second
		}},
		{"sleep, cancel", []string{"sleep"}, cancelAfter(time.Second)},
		{"sleep, ctx deadline", []string{"sleep"}, func(*sandbox.Spec) (context.Context, context.CancelFunc, time.Duration) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			return ctx, cancel, time.Second
		}},
		{"sleep, RunTimeout", []string{"sleep"}, func(spec *sandbox.Spec) (context.Context, context.CancelFunc, time.Duration) {
			spec.RunTimeout = time.Second
			ctx, cancel := context.WithCancel(context.Background())
			return ctx, cancel, time.Second
		}},
		{"flood into a LimitedBuffer whose OnFull cancels", []string{"flood"}, func(spec *sandbox.Spec) (context.Context, context.CancelFunc, time.Duration) {
			ctx, cancel := context.WithCancel(context.Background())
			out := sandbox.NewLimitedBuffer(64 << 10)
			out.OnFull = cancel
			spec.Stdout = out
			return ctx, cancel, 0
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			spec := sandbox.Spec{ID: "stop", Args: tc.args}
			ctx, cancel, after := tc.end(&spec)
			defer cancel()
			r := runCtx(t, ctx, b, plugin, spec, after+slack)
			if r.err != nil || !r.res.Stopped || r.res.ExitCode != -1 {
				t.Fatalf("want Stopped with exit code -1: %s", r)
			}
			if r.took > after+slack {
				t.Fatalf("Run returned %s after the run should have ended", r.took-after)
			}
			if out, ok := spec.Stdout.(*sandbox.LimitedBuffer); ok {
				if len(out.Bytes()) != out.Limit || out.Truncated() == 0 {
					t.Fatalf("want %d bytes kept and some dropped, got %d kept, %d dropped", out.Limit, len(out.Bytes()), out.Truncated())
				}
			}
			t.Logf("stopped after %s", r.took.Round(time.Millisecond))
		})
	}
	t.Cleanup(func() {
		if _, ok := hung.Load(b); !ok {
			assertServes(t, b)
		}
	})
}

func cancelAfter(d time.Duration) func(*sandbox.Spec) (context.Context, context.CancelFunc, time.Duration) {
	return func(*sandbox.Spec) (context.Context, context.CancelFunc, time.Duration) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(d, cancel)
		return ctx, cancel, d
	}
}

// openFDs counts the test process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

// TestOpenFilesLimit has a guest open files until refused: each is a file
// descriptor of the server's, so the guest must stop at its limit, may
// open again once it closed some, and leaves the server none of them.
func TestOpenFilesLimit(t *testing.T) {
	const limit = 100
	b := newBackend(t, wasm.Config{Limits: wasm.Limits{OpenFiles: limit}})
	plugin := hostileGuest(t)
	assertServes(t, b)
	before := openFDs(t)
	r := runGuest(t, b, plugin, sandbox.Spec{Args: []string{"openmany"}})
	if r.err != nil || r.res.ExitCode != 0 {
		t.Fatalf("openmany: %s", r)
	}
	m := regexp.MustCompile(`opened (\d+): `).FindStringSubmatch(r.stdout)
	if m == nil {
		t.Fatalf("the guest was never refused:\n%s", r.stdout)
	}
	// The guest's stdio and its folders' own descriptors count too.
	if n, _ := strconv.Atoi(m[1]); n > limit || n < limit-10 {
		t.Errorf("the guest opened %d files under a limit of %d", n, limit)
	}
	if !strings.Contains(r.stdout, "after closing half: <nil>") {
		t.Errorf("closing files did not give their places back:\n%s", r.stdout)
	}
	if after := openFDs(t); after > before {
		t.Errorf("the server holds %d descriptors after the run, %d before", after, before)
	}
}
