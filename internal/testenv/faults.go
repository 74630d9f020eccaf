package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// RefusedAddr returns a loopback address where every connection is
// refused, held so until the test ends. A socket bound but never
// listening reserves its port: the port of a listener that was closed
// again can be taken by any other test of a busy machine, and a dial to
// it then waits instead of failing.
func RefusedAddr(t testing.TB) string {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatalf("refused address: %v", err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatalf("refused address: bind: %v", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatalf("refused address: %v", err)
	}
	return fmt.Sprintf("127.0.0.1:%d", sa.(*unix.SockaddrInet4).Port)
}

// FaultServer is an upstream "cluster" that misbehaves in one way: the
// fault under test. It counts the connections it still holds open.
type FaultServer struct {
	// URL is where it listens, as https://127.0.0.1:PORT.
	URL   string
	l     net.Listener
	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// StartFault listens on loopback and hands each connection to serve; with
// useTLS it completes a TLS handshake (HTTP/1.1 only) first. It is closed
// when the test ends.
func StartFault(t testing.TB, useTLS bool, serve func(net.Conn)) *FaultServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if useTLS {
		l = tls.NewListener(l, &tls.Config{Certificates: []tls.Certificate{SelfSignedCert(t)}, NextProtos: []string{"http/1.1"}})
	}
	s := &FaultServer{URL: "https://" + l.Addr().String(), l: l, conns: map[net.Conn]struct{}{}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns[c] = struct{}{}
			s.mu.Unlock()
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer func() {
					c.Close()
					s.mu.Lock()
					delete(s.conns, c)
					s.mu.Unlock()
				}()
				if tc, ok := c.(*tls.Conn); ok && tc.Handshake() != nil {
					return
				}
				serve(c)
			}()
		}
	}()
	t.Cleanup(s.Close)
	return s
}

// Open is how many connections it holds.
func (s *FaultServer) Open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// Close closes the listener and every connection: the cluster is gone.
func (s *FaultServer) Close() {
	s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

// SelfSignedCert is a certificate for 127.0.0.1 that nobody trusts.
func SelfSignedCert(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "fault"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// SmallDisk mounts a filesystem of mib MiB (an ext4 image on a loop
// device; a tmpfs where loop devices are not to be had, as the log says)
// and returns its folder; it is unmounted when the test ends.
func SmallDisk(t testing.TB, mib int) string {
	t.Helper()
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "disk.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, int64(mib)<<20); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Logf("no loop mount (%v: %s); a tmpfs of %d MiB stands in", err, out, mib)
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%dm", mib), "tmpfs", mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs: %v\n%s", err, out)
		}
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// FillDisk takes every free byte of the filesystem at dir; release gives
// it back.
func FillDisk(t testing.TB, dir string) (release func()) {
	t.Helper()
	f, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	// Allocated at once, not delayed: no reservation is given back later.
	// A second pass takes what the filesystem freed meanwhile.
	var off int64
	for range 2 {
		for _, size := range []int64{1 << 20, 64 << 10, 4 << 10, 1 << 10} {
			for unix.Fallocate(int(f.Fd()), 0, off, size) == nil {
				off += size
			}
		}
		f.Sync()
		time.Sleep(200 * time.Millisecond)
	}
	return func() {
		f.Close()
		if err := os.Remove(f.Name()); err != nil {
			t.Fatal(err)
		}
	}
}
