package mcpserver

import (
	"fmt"
	"net"
	"net/url"
	"strings"
)

// DefaultAllowedOrigins are the browser origins the HTTP transports accept
// when none are configured: pages served from this machine's loopback, on
// any port. A page elsewhere that DNS-rebinds its name to 127.0.0.1 still
// sends its own origin, and is refused.
var DefaultAllowedOrigins = []string{
	"http://localhost", "http://127.0.0.1", "http://[::1]",
	"https://localhost", "https://127.0.0.1", "https://[::1]",
}

// IsLoopback reports whether host (a name or an IP literal, with or
// without brackets) is this machine's loopback: "localhost" or an address
// in 127.0.0.0/8 or ::1. Every other name counts as reachable from
// elsewhere, whatever it resolves to now. It is the one loopback check of
// the HTTP transports: binding, origins and issuer URLs.
func IsLoopback(host string) bool {
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// allowedOrigin is one entry of the allow list. An entry without a port
// matches every port of its scheme and host.
type allowedOrigin struct {
	scheme, host, port string
}

// originPolicy decides the Origin header of every request.
type originPolicy struct {
	allowed []allowedOrigin
}

// newOriginPolicy parses the allow list (nil: DefaultAllowedOrigins).
// Entries are scheme://host[:port], as browsers send them.
func newOriginPolicy(origins []string) (*originPolicy, error) {
	if origins == nil {
		origins = DefaultAllowedOrigins
	}
	p := &originPolicy{}
	for _, o := range origins {
		a, err := parseOrigin(o)
		if err != nil {
			return nil, fmt.Errorf("allowed origin %q: %w", o, err)
		}
		p.allowed = append(p.allowed, a)
	}
	return p, nil
}

func parseOrigin(o string) (allowedOrigin, error) {
	u, err := url.Parse(o)
	if err != nil {
		return allowedOrigin{}, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return allowedOrigin{}, fmt.Errorf("want http://host[:port] or https://host[:port]")
	}
	if u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return allowedOrigin{}, fmt.Errorf("an origin is scheme://host[:port] only, without user, path, query or fragment")
	}
	return allowedOrigin{scheme: u.Scheme, host: strings.ToLower(u.Hostname()), port: u.Port()}, nil
}

// allows reports whether a request with this Origin header may be served.
// Requests without one come from clients that are not browsers (browsers
// send Origin on every cross-origin request and on every POST), and pass:
// what guards them is authentication. "null" (sandboxed frames, files) is
// no origin of the list and is refused.
func (p *originPolicy) allows(origin string) bool {
	if origin == "" {
		return true
	}
	got, err := parseOrigin(origin)
	if err != nil {
		return false
	}
	if got.port == "" { // browsers leave the scheme's own port out
		got.port = map[string]string{"http": "80", "https": "443"}[got.scheme]
	}
	for _, a := range p.allowed {
		if a.scheme == got.scheme && a.host == got.host && (a.port == "" || a.port == got.port) {
			return true
		}
	}
	return false
}

// CheckOrigins checks an allow list as the HTTP transports read it.
func CheckOrigins(origins []string) error {
	_, err := newOriginPolicy(origins)
	return err
}
