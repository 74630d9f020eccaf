//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
	"sigs.k8s.io/yaml"
)

var platformActions = map[string]action{
	"connect":        connect,
	"scan-loopback":  scanLoopback,
	"dns":            dns,
	"sockets":        sockets,
	"interfaces":     interfaces,
	"syscall":        trySyscall,
	"status":         status,
	"setuid-exec":    setuidExec,
	"exec-from":      execFrom,
	"mknod":          mknod,
	"cgroup-write":   cgroupWrite,
	"signal-host":    signalHost,
	"fork-bomb":      forkBomb,
	"daemon":         daemon,
	"daemon-child":   daemonChild,
	"zombies":        zombies,
	"ignore-sigterm": ignoreSigterm,
	"processes":      processes,
	"kernel":         kernel,
}

// kernel reports the kernel that answers its system calls.
func kernel([]string) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		blocked("uname", err)
		return
	}
	release := unix.ByteSliceToString(u.Release[:])
	result("release", release)
	blocked("name the kernel", "release "+release)
}

// writeSelf writes to its own file, as it sees it and by its host path.
func writeSelf(hostPaths []string) {
	exe, err := os.Executable()
	if err != nil {
		blocked("find my own file", err)
	}
	writeFiles(append([]string{exe, "/proc/self/exe"}, hostPaths...))
}

func findTokenInProcesses(want string, length int) int {
	n := 0
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, p := range procs {
		for _, f := range []string{"environ", "cmdline"} {
			b, err := os.ReadFile(filepath.Join(p, f))
			if err == nil && hexRunHolding(b, want, length) >= 0 {
				breach("find the token", "in "+filepath.Join(p, f))
				n++
			}
		}
	}
	result("processes_searched", len(procs))
	return n
}

// kubeconfigFile is the part of the call's kubeconfig the suite needs.
type kubeconfigFile struct {
	Clusters []struct {
		Cluster struct {
			Server        string `json:"server"`
			CAData        string `json:"certificate-authority-data"`
			TLSServerName string `json:"tls-server-name"`
		} `json:"cluster"`
	} `json:"clusters"`
	Users []struct {
		User struct {
			Token string `json:"token"`
		} `json:"user"`
	} `json:"users"`
}

// gatewayConfig is what kubectl would take from the kubeconfig: where the
// gateway is, the CA and name to verify it by, and the token to send.
type gatewayConfig struct {
	host, serverName, token string
	pool                    *x509.CertPool
}

func gateway() (gatewayConfig, error) {
	var g gatewayConfig
	b, err := os.ReadFile(os.Getenv("KUBECONFIG"))
	if err != nil {
		return g, err
	}
	var kc kubeconfigFile
	if err := yaml.Unmarshal(b, &kc); err != nil || len(kc.Clusters) == 0 {
		return g, fmt.Errorf("no cluster in the kubeconfig: %v", err)
	}
	u, err := url.Parse(kc.Clusters[0].Cluster.Server)
	if err != nil {
		return g, err
	}
	ca, err := base64.StdEncoding.DecodeString(kc.Clusters[0].Cluster.CAData)
	if err != nil {
		return g, err
	}
	g.host, g.serverName, g.pool = u.Host, kc.Clusters[0].Cluster.TLSServerName, x509.NewCertPool()
	g.pool.AppendCertsFromPEM(ca)
	if g.serverName == "" {
		g.serverName = u.Hostname()
	}
	if len(kc.Users) > 0 {
		g.token = kc.Users[0].User.Token
	}
	return g, nil
}

func gatewayHost() string {
	g, err := gateway()
	if err != nil {
		return "no-gateway"
	}
	return g.host
}

// gatewayToken is the kubeconfig's token (a pod's call capability), or "".
func gatewayToken() string {
	g, _ := gateway()
	return g.token
}

func roundTrip(raw []byte) (*http.Response, error) {
	g, err := gateway()
	if err != nil {
		return nil, err
	}
	host := g.host
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", host, &tls.Config{RootCAs: g.pool, ServerName: g.serverName})
	if err != nil {
		return nil, err
	}
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := conn.Write(raw); err != nil {
		return nil, err
	}
	return readResponse(conn)
}

