package kubernetes

import (
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
)

// podGateway is one call's API gateway on the pod network: a listener of
// its own that hands the gateway only connections from the call's Pod,
// once the Pod's address is known. Whoever else connects is hung up on;
// the capability the gateway asks for is the second lock.
type podGateway struct {
	host   string
	l      *peerListener
	served chan error
}

func (b *Backend) listenGateway() (*podGateway, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(b.cfg.GatewayListen, "0"))
	if err != nil {
		return nil, fmt.Errorf("listen for the call's gateway on %q: %w", b.cfg.GatewayListen, err)
	}
	return &podGateway{host: b.cfg.GatewayHost, l: &peerListener{Listener: l, log: b.log}}, nil
}

// port is the gateway's port, or 0 for no gateway.
func (g *podGateway) port() int {
	if g == nil {
		return 0
	}
	return g.l.Addr().(*net.TCPAddr).Port
}

// addr is where the Pod dials the gateway.
func (g *podGateway) addr() string { return net.JoinHostPort(g.host, strconv.Itoa(g.port())) }

// admit lets connections from ip through.
func (g *podGateway) admit(ip string) {
	if g == nil {
		return
	}
	g.l.mu.Lock()
	g.l.peer = net.ParseIP(ip)
	g.l.mu.Unlock()
}

// serve serves the call's gateway on the listener until close.
func (g *podGateway) serve(access *sandbox.ClusterAccess) {
	g.served = make(chan error, 1)
	go func() { g.served <- access.Serve(g.l) }()
}

// close stops the gateway's listener; the error is Serve's, if it failed.
func (g *podGateway) close() error {
	g.l.Close()
	if g.served == nil {
		return nil
	}
	return <-g.served
}

// peerListener accepts only connections from peer.
type peerListener struct {
	net.Listener
	log  hclog.Logger
	mu   sync.Mutex
	peer net.IP
}

func (l *peerListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		l.mu.Lock()
		peer := l.peer
		l.mu.Unlock()
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok && peer != nil && a.IP.Equal(peer) {
			return c, nil
		}
		l.log.Warn("refused a connection to a call's gateway from another address than its pod's", "from", c.RemoteAddr().String(), "pod", peer.String())
		c.Close()
	}
}
