// Package netns provides a per-call network namespace with loopback only, where the server listens for the call's cluster traffic and forwards it to the real API server from the host namespace.
package netns

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Namespace is a new network namespace with only a loopback interface, up.
//
// It lives as long as its bind mount at Path, or as long as anything still
// holds it (a process that joined it, a socket opened in it), whichever is
// longer.
type Namespace struct {
	// Path is a bind mount of the namespace: a file the OCI runtime spec can
	// name as the container's network namespace path.
	Path string

	mu     sync.Mutex
	closed bool
}

// New creates a network namespace, brings its loopback interface up and
// bind-mounts it onto dir/id. dir is created 0700 if missing; id must be a
// plain file name that is not in use in dir.
func New(dir, id string) (*Namespace, error) {
	if err := checkID(id); err != nil {
		return nil, fmt.Errorf("create network namespace %q: %w", id, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create network namespace %s: %w", id, err)
	}
	path := filepath.Join(dir, id)
	// The mount point: a new, empty file (O_EXCL: never take over a file
	// that exists, which may be another call's namespace).
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("create network namespace %s: %w", id, err)
	}
	f.Close()

	err = onThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return fmt.Errorf("unshare: %w", err)
		}
		if err := loopbackUp(); err != nil {
			return err
		}
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(self, path, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("bind-mount %s on %s: %w", self, path, err)
		}
		return nil
	})
	if err != nil {
		// If the mount happened but restoring the thread failed, release
		// takes the mount away too.
		if rerr := release(path); rerr != nil {
			err = errors.Join(err, fmt.Errorf("clean up %s: %w", path, rerr))
		}
		return nil, fmt.Errorf("create network namespace %s: %w", id, err)
	}
	return &Namespace{Path: path}, nil
}

// Listen opens a TCP listener inside the namespace, for example on
// "127.0.0.1:0". The address is resolved in the host namespace; the socket
// belongs to the namespace, and so do the connections it accepts.
func (n *Namespace) Listen(addr string) (net.Listener, error) {
	taddr, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s in network namespace %s: %w", addr, n.Path, err)
	}
	var l net.Listener
	err = onThread(func() error {
		fd, err := unix.Open(n.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open: %w", err)
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("enter: %w", err)
		}
		// The socket is made on this thread, so in the namespace.
		l, err = net.ListenTCP("tcp", taddr)
		return err
	})
	if err != nil {
		if l != nil {
			// Listening worked but the thread could not go back: report
			// it rather than hide it.
			l.Close()
		}
		return nil, fmt.Errorf("listen on %s in network namespace %s: %w", addr, n.Path, err)
	}
	return l, nil
}

// Close removes the namespace's bind mount and file. The namespace itself
// goes away when nothing holds it any more. Close is idempotent.
func (n *Namespace) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil
	}
	if err := release(n.Path); err != nil {
		return fmt.Errorf("close network namespace %s: %w", n.Path, err)
	}
	n.closed = true
	return nil
}

// Sweep removes the namespaces a crashed server left in dir: it unmounts
// and removes every file there, and returns how many it removed. A missing
// dir is not an error.
func Sweep(dir string) (int, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sweep network namespaces in %s: %w", dir, err)
	}
	var n int
	var errs []error
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		if err := release(filepath.Join(dir, e.Name())); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", e.Name(), err))
			continue
		}
		n++
	}
	if err := errors.Join(errs...); err != nil {
		return n, fmt.Errorf("sweep network namespaces in %s: %w", dir, err)
	}
	return n, nil
}

// onThread runs fn on a locked OS thread of its own, which fn may move into
// another network namespace. Afterwards the thread is put back into the
// network namespace it started in and handed back to the Go scheduler; if
// it cannot be put back, it stays locked, and the runtime ends it when the
// goroutine returns, so no goroutine ever runs on a thread in the wrong
// namespace.
func onThread(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// Not deferred: unlocking is the last thing, and only once the
		// thread is back home.
		self := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		home, err := unix.Open(self, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			// Nothing changed yet: the thread is clean.
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open %s: %w", self, err)
			return
		}
		err = fn()
		if serr := unix.Setns(home, unix.CLONE_NEWNET); serr != nil {
			unix.Close(home)
			// The thread stays locked and dies with this goroutine.
			errc <- errors.Join(err, fmt.Errorf("restore thread network namespace: %w", serr))
			return
		}
		unix.Close(home)
		runtime.UnlockOSThread()
		errc <- err
	}()
	return <-errc
}

// loopbackUp sets the IFF_UP flag of lo in the calling thread's network
// namespace.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bring lo up: socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return fmt.Errorf("bring lo up: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bring lo up: set flags: %w", err)
	}
	return nil
}

// release unmounts whatever is mounted on path (lazily, and every layer if
// several were stacked) and removes the file. A path already gone is fine.
func release(path string) error {
	for i := 0; ; i++ {
		err := unix.Unmount(path, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW)
		if err == nil {
			if i >= 64 {
				return fmt.Errorf("unmount: still mounted after %d unmounts", i+1)
			}
			continue
		}
		if errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
			break // not (or no longer) a mount point
		}
		return fmt.Errorf("unmount: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove: %w", err)
	}
	return nil
}

func checkID(id string) error {
	if id == "" || id == "." || id == ".." || strings.ContainsAny(id, "/\x00") {
		return errors.New("invalid id: want a plain file name")
	}
	return nil
}