// connect dials each network address (tcp, tcp6, unix, or @name for an
// abstract unix socket).
func connect(addrs []string) {
	for _, a := range addrs {
		network, addr, _ := strings.Cut(a, "://")
		c, err := net.DialTimeout(network, addr, 3*time.Second)
		if err == nil {
			c.Close()
		}
		attempt("connect to "+a, err)
	}
}

// scanLoopback lists the listening sockets of its network namespace and
// connects to the first 1024 TCP ports of 127.0.0.1 and ::1 and to every
// listed one; only the gateway's may answer.
func scanLoopback([]string) {
	gw := gatewayHost()
	listed := map[int]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, _ := os.ReadFile(f)
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 3 && fields[3] == "0A" { // LISTEN
				_, port, _ := strings.Cut(fields[1], ":")
				if p, err := strconv.ParseInt(port, 16, 32); err == nil {
					listed[int(p)] = true
				}
			}
		}
	}
	result("listening", len(listed))
	var mu sync.Mutex
	var open []string
	for _, ip := range []string{"127.0.0.1", "::1"} {
		ports := make(chan int)
		var wg sync.WaitGroup
		for w := 0; w < 128; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for p := range ports {
					addr := net.JoinHostPort(ip, strconv.Itoa(p))
					if c, err := net.DialTimeout("tcp", addr, 300*time.Millisecond); err == nil {
						c.Close()
						mu.Lock()
						open = append(open, addr)
						mu.Unlock()
					}
				}
			}()
		}
		for p := 1; p <= 1024; p++ {
			ports <- p
		}
		for p := range listed {
			if p > 1024 {
				ports <- p
			}
		}
		close(ports)
		wg.Wait()
	}
	others := 0
	for _, a := range open {
		if a != gw {
			breach("a loopback port besides the gateway", a)
			others++
		}
	}
	if others == 0 {
		blocked("a loopback port besides the gateway", fmt.Sprintf("%d sockets listen; of them and ports 1-1024 only %v answered", len(listed), open))
	}
}

func dns(names []string) {
	for _, n := range names {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		addrs, err := net.DefaultResolver.LookupHost(ctx, n)
		cancel()
		if err == nil {
			breach("resolve "+n, addrs)
		} else {
			blocked("resolve "+n, err)
		}
	}
}

func sockets([]string) {
	for _, s := range []struct {
		what               string
		domain, typ, proto int
	}{
		{"a raw IPv4 socket", unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP},
		{"a raw IPv6 socket", unix.AF_INET6, unix.SOCK_RAW, unix.IPPROTO_ICMPV6},
		{"a packet socket", unix.AF_PACKET, unix.SOCK_RAW, 0x0300}, // ETH_P_ALL, big-endian
	} {
		fd, err := unix.Socket(s.domain, s.typ, s.proto)
		if err == nil {
			unix.Close(fd)
		}
		attempt("open "+s.what, err)
	}
}

func interfaces([]string) {
	ifs, err := net.Interfaces()
	if err != nil {
		blocked("list interfaces", err)
		return
	}
	var names []string
	for _, i := range ifs {
		names = append(names, i.Name)
	}
	if len(names) == 1 && names[0] == "lo" {
		blocked("an interface besides loopback", "only lo")
	} else {
		breach("an interface besides loopback", names)
	}
}

// trySyscall makes one privileged system call, named, in a harmless form:
// if the sandbox let it through it would do nothing lasting.
func trySyscall(args []string) {
	runtime.LockOSThread()
	for _, name := range args {
		err := syscallByName(name)
		if errors.Is(err, errNotTried) {
			fmt.Printf("NOTAPPLICABLE: %s\n", name)
			continue
		}
		attempt(name, err)
	}
}

var errNotTried = errors.New("not tried")

