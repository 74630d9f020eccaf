package container

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

// A gVisor tier that cannot run fails the start-up, saying why, rather
// than every call (or a weaker tier running instead).
func TestGVisorRefusesToStartWithoutRunsc(t *testing.T) {
	ctrd := testenv.TestContainerd(t)
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"runsc missing", func(c *Config) { c.RunscBinary = filepath.Join(t.TempDir(), "runsc") }, "needs gVisor's runsc (Debian: apt-get install runsc"},
		{"runsc not on PATH", func(c *Config) { c.RunscBinary = "kmcp-no-such-runsc" }, "needs gVisor's runsc"},
		{"not runsc", func(c *Config) { c.RunscBinary = "/bin/true" }, "did not answer as runsc does"},
		{"with runtime_binary", func(c *Config) { c.RuntimeBinary = "/usr/sbin/runc" }, "runtime_binary \"/usr/sbin/runc\" cannot be used with it"},
		{"another shim", func(c *Config) { c.Runtime = "io.containerd.runsc.v1" }, "runs through containerd's runc shim"},
		{"unknown tier", func(c *Config) { c.Isolation = "kata" }, `sandbox isolation "kata": want one of [runc gvisor]`},
		// runc's profile does not hold under runsc: refused, not run weaker.
		{"runsc as runc's runtime binary", func(c *Config) { c.Isolation, c.RuntimeBinary = IsolationRunc, testenv.Runsc(t) }, `set isolation = "gvisor"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := testConfigFor(t, ctrd, IsolationGVisor)
			tc.change(&cfg)
			b, err := New(context.Background(), cfg)
			if err == nil {
				b.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("New: %v, want it to say %q", err, tc.want)
			}
		})
	}
}

// The backend's name carries the tier, so results, /health and `profile
// show` say which one ran.
func TestNameSaysTheTier(t *testing.T) {
	ctrd := testenv.TestContainerd(t)
	for tier, want := range map[Isolation]string{IsolationRunc: "container", IsolationGVisor: "container/gvisor"} {
		if got := newTierBackend(t, ctrd, tier).Name(); got != want {
			t.Errorf("%s: Name() = %q, want %q", tier, got, want)
		}
	}
}
