package netns

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as the program run inside a namespace (through
// nsenter): NETNS_HELPER names what it does there.
func TestMain(m *testing.M) {
	if mode := os.Getenv("NETNS_HELPER"); mode != "" {
		os.Exit(helper(mode, strings.Fields(os.Getenv("NETNS_HELPER_ARGS"))))
	}
	os.Exit(m.Run())
}

func helper(mode string, args []string) int {
	switch mode {
	case "roundtrip": // ADDR N: send N bytes, half-close, print what came back
		n, _ := strconv.Atoi(args[1])
		c, err := net.DialTimeout("tcp", args[0], 5*time.Second)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		go func() {
			c.Write(pattern(n))
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		sum := sha256.Sum256(got)
		fmt.Printf("len=%d sha256=%s\n", len(got), hex.EncodeToString(sum[:]))
	case "dial": // ADDR: try to connect, print how it went
		c, err := net.DialTimeout("tcp", args[0], 3*time.Second)
		switch {
		case err == nil:
			c.Close()
			fmt.Println("connected")
		case errors.Is(err, syscall.ECONNREFUSED):
			fmt.Println("refused")
		case errors.Is(err, syscall.ENETUNREACH), errors.Is(err, syscall.EHOSTUNREACH):
			fmt.Println("unreachable")
		default:
			fmt.Println("error:", err)
		}
	case "links": // print own netns and interfaces
		ns, err := os.Readlink("/proc/self/ns/net")
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		fmt.Println("netns", ns)
		ifs, err := net.Interfaces()
		if err != nil {
			fmt.Println("error:", err)
			return 1
		}
		for _, i := range ifs {
			fmt.Println("link", i.Name, i.Flags)
		}
	default:
		fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
		return 2
	}
	return 0
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	return b
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("network namespaces need root (CAP_SYS_ADMIN): run these tests as root")
	}
}

func newNS(tb testing.TB, dir, id string) *Namespace {
	tb.Helper()
	ns, err := New(dir, id)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := ns.Close(); err != nil {
			tb.Error(err)
		}
	})
	return ns
}