func syscallByName(name string) error {
	switch name {
	case "ptrace-traceme-parent":
		// Attach to the parent (the runtime's side of the sandbox, or pid 0).
		return unix.PtraceAttach(os.Getppid())
	case "mount-tmpfs":
		os.MkdirAll("/tmp/m", 0o755)
		return unix.Mount("tmpfs", "/tmp/m", "tmpfs", 0, "size=1m")
	case "remount-root-rw":
		return unix.Mount("", "/", "", unix.MS_REMOUNT|unix.MS_BIND, "")
	case "unshare-user":
		return unix.Unshare(unix.CLONE_NEWUSER)
	case "unshare-mount":
		return unix.Unshare(unix.CLONE_NEWNS)
	case "unshare-net":
		return unix.Unshare(unix.CLONE_NEWNET)
	case "unshare-user-then-mount":
		if err := unix.Unshare(unix.CLONE_NEWUSER | unix.CLONE_NEWNS); err != nil {
			return err
		}
		return unix.Mount("tmpfs", "/etc", "tmpfs", 0, "size=1m")
	case "setns-net":
		fd, err := unix.Open("/proc/self/ns/net", unix.O_RDONLY, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		return unix.Setns(fd, unix.CLONE_NEWNET)
	case "keyctl":
		_, err := unix.KeyctlJoinSessionKeyring("escape")
		return err
	case "add_key":
		_, err := unix.AddKey("user", "escape", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
		return err
	case "bpf":
		// BPF_MAP_CREATE of a one-entry array.
		attr := [5]uint32{2 /* BPF_MAP_TYPE_ARRAY */, 4, 4, 1, 0}
		_, _, e := unix.Syscall(unix.SYS_BPF, 0, uintptr(unsafe.Pointer(&attr)), unsafe.Sizeof(attr))
		return errnoOrNil(e)
	case "perf_event_open":
		attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
		attr.Size = uint32(unsafe.Sizeof(attr))
		fd, err := unix.PerfEventOpen(&attr, -1, 0, -1, 0) // every process on CPU 0
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "io_uring_setup":
		params := make([]byte, 120)
		fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoOrNil(e)
	case "reboot":
		return unix.Reboot(unix.LINUX_REBOOT_CMD_CAD_OFF) // disables ctrl-alt-del: nothing reboots
	case "init_module":
		_, _, e := unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, 0)
		return errnoOrNil(e)
	case "delete_module":
		return unix.DeleteModule("kmcp_no_such_module", 0)
	case "kexec_load":
		_, _, e := unix.Syscall6(unix.SYS_KEXEC_LOAD, 0, 0, 0, 0, 0, 0)
		return errnoOrNil(e)
	case "clock_settime":
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_REALTIME, &ts)
		return unix.ClockSettime(unix.CLOCK_REALTIME, &ts) // the time it already is
	case "settimeofday":
		var tv unix.Timeval
		unix.Gettimeofday(&tv)
		return unix.Settimeofday(&tv)
	case "sethostname":
		return unix.Sethostname([]byte("escaped"))
	case "chroot":
		return unix.Chroot("/tmp")
	case "setuid-0":
		return unix.Setuid(0)
	case "setgid-0":
		return unix.Setgid(0)
	case "open_by_handle_at":
		// The "shocker" escape: open a host file by handle.
		handle := unix.NewFileHandle(1, []byte{2, 0, 0, 0, 0, 0, 0, 0})
		fd, err := unix.OpenByHandleAt(unix.AT_FDCWD, handle, unix.O_RDONLY)
		if err == nil {
			unix.Close(fd)
		}
		return err
	case "userfaultfd":
		fd, _, e := unix.Syscall(unix.SYS_USERFAULTFD, 0, 0, 0)
		if e == 0 {
			unix.Close(int(fd))
		}
		return errnoOrNil(e)
	case "swapon":
		p, _ := unix.BytePtrFromString("/tmp/none")
		_, _, e := unix.Syscall(unix.SYS_SWAPON, uintptr(unsafe.Pointer(p)), 0, 0)
		return errnoOrNil(e)
	case "acct":
		return unix.Acct("/tmp/acct")
	case "iopl":
		_, _, e := unix.Syscall(unix.SYS_IOPL, 3, 0, 0)
		return errnoOrNil(e)
	case "chown-root":
		os.WriteFile("/tmp/own", nil, 0o644)
		return unix.Chown("/tmp/own", 0, 0)
	}
	return errNotTried
}

func errnoOrNil(e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

// status reports the process's privileges as /proc/self/status has them.
func status([]string) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		blocked("read my status", err)
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch k {
		case "Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "Seccomp":
			result(k, strings.Join(strings.Fields(v), ","))
		}
	}
	// gVisor's /proc/self/status has no NoNewPrivs line: ask the kernel.
	nnp, err := unix.PrctlRetInt(unix.PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0)
	if err != nil {
		result("NoNewPrivs", err)
	} else {
		result("NoNewPrivs", nnp)
	}
	blocked("privileges", "reported")
}

