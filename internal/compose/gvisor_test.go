package compose

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/config"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

func loadTOML(t *testing.T, text string) (*config.Config, error) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return config.Load(config.Options{File: file, LookupEnv: func(string) (string, bool) { return "", false }})
}

// The [sandbox] table tests get for "gvisor" builds the container backend
// of the gVisor tier, which runs plugins under gVisor's kernel and says so
// in its name; a gVisor tier that cannot start fails the start-up.
func TestGVisorTierFromConfig(t *testing.T) {
	cfg, err := loadTOML(t, testenv.SandboxTOML(t, "gvisor", "kmcp-compose-gvisor"))
	if err != nil {
		t.Fatal(err)
	}
	parts, err := Build(context.Background(), cfg, Env{PathEnv: os.Getenv("PATH"), Server: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer parts.Backends.Close()
	if name := parts.Backends.Native.Name(); name != "container/gvisor" {
		t.Fatalf("native backend %q, want container/gvisor", name)
	}
	plugin := filepath.Join(t.TempDir(), "kubectl-uname")
	if err := os.WriteFile(plugin, []byte("#!/bin/bash\nuname -r\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := parts.Backends.Native.Run(context.Background(), sandbox.Spec{ID: "compose", Plugin: plugin, Stdout: &out})
	if err != nil || res.ExitCode != 0 || out.String() != "4.4.0\n" {
		t.Errorf("call: %v %+v %q, want gVisor's kernel release 4.4.0", err, res, out.String())
	}

	for _, tc := range []struct{ name, extra, want string }{
		{"runsc missing", "runsc_binary = \"/nonexistent/runsc\"\n", "needs gVisor's runsc"},
		{"runtime_binary too", "runtime_binary = \"/usr/sbin/runc\"\n", "cannot be used with it"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := testenv.SandboxTOML(t, "gvisor", "kmcp-compose-gvisor")
			table = strings.Replace(table, "runsc_binary", "# runsc_binary", 1) + tc.extra
			cfg, err := loadTOML(t, table)
			if err != nil {
				t.Fatal(err)
			}
			parts, err := Build(context.Background(), cfg, Env{PathEnv: os.Getenv("PATH")}, nil)
			if err == nil {
				parts.Backends.Close()
				t.Fatal("Build succeeded")
			}
			if !strings.Contains(err.Error(), "sandbox backend container: ") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want it to say %q", err, tc.want)
			}
		})
	}
	if _, err := loadTOML(t, "[sandbox]\nisolation = \"kata\"\n"); err == nil || !strings.Contains(err.Error(), "sandbox.isolation") {
		t.Errorf("isolation kata: %v", err)
	}
}
