// Package testenv starts the real parts tests share (kube-apiservers with
// etcd, containerd with runc) once per test binary and stops them after.
package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	mu       sync.Mutex
	cleanups []func()
)

// Run runs a test binary's tests and then stops every part they started.
// Use it from TestMain: os.Exit(testenv.Run(m)).
func Run(m *testing.M) int {
	code := m.Run()
	mu.Lock()
	defer mu.Unlock()
	for i := len(cleanups) - 1; i >= 0; i-- {
		cleanups[i]()
	}
	cleanups = nil
	return code
}

// RunWithPrivateTemp is Run with TMPDIR a folder of this test binary's
// own, for binaries whose leak checks count what calls leave in the
// temporary folder: other test binaries running at the same time leave
// theirs elsewhere.
func RunWithPrivateTemp(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "kmcp-test-tmp-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "private temporary folder:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	old, had := os.LookupEnv("TMPDIR")
	os.Setenv("TMPDIR", tmp)
	defer func() {
		if had {
			os.Setenv("TMPDIR", old)
		} else {
			os.Unsetenv("TMPDIR")
		}
	}()
	return Run(m)
}

func atExit(f func()) {
	mu.Lock()
	defer mu.Unlock()
	cleanups = append(cleanups, f)
}

// Process is a program a test started, in its own process group, with its
// output in a log file. It dies with the test binary.
type Process struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// StartProcess starts cmd (its Dir and Env as the caller set them) in a
// process group of its own, its stdout and stderr in logFile.
func StartProcess(name, logFile string, cmd *exec.Cmd) (*Process, error) {
	out, err := os.Create(logFile)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		out.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Process{name: name, cmd: cmd, log: logFile, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		out.Close()
		close(p.done)
	}()
	return p, nil
}

// start starts a server of the test environment, found on PATH.
func start(name, logFile string, argv ...string) (*Process, error) {
	if _, err := exec.LookPath(argv[0]); err != nil {
		return nil, fmt.Errorf("%s: %w (run `make test-deps` or `make test`, which install it)", name, err)
	}
	return StartProcess(name, logFile, exec.Command(argv[0], argv[1:]...))
}

// Done is closed once the process has ended.
func (p *Process) Done() <-chan struct{} { return p.done }

// Exited reports whether the process has ended.
func (p *Process) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// State is how the process ended; nil while it runs.
func (p *Process) State() *os.ProcessState {
	if !p.Exited() {
		return nil
	}
	return p.cmd.ProcessState
}

// Signal sends sig to the process's whole group.
func (p *Process) Signal(sig syscall.Signal) error {
	return syscall.Kill(-p.cmd.Process.Pid, sig)
}

// Stop ends the process group: SIGTERM, then SIGKILL after grace.
func (p *Process) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		p.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// failure describes why a process did not come up, with the end of its log.
func (p *Process) failure(why string) error {
	data, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) > 25 {
		lines = lines[len(lines)-25:]
	}
	state := "still running"
	if p.Exited() {
		state = p.cmd.ProcessState.String()
	}
	return fmt.Errorf("%s %s (%s); last lines of %s:\n%s", p.name, why, state, p.log, strings.Join(lines, "\n"))
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// waitFor polls ready until it returns nil, the process exits or the time is up.
func waitFor(p *Process, timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for time.Now().Before(deadline) {
		if p.Exited() {
			return p.failure("exited before it was ready")
		}
		if last = ready(); last == nil {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return p.failure(fmt.Sprintf("was not ready after %s: %v", timeout, last))
}

// HeaderTransport sets its headers on every request, for an HTTP client
// that must send credentials (say, a bearer token) with each.
type HeaderTransport map[string]string

// RoundTrip sends r with the headers set, through http.DefaultTransport.
func (h HeaderTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h {
		r.Header.Set(k, v)
	}
	return http.DefaultTransport.RoundTrip(r)
}
