package gateway

import (
	"net"
	"strings"

	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Kubeconfig returns the kubeconfig for the sandbox: one cluster, named as
// Config.Cluster, at https://addr (addr is host:port, or a URL) trusting
// only CAPEM, one context, and a user that holds no credential of the
// cluster's: the gateway adds those. Its one token, where the gateway asks
// for one, is the call's capability (Config.Capability), which opens this
// gateway and nothing else. When addr's host is not one the serving
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
	// The capability, where the gateway asks for one, opens this gateway
	// only: it is not the cluster's credential.
	cfg.AuthInfos["plugin"] = &clientcmdapi.AuthInfo{Username: "plugin"}
	if g.cfg.Capability != "" {
		cfg.AuthInfos["plugin"] = &clientcmdapi.AuthInfo{Token: g.cfg.Capability}
	}
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
