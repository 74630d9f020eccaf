package mcpserver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/hashicorp/go-hclog"
)

// PathProtectedResource is RFC 9728's metadata of this server as an OAuth
// protected resource; it is also served with the resource's path appended.
const PathProtectedResource = "/.well-known/oauth-protected-resource"

// oauthAlgorithms are the signatures access tokens may carry: asymmetric
// only, so neither "none" nor an HMAC keyed with a published public key
// can pass.
var oauthAlgorithms = []jose.SignatureAlgorithm{
	jose.RS256, jose.RS384, jose.RS512,
	jose.PS256, jose.PS384, jose.PS512,
	jose.ES256, jose.ES384, jose.ES512,
	jose.EdDSA,
}

const (
	// clockLeeway is the clock skew allowed on exp, nbf and iat.
	clockLeeway = 30 * time.Second
	// jwksRefreshEvery bounds how often an unknown key id fetches the
	// JWKS again (the issuer rotated its keys), so tokens with made-up
	// key ids cannot make the server hammer the issuer.
	jwksRefreshEvery = 30 * time.Second
	// maxMetadataBytes bounds the issuer's metadata and JWKS documents.
	maxMetadataBytes = 1 << 20
)

// OAuthOptions configure the server as an OAuth 2.1 resource server.
type OAuthOptions struct {
	// Issuer is the authorization server's issuer identifier; tokens'
	// iss must equal it. Its metadata (RFC 8414, else OpenID Connect
	// discovery) names the JWKS unless JWKSURL does.
	Issuer string
	// Resource is this server's URL as clients reach it (for example
	// https://mcp.example.com/mcp): the protected-resource metadata's
	// resource and, unless Audiences says otherwise, the audience tokens
	// must name.
	Resource string
	// Audiences are the aud values accepted (any one of them); nil means
	// Resource.
	Audiences []string
	// JWKSURL is where the issuer's signing keys are; "" reads it from
	// the issuer's metadata.
	JWKSURL string
	// Scopes are advertised as scopes_supported.
	Scopes []string
	// HTTPClient fetches metadata and keys; nil is a client with a 10 s
	// timeout.
	HTTPClient *http.Client
	Logger     hclog.Logger
}

// OAuthVerifier validates access tokens against one issuer.
type OAuthVerifier struct {
	opts      OAuthOptions
	audiences jwt.Audience
	jwksURL   string
	client    *http.Client
	log       hclog.Logger

	refreshing sync.Mutex // one JWKS fetch at a time
	mu         sync.Mutex // guards keys and fetched
	keys       jose.JSONWebKeySet
	fetched    time.Time
}

// NewOAuthVerifier checks opts, finds the issuer's JWKS and fetches it
// once: a server whose issuer cannot be reached fails at start-up, not
// at its first call.
func NewOAuthVerifier(ctx context.Context, opts OAuthOptions) (*OAuthVerifier, error) {
	if err := checkOAuthURL("issuer", opts.Issuer); err != nil {
		return nil, err
	}
	if err := checkOAuthURL("resource", opts.Resource); err != nil {
		return nil, err
	}
	v := &OAuthVerifier{opts: opts, audiences: jwt.Audience(opts.Audiences), client: opts.HTTPClient, log: opts.Logger, jwksURL: opts.JWKSURL}
	if len(v.audiences) == 0 {
		v.audiences = jwt.Audience{opts.Resource}
	}
	if v.client == nil {
		v.client = &http.Client{Timeout: 10 * time.Second}
	}
	if v.log == nil {
		v.log = hclog.NewNullLogger()
	}
	if v.jwksURL == "" {
		u, err := v.discoverJWKS(ctx)
		if err != nil {
			return nil, err
		}
		v.jwksURL = u
	}
	if err := checkOAuthURL("jwks_uri", v.jwksURL); err != nil {
		return nil, err
	}
	if err := v.refresh(ctx); err != nil {
		return nil, err
	}
	return v, nil
}