// setuidExec starts each setuid-root program it finds and reads the
// effective uid it got.
func setuidExec([]string) {
	var found []string
	for _, dir := range []string{"/bin", "/sbin", "/usr/bin", "/usr/sbin", "/usr/lib"} {
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return nil
			}
			if fi, err := d.Info(); err == nil && fi.Mode()&os.ModeSetuid != 0 {
				found = append(found, p)
			}
			return nil
		})
	}
	if len(found) == 0 {
		blocked("run a setuid program", "the image has none")
		return
	}
	for _, p := range found {
		cmd := exec.Command(p)
		stdin, _ := cmd.StdinPipe() // su and passwd wait here
		if err := cmd.Start(); err != nil {
			blocked("start setuid "+p, err)
			continue
		}
		time.Sleep(150 * time.Millisecond)
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", cmd.Process.Pid))
		cmd.Process.Kill()
		stdin.Close()
		cmd.Wait()
		euid := ""
		for _, line := range strings.Split(string(b), "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == "Uid:" {
				euid = f[2]
			}
		}
		switch {
		case err != nil:
			blocked("setuid "+p, "it ended before its uid could be read")
		case euid == "0":
			breach("setuid "+p, "ran with effective uid 0")
		default:
			blocked("setuid "+p, "effective uid "+euid)
		}
	}
}

// execFrom copies this program into dir and tries to run it.
func execFrom(args []string) {
	exe, _ := os.Executable()
	b, err := os.ReadFile(exe)
	if err != nil {
		blocked("read myself", err)
		return
	}
	p := filepath.Join(args[0], "copy")
	if err := os.WriteFile(p, b, 0o755); err != nil {
		blocked("write a program to "+args[0], err)
		return
	}
	attempt("run a program from "+args[0], exec.Command(p, "--help").Run())
}

// mknod makes device nodes of the host's memory and disk and opens them,
// and opens the host's devices by name. A node that can be made but opens
// nothing (gVisor's kernel has no such device) is not a way out.
func mknod([]string) {
	for _, n := range []struct {
		path, what string
		mode       uint32
		dev        uint64
	}{
		{"/tmp/mem", "char 1,1: memory", unix.S_IFCHR, unix.Mkdev(1, 1)},
		{"/tmp/sda", "block 8,0: a disk", unix.S_IFBLK, unix.Mkdev(8, 0)},
	} {
		if err := unix.Mknod(n.path, n.mode|0o600, int(n.dev)); err != nil {
			blocked("mknod "+n.path+" ("+n.what+")", err)
			continue
		}
		f, err := os.Open(n.path)
		if err != nil {
			blocked("open a device node made in the sandbox ("+n.what+")", err)
			continue
		}
		buf := make([]byte, 16)
		_, err = f.Read(buf)
		f.Close()
		attempt("read a device node made in the sandbox ("+n.what+")", err)
	}
	for _, dev := range []string{"/dev/mem", "/dev/kmem", "/dev/port", "/dev/kmsg", "/dev/sda", "/dev/vda", "/dev/nvme0n1", "/dev/loop0", "/dev/fuse"} {
		f, err := os.OpenFile(dev, os.O_RDWR, 0)
		if err != nil {
			blocked("open "+dev, err)
			continue
		}
		if dev == "/dev/fuse" {
			// gVisor's kernel has a FUSE device of its own; what matters is
			// that no FUSE filesystem can be mounted with it.
			os.MkdirAll("/tmp/fuse", 0o755)
			opts := fmt.Sprintf("fd=%d,rootmode=40000,user_id=65534,group_id=65534", f.Fd())
			attempt("mount a FUSE filesystem", unix.Mount("fuse", "/tmp/fuse", "fuse", 0, opts))
		} else {
			breach("open "+dev, "opened")
		}
		f.Close()
	}
}

