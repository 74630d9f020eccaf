package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// Containerd is a real containerd with runc, on a private socket, root and
// state folder, so tests never touch a containerd of the machine's.
type Containerd struct {
	// Address is the containerd socket.
	Address string
	Root    string
	State   string
	// Namespace is the containerd namespace tests should use.
	Namespace string

	config, log string
	proc        *Process
}

var (
	containerdOnce sync.Once
	containerd     *Containerd
	containerdErr  error
)

// TestContainerd returns the shared containerd, starting it on first use.
// Without it the test fails: it never skips.
func TestContainerd(t testing.TB) *Containerd {
	t.Helper()
	containerdOnce.Do(func() { containerd, containerdErr = startContainerd() })
	if containerdErr != nil {
		t.Fatalf("test containerd: %v", containerdErr)
	}
	return containerd
}

// NewContainerd starts a containerd of the test's own, which it may stop
// and restart; it is stopped when the test ends.
func NewContainerd(t testing.TB) *Containerd {
	t.Helper()
	c, err := startContainerd()
	if err != nil {
		t.Fatalf("containerd: %v", err)
	}
	t.Cleanup(c.Stop)
	return c
}

func startContainerd() (*Containerd, error) {
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("containerd needs root; these tests run as uid %d", os.Geteuid())
	}
	if _, err := exec.LookPath("runc"); err != nil {
		return nil, fmt.Errorf("runc: %w (run `make test-deps`, which installs it)", err)
	}
	// The socket path must stay short (108 bytes), so keep the folder near /.
	dir, err := os.MkdirTemp("", "kmcp-ctrd-")
	if err != nil {
		return nil, err
	}
	atExit(func() { os.RemoveAll(dir) })
	c := &Containerd{
		Address:   filepath.Join(dir, "containerd.sock"),
		Root:      filepath.Join(dir, "root"),
		State:     filepath.Join(dir, "state"),
		Namespace: "kmcp-test",
	}
	config := fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]

[grpc]
  address = %q

[plugins."io.containerd.internal.v1.opt"]
  path = %q
`, c.Root, c.State, c.Address, filepath.Join(dir, "opt"))
	configFile := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		return nil, err
	}
	c.config, c.log = configFile, filepath.Join(dir, "containerd.log")
	atExit(c.Stop)
	if err := c.Start(); err != nil {
		return nil, err
	}
	return c, nil
}

// Start starts containerd (again) and waits until it answers.
func (c *Containerd) Start() error {
	var err error
	c.proc, err = start("containerd", c.log, "containerd", "--config", c.config)
	if err != nil {
		return err
	}
	return waitFor(c.proc, 30*time.Second, func() error {
		out, err := exec.Command("ctr", "--address", c.Address, "version").CombinedOutput()
		if err != nil {
			return fmt.Errorf("ctr version: %v: %s", err, out)
		}
		return nil
	})
}

// Runsc returns the path of gVisor's runsc, for the gvisor isolation tier
// on the shared containerd. Without it the test fails: it never skips.
func Runsc(t testing.TB) string {
	t.Helper()
	path, err := exec.LookPath("runsc")
	if err != nil {
		t.Fatalf("runsc: %v (run `make test-deps` or `make test`, which install Debian's runsc)", err)
	}
	return path
}

// Kill ends containerd alone, as a crash would: its shims and their
// containers go on.
func (c *Containerd) Kill() {
	if c.proc != nil {
		c.proc.cmd.Process.Kill()
		<-c.proc.done
	}
}

// Stop ends containerd and every shim it started.
func (c *Containerd) Stop() {
	if c.proc != nil {
		c.proc.Stop(5 * time.Second)
	}
	// Shims outlive containerd by design; end ours by their socket path.
	exec.Command("pkill", "-KILL", "-f", "containerd-shim.*"+c.Address).Run()
}
