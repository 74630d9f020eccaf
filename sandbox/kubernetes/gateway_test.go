package kubernetes

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestTheGatewayListenerTakesOnlyItsPod: connections from any other
// address are hung up on, before and after the Pod's address is known.
func TestTheGatewayListenerTakesOnlyItsPod(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &podGateway{host: "127.0.0.1", l: &peerListener{Listener: l, log: hclog.NewNullLogger()}}
	defer g.close()
	accepted := make(chan net.Conn, 4)
	go func() {
		for {
			c, err := g.l.Accept()
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	dialFrom := func(ip string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 2 * time.Second}
		c, err := d.Dial("tcp", g.addr())
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	hungUp := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	if c := dialFrom("127.0.0.2"); !hungUp(c) {
		t.Errorf("a connection before the pod's address was known was not hung up on")
	}
	g.admit("127.0.0.3")
	if c := dialFrom("127.0.0.2"); !hungUp(c) {
		t.Errorf("a connection from another address was not hung up on")
	}
	dialFrom("127.0.0.3")
	select {
	case c := <-accepted:
		if got := c.RemoteAddr().(*net.TCPAddr).IP.String(); got != "127.0.0.3" {
			t.Errorf("accepted a connection from %s", got)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("the pod's connection was not accepted")
	}
}
