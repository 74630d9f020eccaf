package gateway

import (
	"net"
	"strings"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig returns the kubeconfig for the sandbox: one cluster, named as
// Config.Cluster, at https://addr (addr is host:port, or a URL) trusting
// only CAPEM, one context, and an empty user. It holds no secret at all:
// the gateway adds the credentials. When addr's host is not one the serving
// certificate names, the cluster verifies the gateway as ServerName.
func (g *Gateway) Kubeconfig(addr string) *clientcmdapi.Config {
	server := addr
	if !strings.Contains(addr, "://") {
		server = "https://" + addr
	}
	name := g.cfg.Cluster
	if name == "" {
		name = "gateway"
	}
	cluster := &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: g.CAPEM()}
	if !namedInCert(addr) {
		cluster.TLSServerName = ServerName
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = cluster
	// A user name alone is no credential, but without any identity kubectl
	// stops to prompt for one; the gateway drops what the client sends.
	cfg.AuthInfos["plugin"] = &clientcmdapi.AuthInfo{Username: "plugin"}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: "plugin"}
	cfg.CurrentContext = name
	return cfg
}

// namedInCert reports whether the host of addr is in the serving certificate.
func namedInCert(addr string) bool {
	if _, rest, ok := strings.Cut(addr, "://"); ok {
		addr = rest
	}
	addr, _, _ = strings.Cut(addr, "/")
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = strings.Trim(addr, "[]")
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.IsLoopback() && (ip.Equal(net.IPv4(127, 0, 0, 1)) || ip.Equal(net.IPv6loopback))
	}
	return strings.EqualFold(host, "localhost") || strings.EqualFold(host, ServerName)
}