// checkOAuthURL wants https, or http on loopback (a local issuer in
// development and tests), and no fragment.
func checkOAuthURL(what, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || u.Host == "" {
		return fmt.Errorf("OAuth %s %q: not an absolute URL", what, raw)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && IsLoopback(u.Hostname())) {
		return fmt.Errorf("OAuth %s %q: must be https (http only on loopback)", what, raw)
	}
	if u.Fragment != "" {
		return fmt.Errorf("OAuth %s %q: must not have a fragment", what, raw)
	}
	return nil
}

// discoverJWKS reads the issuer's metadata: RFC 8414's well-known URL
// (inserted before the issuer's path), then OpenID Connect's (appended).
func (v *OAuthVerifier) discoverJWKS(ctx context.Context) (string, error) {
	u, _ := url.Parse(v.opts.Issuer)
	path := strings.TrimSuffix(u.Path, "/")
	origin := u.Scheme + "://" + u.Host
	var errs []error
	for _, candidate := range []string{
		origin + "/.well-known/oauth-authorization-server" + path,
		origin + path + "/.well-known/openid-configuration",
	} {
		var meta struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := v.getJSON(ctx, candidate, &meta); err != nil {
			errs = append(errs, err)
			continue
		}
		// RFC 8414 §3.3: metadata for another issuer is not this one's.
		if meta.Issuer != v.opts.Issuer {
			errs = append(errs, fmt.Errorf("%s names issuer %q, not %q", candidate, meta.Issuer, v.opts.Issuer))
			continue
		}
		if meta.JWKSURI == "" {
			errs = append(errs, fmt.Errorf("%s has no jwks_uri", candidate))
			continue
		}
		return meta.JWKSURI, nil
	}
	return "", fmt.Errorf("OAuth issuer %s: no usable metadata: %w", v.opts.Issuer, errors.Join(errs...))
}

func (v *OAuthVerifier) getJSON(ctx context.Context, u string, dst any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return fmt.Errorf("fetch %s: %w", u, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("fetch %s: %s", u, resp.Status)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxMetadataBytes+1))
	if err != nil {
		return fmt.Errorf("fetch %s: %w", u, err)
	}
	if len(data) > maxMetadataBytes {
		return fmt.Errorf("fetch %s: over %d bytes", u, maxMetadataBytes)
	}
	if err := json.Unmarshal(data, dst); err != nil {
		return fmt.Errorf("fetch %s: %w", u, err)
	}
	return nil
}