// cgroupWrite tries to raise its own limits and move itself elsewhere.
func cgroupWrite([]string) {
	b, _ := os.ReadFile("/proc/self/cgroup")
	var targets []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, ctrl := range strings.Split(parts[1], ",") {
			base := "/sys/fs/cgroup"
			if ctrl == "" {
				base = "/sys/fs/cgroup/unified"
			} else if strings.HasPrefix(ctrl, "name=") {
				base = "/sys/fs/cgroup/" + strings.TrimPrefix(ctrl, "name=")
			} else {
				base = "/sys/fs/cgroup/" + ctrl
			}
			for _, f := range []string{"cgroup.procs", "memory.limit_in_bytes", "pids.max", "memory.max", "release_agent", "notify_on_release"} {
				targets = append(targets, filepath.Join(base, parts[2], f), filepath.Join(base, f))
			}
		}
	}
	targets = append(targets, "/sys/fs/cgroup/cgroup.procs", "/sys/fs/cgroup/memory/release_agent")
	for _, t := range targets {
		if _, err := os.Stat(t); err != nil {
			continue
		}
		writeFiles([]string{t})
	}
	blocked("cgroup files", fmt.Sprintf("tried %d", len(targets)))
}

// signalHost signals a host process the suite started, by its host pid.
func signalHost(args []string) {
	pid, _ := strconv.Atoi(args[0])
	attempt(fmt.Sprintf("signal host pid %d", pid), unix.Kill(pid, unix.SIGKILL))
	attempt(fmt.Sprintf("ptrace host pid %d", pid), unix.PtraceAttach(pid))
	_, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	attempt(fmt.Sprintf("read host pid %d's environment", pid), err)
}

// forkBomb starts children that start children, then reports how many ran.
func forkBomb(args []string) {
	exe, _ := os.Executable()
	var cmds []*exec.Cmd
	var err error
	for len(cmds) < 100_000 {
		cmd := exec.Command(exe, "daemon-child", args[0], "60")
		if err = cmd.Start(); err != nil {
			break
		}
		cmds = append(cmds, cmd)
	}
	if err != nil {
		blocked("fork without end", fmt.Sprintf("stopped after %d processes: %v", len(cmds), err))
	} else {
		breach("fork without end", "started 100,000 processes")
	}
	result("processes", len(cmds))
	os.Exit(0) // leave them behind: the sandbox must not
}

// daemon leaves a double-forked, session-leading child behind that ignores
// every signal it can, and exits.
func daemon(args []string) {
	exe, _ := os.Executable()
	cmd := exec.Command(exe, "daemon-child", args[0], "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	attempt("leave a daemon behind (it must not outlive the call)", errors.Join(cmd.Start(), errors.New("the suite checks the host after the call")))
	time.Sleep(200 * time.Millisecond)
}

// daemonChild (marker, seconds) forks once more and sleeps with signals
// ignored; its argv carries the marker the suite looks for on the host.
func daemonChild(args []string) {
	signal.Ignore(syscall.SIGTERM, syscall.SIGHUP, syscall.SIGINT)
	secs, _ := strconv.Atoi(args[1])
	if os.Getenv("KMCP_GRANDCHILD") == "" {
		exe, _ := os.Executable()
		cmd := exec.Command(exe, "daemon-child", args[0], args[1])
		cmd.Env = append(os.Environ(), "KMCP_GRANDCHILD=1")
		cmd.Start()
	}
	time.Sleep(time.Duration(secs) * time.Second)
}

// zombies leaves children that exit unreaped, then exits itself.
func zombies(args []string) {
	for i := 0; i < 20; i++ {
		pid, _, e := unix.RawSyscall(unix.SYS_FORK, 0, 0, 0)
		if e != 0 {
			blocked("fork", e)
			return
		}
		if pid == 0 {
			unix.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
		}
	}
	exe, _ := os.Executable()
	exec.Command(exe, "daemon-child", args[0], "300").Start()
	time.Sleep(300 * time.Millisecond)
	attempt("leave zombies and a sleeper behind (they must not outlive the call)", errors.New("the suite checks the host after the call"))
}

func ignoreSigterm([]string) {
	signal.Ignore(syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	blocked("ignore SIGTERM", "ignoring; the call's timeout must end it")
	for {
		time.Sleep(time.Second)
	}
}

// processes lists the processes it can see.
func processes([]string) {
	procs, _ := filepath.Glob("/proc/[0-9]*")
	var cmdlines []string
	for _, p := range procs {
		b, _ := os.ReadFile(filepath.Join(p, "cmdline"))
		cmdlines = append(cmdlines, filepath.Base(p)+":"+string(bytes.ReplaceAll(b, []byte{0}, []byte{' '})))
	}
	result("visible_processes", len(procs))
	fmt.Printf("PROCESSES: %q\n", cmdlines)
	blocked("see other processes", fmt.Sprintf("%d visible", len(procs)))
}
