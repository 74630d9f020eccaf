package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests need no namespace: Forward works on any listener.

type forwarder struct {
	l      net.Listener
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	errs   []error
}

func startForward(t *testing.T, dial func(context.Context) (net.Conn, error)) *forwarder {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &forwarder{l: l, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		Forward(ctx, l, dial, func(err error) {
			f.mu.Lock()
			f.errs = append(f.errs, err)
			f.mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		<-f.done
	})
	return f
}

func (f *forwarder) errors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

func dialTo(addr net.Addr) func(context.Context) (net.Conn, error) {
	return func(ctx context.Context) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "tcp", addr.String())
	}
}

// serve runs handle for every connection to a new host listener.
func serve(t *testing.T, handle func(*net.TCPConn)) net.Listener {
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
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	t.Cleanup(func() { l.Close() })
	return l
}

func dial(t *testing.T, addr net.Addr) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr.String(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c.(*net.TCPConn)
}

func TestForwardHalfClose(t *testing.T) {
	t.Run("client closes first", func(t *testing.T) {
		// The target answers only once it has seen the client's EOF.
		target := serve(t, func(c *net.TCPConn) {
			got, err := io.ReadAll(c)
			if err != nil {
				return
			}
			fmt.Fprintf(c, "got %d bytes: %s", len(got), got)
		})
		f := startForward(t, dialTo(target.Addr()))
		c := dial(t, f.l.Addr())
		io.WriteString(c, "hello")
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		reply, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if string(reply) != "got 5 bytes: hello" {
			t.Fatalf("reply %q", reply)
		}
		if errs := f.errors(); len(errs) != 0 {
			t.Errorf("errors: %v", errs)
		}
	})
	t.Run("target closes first", func(t *testing.T) {
		// The target says its piece and half-closes; the client can still
		// talk afterwards.
		heard := make(chan string, 1)
		target := serve(t, func(c *net.TCPConn) {
			io.WriteString(c, "banner")
			c.CloseWrite()
			got, _ := io.ReadAll(c)
			heard <- string(got)
		})
		f := startForward(t, dialTo(target.Addr()))
		c := dial(t, f.l.Addr())
		banner, err := io.ReadAll(c) // EOF passed on from the target
		if err != nil || string(banner) != "banner" {
			t.Fatalf("banner %q, %v", banner, err)
		}
		io.WriteString(c, "still here")
		c.CloseWrite()
		select {
		case got := <-heard:
			if got != "still here" {
				t.Fatalf("target heard %q", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("target never got the client's data and EOF")
		}
	})
}

func TestForwardConcurrent(t *testing.T) {
	target := serve(t, func(c *net.TCPConn) {
		io.Copy(c, c)
		c.CloseWrite()
	})
	f := startForward(t, dialTo(target.Addr()))
	const conns, size = 64, 64 << 10
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := net.Dial("tcp", f.l.Addr().String())
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			msg := bytes.Repeat([]byte{byte(i)}, size)
			go func() {
				c.Write(msg)
				c.(*net.TCPConn).CloseWrite()
			}()
			got, err := io.ReadAll(c)
			if err != nil {
				t.Errorf("conn %d: %v", i, err)
			} else if !bytes.Equal(got, msg) {
				t.Errorf("conn %d: got %d bytes back, not what it sent", i, len(got))
			}
		}()
	}
	wg.Wait()
	if errs := f.errors(); len(errs) != 0 {
		t.Errorf("errors: %v", errs)
	}
}

func TestForwardCancel(t *testing.T) {
	// The target holds every connection open until its peer goes.
	accepted := make(chan struct{}, 16)
	ended := make(chan struct{}, 16)
	target := serve(t, func(c *net.TCPConn) {
		accepted <- struct{}{}
		io.Copy(io.Discard, c)
		ended <- struct{}{}
	})
	f := startForward(t, dialTo(target.Addr()))
	const n = 10
	var clients []*net.TCPConn
	for range n {
		c := dial(t, f.l.Addr())
		io.WriteString(c, "x")
		clients = append(clients, c)
	}
	for range n {
		<-accepted
	}

	start := time.Now()
	f.cancel()
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Forward did not return after ctx ended")
	}
	t.Logf("Forward returned %v after cancel", time.Since(start))
	for i, c := range clients {
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("client %d: connection still open", i)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("client %d: connection not closed", i)
		}
	}
	for range n {
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("target connections not closed")
		}
	}
	if _, err := net.DialTimeout("tcp", f.l.Addr().String(), time.Second); err == nil {
		t.Error("listener still accepts after Forward returned")
	}
	if errs := f.errors(); len(errs) != 0 {
		t.Errorf("errors after cancel: %v", errs)
	}
}

func TestForwardListenerClosed(t *testing.T) {
	release, connected := make(chan struct{}), make(chan struct{})
	target := serve(t, func(c *net.TCPConn) {
		close(connected)
		<-release
		io.WriteString(c, "late")
	})
	f := startForward(t, dialTo(target.Addr()))
	c := dial(t, f.l.Addr())
	<-connected // Forward accepted it and dialled the target
	f.l.Close()
	select {
	case <-f.done:
		t.Fatal("Forward returned with a connection still going")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "late" {
		t.Fatalf("reply %q, %v", got, err)
	}
	c.Close() // the client's direction ends too
	select {
	case <-f.done:
	case <-time.After(5 * time.Second):
		t.Fatal("Forward did not return after its listener closed and its connection ended")
	}
}

func TestForwardDialError(t *testing.T) {
	f := startForward(t, func(context.Context) (net.Conn, error) {
		return nil, errors.New("no route to the cluster")
	})
	c := dial(t, f.l.Addr())
	if got, err := io.ReadAll(c); err != nil || len(got) != 0 {
		t.Fatalf("client read %q, %v; want EOF", got, err)
	}
	errs := f.errors()
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "dial: no route to the cluster") {
		t.Fatalf("errors: %v", errs)
	}
}