// inNS runs the helper in mode inside ns, as a separate process that nsenter
// moved into the namespace, and returns its output lines.
func inNS(t *testing.T, ns *Namespace, mode string, args ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return runInNS(t, ns, []string{exe},
		"NETNS_HELPER="+mode, "NETNS_HELPER_ARGS="+strings.Join(args, " "),
		// A -race binary otherwise waits a second before it exits.
		"GORACE="+strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
}

func runInNS(t *testing.T, ns *Namespace, argv []string, env ...string) []string {
	t.Helper()
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		t.Fatalf("these tests run programs in the namespace with nsenter (util-linux), which is missing: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, nsenter, append([]string{"--net=" + ns.Path, "--"}, argv...)...)
	cmd.Env = append(os.Environ(), env...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%v in namespace: %v\nstdout: %s\nstderr: %s", argv, err, out, stderr.String())
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// listenCounting listens on addr in the host namespace and counts the
// connections it accepts.
func listenCounting(t *testing.T, addr string) (net.Listener, *atomic.Int32) {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int32
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			n.Add(1)
			c.Close()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l, &n
}

// echoServer listens on the host's 127.0.0.1 and echoes, passing EOF on.
func echoServer(t testing.TB) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
				c.(*net.TCPConn).CloseWrite()
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l
}

func port(a net.Addr) int { return a.(*net.TCPAddr).Port }

func TestContainment(t *testing.T) {
	requireRoot(t)
	target := echoServer(t)
	decoy, decoyAccepts := listenCounting(t, "127.0.0.1:0")

	ns := newNS(t, t.TempDir(), "call-1")
	var l net.Listener
	for {
		var err error
		if l, err = ns.Listen("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		// The namespace has ports of its own: make sure ours does not
		// happen to share a number with the host listeners we probe.
		if p := port(l.Addr()); p != port(target.Addr()) && p != port(decoy.Addr()) {
			break
		}
		l.Close()
	}

	ctx, cancel := context.WithCancel(context.Background())
	forwarded := make(chan struct{})
	go func() {
		defer close(forwarded)
		relay(ctx, l, target.Addr().String())
	}()
	defer func() { cancel(); <-forwarded }()

	t.Run("in namespace", func(t *testing.T) {
		out := inNS(t, ns, "links")
		fi, err := os.Stat(ns.Path)
		if err != nil {
			t.Fatal(err)
		}
		want := fmt.Sprintf("netns net:[%d]", fi.Sys().(*syscall.Stat_t).Ino)
		if out[0] != want {
			t.Fatalf("helper reports %q, want %q", out[0], want)
		}
		host, _ := os.Readlink("/proc/self/ns/net")
		if "netns "+host == want {
			t.Fatalf("namespace is the host's own %s", host)
		}
	})

	t.Run("only lo, up", func(t *testing.T) {
		out := inNS(t, ns, "links")[1:]
		if len(out) != 1 || !strings.HasPrefix(out[0], "link lo ") || !strings.Contains(out[0], "up") || !strings.Contains(out[0], "loopback") {
			t.Fatalf("interfaces in namespace: %q, want only lo, up", out)
		}
		// /proc/net/dev follows the reader's network namespace.
		var devs []string
		for _, line := range inNS2(t, ns, "cat", "/proc/net/dev") {
			if name, _, ok := strings.Cut(line, ":"); ok {
				devs = append(devs, strings.TrimSpace(name))
			}
		}
		if len(devs) != 1 || devs[0] != "lo" {
			t.Fatalf("/proc/net/dev in namespace lists %q, want only lo", devs)
		}
		if _, err := exec.LookPath("ip"); err == nil {
			links := inNS2(t, ns, "ip", "-o", "link")
			if len(links) != 1 || !strings.Contains(links[0], " lo: <LOOPBACK,UP,LOWER_UP>") {
				t.Fatalf("ip -o link in namespace: %q", links)
			}
		}
	})

	t.Run("forwarded round trip", func(t *testing.T) {
		const n = 1 << 20
		sum := sha256.Sum256(pattern(n))
		want := fmt.Sprintf("len=%d sha256=%s", n, hex.EncodeToString(sum[:]))
		out := inNS(t, ns, "roundtrip", l.Addr().String(), strconv.Itoa(n))
		if out[0] != want {
			t.Fatalf("round trip through Forward: %q, want %q", out[0], want)
		}
	})

	t.Run("host loopback unreachable", func(t *testing.T) {
		for _, a := range []net.Addr{decoy.Addr(), target.Addr()} {
			if out := inNS(t, ns, "dial", a.String()); out[0] != "refused" {
				t.Errorf("dial host %s from namespace: %q, want refused", a, out[0])
			}
		}
	})

	t.Run("host interfaces unreachable", func(t *testing.T) {
		addrs := hostAddrs(t)
		if len(addrs) == 0 {
			t.Skip("host has no non-loopback address to probe")
		}
		for _, ip := range addrs {
			hl, accepts := listenCounting(t, net.JoinHostPort(ip.String(), "0"))
			out := inNS(t, ns, "dial", hl.Addr().String())
			if out[0] != "unreachable" && out[0] != "refused" {
				t.Errorf("dial host %s from namespace: %q, want unreachable", hl.Addr(), out[0])
			}
			t.Logf("dial host %s from namespace: %s", hl.Addr(), out[0])
			hl.Close()
			if n := accepts.Load(); n != 0 {
				t.Errorf("host listener on %s accepted %d connections from the namespace", hl.Addr(), n)
			}
		}
	})

	time.Sleep(20 * time.Millisecond) // an accept that got through would be in by now
	if n := decoyAccepts.Load(); n != 0 {
		t.Errorf("host loopback listener accepted %d connections from the namespace", n)
	}
}

func inNS2(t *testing.T, ns *Namespace, argv ...string) []string {
	t.Helper()
	return runInNS(t, ns, argv)
}

// hostAddrs lists the host's addresses on interfaces that are up and not
// loopback, leaving out link-local ones (they need a zone to be dialled).
func hostAddrs(t *testing.T) []net.IP {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	var ips []net.IP
	for _, i := range ifs {
		if i.Flags&net.FlagUp == 0 || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		as, err := i.Addrs()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range as {
			if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() && !n.IP.IsLoopback() {
				ips = append(ips, n.IP)
			}
		}
	}
	return ips
}

// ourMounts lists the mount points under dir in /proc/self/mountinfo.
func ourMounts(t testing.TB, dir string) []string {
	t.Helper()
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var ms []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp == dir || strings.HasPrefix(mp, dir+"/") {
			ms = append(ms, mp)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return ms
}

func unescapeMountinfo(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func TestNewRejects(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	for _, id := range []string{"", ".", "..", "a/b", "../x"} {
		if ns, err := New(dir, id); err == nil {
			ns.Close()
			t.Errorf("New(%q) worked", id)
		}
	}
	ns := newNS(t, dir, "taken")
	if _, err := New(dir, "taken"); err == nil || !strings.Contains(err.Error(), "create network namespace taken") {
		t.Errorf("New over an existing namespace: %v", err)
	}
	// The failed attempt left the first one alone.
	if ms := ourMounts(t, dir); len(ms) != 1 || ms[0] != ns.Path {
		t.Errorf("mounts after failed New: %q", ms)
	}
}

func TestNewCreatesDir(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "run", "netns")
	ns := newNS(t, dir, "x")
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("dir mode %v, want 0700", fi.Mode().Perm())
	}
	if ns.Path != filepath.Join(dir, "x") {
		t.Errorf("Path %q", ns.Path)
	}
}

func TestClose(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	ns, err := New(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	if ms := ourMounts(t, dir); len(ms) != 1 || ms[0] != ns.Path {
		t.Fatalf("mounts after New: %q", ms)
	}
	if err := ns.Close(); err != nil {
		t.Fatal(err)
	}
	if ms := ourMounts(t, dir); len(ms) != 0 {
		t.Errorf("mounts after Close: %q", ms)
	}
	if _, err := os.Lstat(ns.Path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("file after Close: %v", err)
	}
	if err := ns.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := ns.Listen("127.0.0.1:0"); err == nil {
		t.Error("Listen after Close worked")
	}
}

func TestSweep(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	// A crashed server: namespaces never closed.
	for _, id := range []string{"a", "b"} {
		if _, err := New(dir, id); err != nil {
			t.Fatal(err)
		}
	}
	if ms := ourMounts(t, dir); len(ms) != 2 {
		t.Fatalf("mounts before Sweep: %q", ms)
	}
	n, err := Sweep(dir)
	if err != nil || n != 2 {
		t.Fatalf("Sweep = %d, %v; want 2, nil", n, err)
	}
	if ms := ourMounts(t, dir); len(ms) != 0 {
		t.Errorf("mounts after Sweep: %q", ms)
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Errorf("files after Sweep: %v", es)
	}
	if n, err := Sweep(dir); err != nil || n != 0 {
		t.Errorf("second Sweep = %d, %v", n, err)
	}
	if n, err := Sweep(filepath.Join(dir, "missing")); err != nil || n != 0 {
		t.Errorf("Sweep of a missing dir = %d, %v", n, err)
	}
	// The ids are free again.
	newNS(t, dir, "a")
}

func procStatus(t testing.TB, key string) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(v))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no %s in /proc/self/status", key)
	return 0
}

func countFDs(t testing.TB) int {
	t.Helper()
	es, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(es)
}

// threadsAtHome checks that every thread of the process is in the host
// network namespace: the Go scheduler never got a thread we moved.
func threadsAtHome(t testing.TB) {
	t.Helper()
	home, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		ns, err := os.Readlink(filepath.Join("/proc/self/task", task.Name(), "ns/net"))
		if errors.Is(err, os.ErrNotExist) {
			continue // the thread ended meanwhile
		}
		if err != nil {
			t.Fatal(err)
		}
		if ns != home {
			t.Errorf("thread %s is in %s, not the host's %s", task.Name(), ns, home)
		}
	}
}

func TestNoLeaks(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	// Warm up (thread pool, template thread), then measure.
	ns := newNS(t, dir, "warm")
	ns.Close()
	threads, fds := procStatus(t, "Threads"), countFDs(t)

	const workers, each = 4, 25
	var wg sync.WaitGroup
	errs := make(chan error, workers*each)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				ns, err := New(dir, fmt.Sprintf("leak-%d-%d", w, i))
				if err != nil {
					errs <- err
					return
				}
				l, err := ns.Listen("127.0.0.1:0")
				if err != nil {
					errs <- err
				} else {
					l.Close()
				}
				if err := ns.Close(); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if ms := ourMounts(t, dir); len(ms) != 0 {
		t.Errorf("%d mounts left: %q", len(ms), ms)
	}
	if es, _ := os.ReadDir(dir); len(es) != 0 {
		t.Errorf("%d files left in %s", len(es), dir)
	}
	if after := procStatus(t, "Threads"); after > threads+workers+4 {
		t.Errorf("threads: %d before, %d after %d namespaces", threads, after, workers*each)
	} else {
		t.Logf("threads: %d before, %d after %d namespaces", threads, after, workers*each)
	}
	if after := countFDs(t); after > fds+2 {
		t.Errorf("open fds: %d before, %d after", fds, after)
	}
	threadsAtHome(t)
}

func BenchmarkNewListenClose(b *testing.B) {
	requireRoot(b)
	dir := b.TempDir()
	var newT, listenT, closeT time.Duration
	i := 0
	for b.Loop() {
		i++
		t0 := time.Now()
		ns, err := New(dir, strconv.Itoa(i))
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		l, err := ns.Listen("127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		l.Close()
		if err := ns.Close(); err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		newT += t1.Sub(t0)
		listenT += t2.Sub(t1)
		closeT += t3.Sub(t2)
	}
	n := float64(b.N)
	b.ReportMetric(float64(newT.Nanoseconds())/n, "new-ns/op")
	b.ReportMetric(float64(listenT.Nanoseconds())/n, "listen-ns/op")
	b.ReportMetric(float64(closeT.Nanoseconds())/n, "close-ns/op")
}

// relay accepts on l, inside the namespace, and pipes each connection to
// target, dialled from the host: what the call's gateway does for a cluster.
func relay(ctx context.Context, l net.Listener, target string) {
	go func() { <-ctx.Done(); l.Close() }()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		in, err := l.Accept()
		if err != nil {
			return
		}
		out, err := net.Dial("tcp", target)
		if err != nil {
			in.Close()
			continue
		}
		wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer wg.Done()
			io.Copy(dst, src)
			if tc, ok := dst.(*net.TCPConn); ok {
				tc.CloseWrite()
			}
		}
		go pipe(out, in)
		go pipe(in, out)
		go func() { <-ctx.Done(); in.Close(); out.Close() }()
	}
}