// refresh fetches the JWKS and keeps its public signing keys.
func (v *OAuthVerifier) refresh(ctx context.Context) error {
	var set jose.JSONWebKeySet
	if err := v.getJSON(ctx, v.jwksURL, &set); err != nil {
		return fmt.Errorf("OAuth JWKS: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, k := range set.Keys {
		// Only public asymmetric keys for signatures: a symmetric key in a
		// published set would be a secret anybody knows.
		if k.IsPublic() && k.Valid() && (k.Use == "" || k.Use == "sig") {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return fmt.Errorf("OAuth JWKS %s: no public signing keys", v.jwksURL)
	}
	v.mu.Lock()
	v.keys, v.fetched = jose.JSONWebKeySet{Keys: keys}, time.Now()
	v.mu.Unlock()
	v.log.Debug("OAuth signing keys fetched", "jwks", v.jwksURL, "keys", len(keys))
	return nil
}

// candidates are the keys that may have signed a token with this key id
// ("" when the token names none) and algorithm.
func (v *OAuthVerifier) candidates(kid string, alg string) []jose.JSONWebKey {
	v.mu.Lock()
	defer v.mu.Unlock()
	var out []jose.JSONWebKey
	for _, k := range v.keys.Keys {
		if (kid == "" || k.KeyID == kid) && (k.Algorithm == "" || k.Algorithm == alg) {
			out = append(out, k)
		}
	}
	return out
}

// refreshFor fetches the JWKS again for a key id it lacks, unless it was
// fetched within jwksRefreshEvery, and returns the candidates then.
func (v *OAuthVerifier) refreshFor(ctx context.Context, kid, alg string) []jose.JSONWebKey {
	v.refreshing.Lock()
	defer v.refreshing.Unlock()
	if keys := v.candidates(kid, alg); len(keys) > 0 {
		return keys // fetched while this one waited
	}
	v.mu.Lock()
	stale := time.Since(v.fetched) >= jwksRefreshEvery
	v.mu.Unlock()
	if !stale {
		return nil
	}
	if err := v.refresh(ctx); err != nil {
		v.log.Warn("OAuth JWKS refresh failed", "error", err)
		v.mu.Lock()
		v.fetched = time.Now() // a failing issuer is not asked again at once either
		v.mu.Unlock()
	}
	return v.candidates(kid, alg)
}

// Verify checks an access token: a JWT signed with an allowed algorithm
// by a key of the issuer's JWKS, whose iss is the issuer, whose aud names
// this server, that has an exp and is within exp and nbf.
func (v *OAuthVerifier) Verify(ctx context.Context, raw string) error {
	tok, err := jwt.ParseSigned(raw, oauthAlgorithms)
	if err != nil {
		return fmt.Errorf("not a JWT signed with an allowed algorithm: %w", err)
	}
	if len(tok.Headers) != 1 {
		return errors.New("the token must have exactly one signature")
	}
	kid, alg := tok.Headers[0].KeyID, tok.Headers[0].Algorithm
	keys := v.candidates(kid, alg)
	if len(keys) == 0 {
		keys = v.refreshFor(ctx, kid, alg)
	}
	if len(keys) == 0 {
		return fmt.Errorf("signed by key %q (%s), which the issuer's JWKS does not have", kid, alg)
	}
	var claims jwt.Claims
	verified := false
	for _, k := range keys {
		if err := tok.Claims(k.Key, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return errors.New("bad signature")
	}
	if claims.Expiry == nil {
		return errors.New("the token has no exp")
	}
	err = claims.ValidateWithLeeway(jwt.Expected{Issuer: v.opts.Issuer, AnyAudience: v.audiences, Time: time.Now()}, clockLeeway)
	switch {
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return fmt.Errorf("issuer %q is not %q", claims.Issuer, v.opts.Issuer)
	case errors.Is(err, jwt.ErrInvalidAudience):
		return fmt.Errorf("audience %q does not name this server (%q)", []string(claims.Audience), []string(v.audiences))
	case err != nil:
		return err
	}
	return nil
}

// resourcePath is the path of the resource URL ("" for none), which
// RFC 9728 appends to the metadata's well-known path.
func (v *OAuthVerifier) resourcePath() string {
	u, _ := url.Parse(v.opts.Resource)
	return strings.TrimSuffix(u.Path, "/")
}

// metadataURL is where clients find the protected-resource metadata.
func (v *OAuthVerifier) metadataURL() string {
	u, _ := url.Parse(v.opts.Resource)
	return u.Scheme + "://" + u.Host + PathProtectedResource + v.resourcePath()
}

// ProtectedResourceMetadata is RFC 9728's document for this server.
type ProtectedResourceMetadata struct {
	Resource               string   `json:"resource"`
	AuthorizationServers   []string `json:"authorization_servers"`
	BearerMethodsSupported []string `json:"bearer_methods_supported"`
	ScopesSupported        []string `json:"scopes_supported,omitempty"`
	ResourceName           string   `json:"resource_name"`
}

func (v *OAuthVerifier) serveMetadata(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path != PathProtectedResource && r.URL.Path != PathProtectedResource+v.resourcePath() {
		writeJSON(w, http.StatusNotFound, map[string]string{"error": "no protected-resource metadata here: see " + v.metadataURL()})
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	writeJSON(w, http.StatusOK, ProtectedResourceMetadata{
		Resource:               v.opts.Resource,
		AuthorizationServers:   []string{v.opts.Issuer},
		BearerMethodsSupported: []string{"header"}, // never the query: OAuth 2.1 forbids it
		ScopesSupported:        v.opts.Scopes,
		ResourceName:           Name,
	})
}
