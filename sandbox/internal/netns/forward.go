package netns

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"
)

// Forward accepts connections on l until ctx ends or l is closed, and pipes
// each to a connection from dial, which runs in the host network namespace
// (dial's ctx ends with Forward's). Each direction is half-closed when its
// source reaches EOF, so request/response protocols that wait for EOF work;
// both connections are closed once both directions are done, or at once if
// either side fails.
//
// Forward owns l: it closes l when it stops accepting. When ctx ends it also
// closes every connection it is piping. It returns once all its connections
// are done. onError, if not nil, receives accept, dial and copy errors (not
// those caused by ctx ending); it may be called from several goroutines at
// once.
func Forward(ctx context.Context, l net.Listener, dial func(ctx context.Context) (net.Conn, error), onError func(error)) {
	report := func(err error) {
		if onError != nil && ctx.Err() == nil {
			onError(err)
		}
	}

	var (
		mu    sync.Mutex
		conns = map[net.Conn]struct{}{}
		done  bool // ctx ended: close what is tracked, refuse to track more
	)
	// track registers c to be closed when ctx ends; false means it ended.
	track := func(c net.Conn) bool {
		mu.Lock()
		defer mu.Unlock()
		if done {
			c.Close()
			return false
		}
		conns[c] = struct{}{}
		return true
	}
	untrack := func(c net.Conn) {
		mu.Lock()
		delete(conns, c)
		mu.Unlock()
	}

	stop := context.AfterFunc(ctx, func() {
		l.Close()
		mu.Lock()
		done = true
		for c := range conns {
			c.Close()
		}
		clear(conns)
		mu.Unlock()
	})
	defer stop()

	var wg sync.WaitGroup
	defer wg.Wait()
	defer l.Close()

	var delay time.Duration
	for {
		client, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			if retryable(err) {
				// Out of file descriptors or memory: wait, as net/http does.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				report(fmt.Errorf("forward: accept (retrying in %v): %w", delay, err))
				t := time.NewTimer(delay)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
					return
				}
				continue
			}
			report(fmt.Errorf("forward: accept: %w", err))
			return
		}
		delay = 0
		if !track(client) {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer untrack(client)
			defer client.Close()
			target, err := dial(ctx)
			if err != nil {
				report(fmt.Errorf("forward %s: dial: %w", client.RemoteAddr(), err))
				return
			}
			if !track(target) {
				return
			}
			defer untrack(target)
			defer target.Close()
			pipe(client, target, report)
		}()
	}
}

// pipe copies both ways between a and b until both directions are done.
func pipe(a, b net.Conn, report func(error)) {
	var (
		wg    sync.WaitGroup
		abort sync.Once
	)
	wg.Add(2)
	one := func(dst, src net.Conn, dir string) {
		defer wg.Done()
		if _, err := io.Copy(dst, src); err != nil {
			// Abort both directions: the other copy ends too, with an
			// error of our making that is not worth reporting.
			abort.Do(func() {
				report(fmt.Errorf("forward %s %s: %w", a.RemoteAddr(), dir, err))
				a.Close()
				b.Close()
			})
			return
		}
		// EOF from src: pass it on, keep the other direction going.
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			if err := cw.CloseWrite(); err != nil && !errors.Is(err, net.ErrClosed) {
				report(fmt.Errorf("forward %s %s: half-close: %w", a.RemoteAddr(), dir, err))
			}
		}
	}
	go one(b, a, "to target")
	one(a, b, "from target")
	wg.Wait()
}

func retryable(err error) bool {
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ENOBUFS) || errors.Is(err, syscall.ENOMEM)
}
