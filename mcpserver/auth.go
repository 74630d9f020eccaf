package mcpserver

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
)

// HTTPOptions guard the HTTP transports. The zero value serves loopback
// only, without authentication, to browsers of loopback origins.
type HTTPOptions struct {
	// Token is the bearer token every request to /mcp, /sse and /message
	// must carry ("" for none); see ReadTokenFile.
	Token string
	// OAuth validates OAuth 2.1 access tokens (nil for none); see
	// NewOAuthVerifier. Token and OAuth exclude each other.
	OAuth *OAuthVerifier
	// InsecureListen serves a non-loopback listener without
	// authentication. Without it, ServeListener refuses one.
	InsecureListen bool
	// AllowedOrigins are the Origin headers accepted; nil means
	// DefaultAllowedOrigins.
	AllowedOrigins []string
}

// ErrNoAuthentication is why a non-loopback listener is refused.
var ErrNoAuthentication = errors.New("HTTP on an address other than loopback needs authentication (a bearer token or OAuth), or an explicit insecure listen")

// authMode names the authentication in force, for /health and logs.
func (o HTTPOptions) authMode() string {
	switch {
	case o.Token != "":
		return "bearer_token"
	case o.OAuth != nil:
		return "oauth"
	default:
		return "none"
	}
}

func (o HTTPOptions) check() error {
	if o.Token != "" && o.OAuth != nil {
		return errors.New("choose one authentication: a bearer token or OAuth, not both")
	}
	return nil
}

// CheckExposure refuses to serve host (the address the transports listen
// on) without authentication unless it is loopback or opts say
// InsecureListen. An empty host, or 0.0.0.0 and ::, listen everywhere.
func CheckExposure(host string, opts HTTPOptions) error {
	if err := opts.check(); err != nil {
		return err
	}
	if opts.authMode() != "none" || opts.InsecureListen || (host != "" && IsLoopback(host)) {
		return nil
	}
	shown := host
	if shown == "" {
		shown = "every address"
	}
	return fmt.Errorf("refusing to serve on %s: %w", shown, ErrNoAuthentication)
}

// listenerHost is the host a listener serves, for CheckExposure: "" for
// one that is not TCP (it counts as exposed).
func listenerHost(ln net.Listener) string {
	if a, ok := ln.Addr().(*net.TCPAddr); ok && a.IP != nil && !a.IP.IsUnspecified() {
		return a.IP.String()
	}
	return ""
}

// minTokenBytes keeps a guessable token out: 16 bytes is 128 bits when
// random, and `openssl rand -hex 32` gives 64.
const minTokenBytes = 16

