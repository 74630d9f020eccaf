package testenv_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/testenv"
)

func TestMain(m *testing.M) { os.Exit(testenv.Run(m)) }

// The shared containerd answers on its private socket and runs nothing of
// the machine's.
func TestContainerdAnswers(t *testing.T) {
	c := testenv.TestContainerd(t)
	out, err := exec.Command("ctr", "--address", c.Address, "version").CombinedOutput()
	if err != nil {
		t.Fatalf("ctr version: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "Server:") {
		t.Fatalf("ctr version printed no server part:\n%s", out)
	}
	out, err = exec.Command("ctr", "--address", c.Address, "plugins", "ls").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "io.containerd.runtime.v2") {
		t.Fatalf("ctr plugins ls: %v\n%s", err, out)
	}
}

// runc starts a container on this machine's cgroup layout through the shared
// containerd: later sandbox tests build on exactly this.
func TestContainerdRunsAContainer(t *testing.T) {
	c := testenv.TestContainerd(t)
	busybox, err := exec.LookPath("busybox")
	if err != nil {
		t.Fatalf("busybox: %v (make test-deps installs busybox-static)", err)
	}
	rootfs := t.TempDir()
	os.Mkdir(rootfs+"/bin", 0o755)
	data, err := os.ReadFile(busybox)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(rootfs+"/bin/busybox", data, 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("ctr", "--address", c.Address, "--namespace", c.Namespace,
		"run", "--rm", "--rootfs", rootfs, "testenv-echo", "/bin/busybox", "echo", "hello from runc").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "hello from runc" {
		t.Fatalf("ctr run: %v\n%s", err, out)
	}
}