// ReadTokenFile reads the bearer token from path, without the spaces and
// newlines around it. It refuses a file that others may read or anyone
// but its owner may write (the token would not be a secret), an empty
// one and one shorter than 16 bytes. warning, when not "", says the file's
// group may read it (as Kubernetes' fsGroup makes secret files): the
// token is kept but the operator should know.
func ReadTokenFile(path string) (token, warning string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", fmt.Errorf("auth token file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", "", fmt.Errorf("auth token file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("auth token file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o026 != 0 {
		return "", "", fmt.Errorf("auth token file %s: mode %04o lets others read it or others than its owner write it; run chmod 600 %s (in Kubernetes, defaultMode: 0400 on the secret volume)", path, perm, path)
	} else if perm&0o040 != 0 {
		warning = fmt.Sprintf("auth token file %s: its group may read it (mode %04o); chmod 600 keeps it to its owner", path, perm)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err != nil {
		return "", "", fmt.Errorf("auth token file %s: %w", path, err)
	}
	if len(data) > 64<<10 {
		return "", "", fmt.Errorf("auth token file %s: over 64 KiB: it holds more than a token", path)
	}
	token = strings.TrimSpace(string(data))
	switch {
	case token == "":
		return "", "", fmt.Errorf("auth token file %s is empty: write a random token into it, e.g. openssl rand -hex 32 > %s", path, path)
	case len(token) < minTokenBytes:
		return "", "", fmt.Errorf("auth token file %s: the token has %d bytes, fewer than %d: use a random one, e.g. openssl rand -hex 32", path, len(token), minTokenBytes)
	case strings.ContainsAny(token, " \t\r\n"):
		return "", "", fmt.Errorf("auth token file %s: the token has spaces or several lines: one token only", path)
	}
	return token, warning, nil
}

// authError is why a request is not authenticated. invalid says it
// carried a credential that failed (RFC 6750's invalid_token), rather
// than none at all.
type authError struct {
	invalid bool
	reason  string
}

func (e *authError) Error() string { return e.reason }

var errNoCredential = &authError{reason: "no bearer token: send Authorization: Bearer <token>"}

// bearerToken is the token of an "Authorization: Bearer" header, or "".
func bearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// guard applies the Origin allow list and authentication to requests.
type guard struct {
	opts    HTTPOptions
	origins *originPolicy
	token   [sha256.Size]byte // of opts.Token
}

func newGuard(opts HTTPOptions) (*guard, error) {
	if err := opts.check(); err != nil {
		return nil, err
	}
	origins, err := newOriginPolicy(opts.AllowedOrigins)
	if err != nil {
		return nil, err
	}
	return &guard{opts: opts, origins: origins, token: sha256.Sum256([]byte(opts.Token))}, nil
}

// authenticate checks r's credential: nil when it passes or none is
// needed.
func (g *guard) authenticate(ctx context.Context, r *http.Request) error {
	if g.opts.authMode() == "none" {
		return nil
	}
	token := bearerToken(r)
	if token == "" {
		return errNoCredential
	}
	if g.opts.OAuth != nil {
		if err := g.opts.OAuth.Verify(ctx, token); err != nil {
			return &authError{invalid: true, reason: err.Error()}
		}
		return nil
	}
	// Hashes first: equal lengths, so the comparison's time says nothing
	// about the token, not even its length.
	got := sha256.Sum256([]byte(token))
	if subtle.ConstantTimeCompare(got[:], g.token[:]) != 1 {
		return &authError{invalid: true, reason: "the bearer token is not this server's"}
	}
	return nil
}

// challenge writes the 401 of RFC 6750 (and, with OAuth, RFC 9728's
// resource_metadata, where MCP clients find the authorization server).
func (g *guard) challenge(w http.ResponseWriter, err error) {
	params := []string{`realm="` + Name + `"`}
	if g.opts.OAuth != nil {
		params = append(params, `resource_metadata="`+g.opts.OAuth.metadataURL()+`"`)
	}
	var ae *authError
	if errors.As(err, &ae) && ae.invalid {
		params = append(params, `error="invalid_token"`, `error_description="`+quoteSafe(ae.reason)+`"`)
	}
	w.Header().Set("WWW-Authenticate", "Bearer "+strings.Join(params, ", "))
	writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "unauthorized: " + err.Error()})
}

// quoteSafe keeps a text fit for a quoted-string of a header.
func quoteSafe(s string) string {
	return strings.Map(func(r rune) rune {
		if r == '"' || r == '\\' || r < 0x20 || r > 0x7e {
			return '\''
		}
		return r
	}, s)
}

// wrap guards next: Origin on every request, then authentication on all
// but the public paths (health, which answers less without it, and the
// protected-resource metadata, which clients read before they have a
// token).
func (g *guard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); !g.origins.allows(origin) {
			writeJSON(w, http.StatusForbidden, map[string]string{
				"error": fmt.Sprintf("origin %q is not allowed (DNS rebinding protection): add it to server.allowed_origins if this page may use the server", origin),
			})
			return
		}
		if g.isPublic(r.URL.Path) {
			next.ServeHTTP(w, r)
			return
		}
		if err := g.authenticate(r.Context(), r); err != nil {
			g.challenge(w, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (g *guard) isPublic(p string) bool {
	if p == PathHealth || p == PathHealthz {
		return true
	}
	return g.opts.OAuth != nil && (p == PathProtectedResource || strings.HasPrefix(p, PathProtectedResource+"/"))
}
