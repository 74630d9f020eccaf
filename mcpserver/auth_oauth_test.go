package mcpserver

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// testIssuer is a local OAuth authorization server: its metadata (RFC
// 8414 or OpenID Connect discovery) and its JWKS, with keys it signs
// tokens with.
type testIssuer struct {
	*httptest.Server
	mu   sync.Mutex
	keys map[string]any // kid -> private key, published in the JWKS
}

// newTestIssuer serves metadata at the well-known path named by
// metadataPath ("oauth-authorization-server" or "openid-configuration").
func newTestIssuer(t *testing.T, metadataPath string) *testIssuer {
	t.Helper()
	iss := &testIssuer{keys: map[string]any{"rsa-1": newRSAKey(t), "ec-1": newECKey(t)}}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/"+metadataPath, func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"issuer": iss.URL, "jwks_uri": iss.URL + "/jwks",
			"authorization_endpoint": iss.URL + "/authorize", "token_endpoint": iss.URL + "/token"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		iss.mu.Lock()
		defer iss.mu.Unlock()
		var set jose.JSONWebKeySet
		for kid, k := range iss.keys {
			set.Keys = append(set.Keys, jose.JSONWebKey{Key: publicOf(k), KeyID: kid, Use: "sig"})
		}
		writeJSON(w, 200, set)
	})
	iss.Server = httptest.NewServer(mux)
	t.Cleanup(iss.Close)
	return iss
}

func newRSAKey(t *testing.T) *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newECKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func publicOf(k any) any {
	switch k := k.(type) {
	case *rsa.PrivateKey:
		return &k.PublicKey
	case *ecdsa.PrivateKey:
		return &k.PublicKey
	}
	panic(fmt.Sprintf("key %T", k))
}

// sign makes a JWT with claims, signed by key with alg, naming kid.
func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims any) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	if kid != "" {
		opts = opts.WithHeader("kid", kid)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// unsigned is a JWT with "alg": "none".
func unsigned(t *testing.T, claims any) string {
	enc := func(v any) string {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		return base64.RawURLEncoding.EncodeToString(b)
	}
	return enc(map[string]string{"alg": "none", "typ": "JWT", "kid": "rsa-1"}) + "." + enc(claims) + "."
}

// oauthServer serves f's runtime on 127.0.0.1:0 as a resource server of
// iss; resource is its /mcp URL.
func oauthServer(t *testing.T, f *fixture, iss *testIssuer, mutate func(*OAuthOptions)) (base, resource string, v *OAuthVerifier) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base = "http://" + ln.Addr().String()
	opts := OAuthOptions{Issuer: iss.URL, Resource: base + PathStreamable, Scopes: []string{"mcp:tools"}}
	if mutate != nil {
		mutate(&opts)
	}
	v, err = NewOAuthVerifier(context.Background(), opts)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	s, _ := guardedServer(t, f, HTTPOptions{OAuth: v})
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	return base, opts.Resource, v
}

// Access tokens are checked for signature, algorithm, key, issuer,
// audience and time; every failure is a 401 that points at the metadata.
func TestOAuthAccessTokens(t *testing.T) {
	f := newFixture(t)
	iss := newTestIssuer(t, "oauth-authorization-server")
	base, resource, _ := oauthServer(t, f, iss, nil)
	rsaKey, ecKey := iss.keys["rsa-1"], iss.keys["ec-1"]
	now := time.Now()
	claims := func(mod func(*jwt.Claims)) jwt.Claims {
		c := jwt.Claims{Issuer: iss.URL, Subject: "alice", Audience: jwt.Audience{resource},
			Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute))}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	good := sign(t, jose.RS256, rsaKey, "rsa-1", claims(nil))
	pubDER, err := x509.MarshalPKIXPublicKey(publicOf(rsaKey))
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	parts := strings.Split(good, ".")
	otherClaims, _ := json.Marshal(claims(func(c *jwt.Claims) { c.Subject = "mallory" }))
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString(otherClaims) + "." + parts[2]

	metadata := base + PathProtectedResource + PathStreamable
	missing := fmt.Sprintf(`Bearer realm="kubernetes-mcp-server", resource_metadata=%q`, metadata)
	for _, tt := range []struct {
		name, token string
		ok          bool
		why         string // in error_description
	}{
		{"good RS256", good, true, ""},
		{"good ES256", sign(t, jose.ES256, ecKey, "ec-1", claims(nil)), true, ""},
		{"good, no kid", sign(t, jose.RS256, rsaKey, "", claims(nil)), true, ""},
		{"good, one of several audiences", sign(t, jose.RS256, rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Audience = jwt.Audience{"other", resource} })), true, ""},
		{"wrong audience", sign(t, jose.RS256, rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Audience = jwt.Audience{"https://other.example/mcp"} })), false, "audience"},
		{"no audience", sign(t, jose.RS256, rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Audience = nil })), false, "audience"},
		{"wrong issuer", sign(t, jose.RS256, rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Issuer = "https://evil.example" })), false, "issuer"},
		{"expired", sign(t, jose.RS256, rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-5 * time.Minute)) })), false, "expired"},
		{"not valid yet", sign(t, jose.RS256, rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(5 * time.Minute)) })), false, "not valid yet"},
		{"no exp", sign(t, jose.RS256, rsaKey, "rsa-1", claims(func(c *jwt.Claims) { c.Expiry = nil })), false, "no exp"},
		{"bad signature", tampered, false, "bad signature"},
		{"signed by a key not in the JWKS", sign(t, jose.RS256, newRSAKey(t), "rsa-9", claims(nil)), false, "does not have"},
		{"another key under a published kid", sign(t, jose.RS256, newRSAKey(t), "rsa-1", claims(nil)), false, "bad signature"},
		{"alg none", unsigned(t, claims(nil)), false, "allowed algorithm"},
		{"HS256 keyed with the public key", sign(t, jose.HS256, pubPEM, "rsa-1", claims(nil)), false, "allowed algorithm"},
		{"not a JWT", "not-a-jwt", false, "allowed algorithm"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			status, challenge, body := rawRequest(t, "POST", base+PathStreamable, map[string]string{"Authorization": "Bearer " + tt.token}, initializeBody)
			if tt.ok {
				if status != 200 || challenge != "" {
					t.Errorf("%d %q %s", status, challenge, body)
				}
				return
			}
			if status != 401 || !strings.HasPrefix(challenge, missing+`, error="invalid_token", error_description="`) || !strings.Contains(challenge, tt.why) {
				t.Errorf("%d, WWW-Authenticate %s\n%s\nwant 401 and %s, error=\"invalid_token\" saying %q", status, challenge, body, missing, tt.why)
			}
		})
	}
	t.Run("missing token", func(t *testing.T) {
		for _, path := range []string{PathStreamable, PathSSE, PathMessage} {
			method := "POST"
			if path == PathSSE {
				method = "GET"
			}
			status, challenge, body := rawRequest(t, method, base+path, nil, initializeBody)
			if status != 401 || challenge != missing {
				t.Errorf("%s: %d, WWW-Authenticate %q %s\nwant 401 and %q", path, status, challenge, body, missing)
			}
		}
	})

	// The official SDK's client with the good token, over both transports;
	// without it, nothing.
	for _, transport := range []string{"streamable", "sse"} {
		cs, err := sdkConnect(t, base, transport, bearer(good))
		if err != nil {
			t.Fatalf("%s with a good token: %v", transport, err)
		}
		callPluginsList(t, cs)
		if _, err := sdkConnect(t, base, transport, bearer("")); err == nil {
			t.Errorf("%s without a token: connected", transport)
		}
	}
	// /health answers probes without a token, and names nothing.
	status, _, body := rawRequest(t, "GET", base+PathHealth, nil, "")
	if status != 200 || body != `{"status":"ok","auth":"oauth"}`+"\n" {
		t.Errorf("/health without a token: %d %s", status, body)
	}
	status, _, body = rawRequest(t, "GET", base+PathHealth, map[string]string{"Authorization": "Bearer " + good}, "")
	if status != 200 || !strings.Contains(body, `"clusters":["c1","c2"]`) {
		t.Errorf("/health with a token: %d %s", status, body)
	}
}

// RFC 9728's metadata is served, without a token, at the well-known path
// and at it with the resource's path, and names what clients need.
func TestOAuthProtectedResourceMetadata(t *testing.T) {
	f := newFixture(t)
	iss := newTestIssuer(t, "oauth-authorization-server")
	base, resource, _ := oauthServer(t, f, iss, nil)
	want := ProtectedResourceMetadata{
		Resource:               resource,
		AuthorizationServers:   []string{iss.URL},
		BearerMethodsSupported: []string{"header"},
		ScopesSupported:        []string{"mcp:tools"},
		ResourceName:           "kubernetes-mcp-server",
	}
	for _, path := range []string{PathProtectedResource + PathStreamable, PathProtectedResource} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		var got ProtectedResourceMetadata
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/json" || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %d %v %+v\nwant %+v", path, resp.StatusCode, err, got, want)
		}
	}
	if status, _, _ := rawRequest(t, "POST", base+PathProtectedResource, nil, "{}"); status != http.StatusMethodNotAllowed {
		t.Errorf("POST metadata: %d", status)
	}
	if status, _, body := rawRequest(t, "GET", base+PathProtectedResource+"/other", nil, ""); status != http.StatusNotFound || !strings.Contains(body, PathProtectedResource+PathStreamable) {
		t.Errorf("metadata of another resource: %d %s", status, body)
	}
}

// The issuer's keys are found through OpenID Connect discovery too, and
// fetched again when a token names a key id the server has not seen.
func TestOAuthDiscoveryAndKeyRotation(t *testing.T) {
	f := newFixture(t)
	iss := newTestIssuer(t, "openid-configuration")
	base, resource, v := oauthServer(t, f, iss, func(o *OAuthOptions) { o.Audiences = []string{"kubernetes-mcp-server"} })
	c := jwt.Claims{Issuer: iss.URL, Audience: jwt.Audience{"kubernetes-mcp-server"}, Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute))}
	if status, _, body := rawRequest(t, "POST", base+PathStreamable, map[string]string{"Authorization": "Bearer " + sign(t, jose.RS256, iss.keys["rsa-1"], "rsa-1", c)}, initializeBody); status != 200 {
		t.Errorf("configured audience: %d %s", status, body)
	}
	c.Audience = jwt.Audience{resource}
	if status, _, _ := rawRequest(t, "POST", base+PathStreamable, map[string]string{"Authorization": "Bearer " + sign(t, jose.RS256, iss.keys["rsa-1"], "rsa-1", c)}, initializeBody); status != 401 {
		t.Errorf("the resource URL passes where other audiences are configured: %d", status)
	}
	c.Audience = jwt.Audience{"kubernetes-mcp-server"}

	rotated := newRSAKey(t)
	iss.mu.Lock()
	iss.keys["rsa-2"] = rotated
	iss.mu.Unlock()
	token := sign(t, jose.RS256, rotated, "rsa-2", c)
	// Within jwksRefreshEvery of the last fetch, an unknown kid fetches nothing.
	if status, _, _ := rawRequest(t, "POST", base+PathStreamable, map[string]string{"Authorization": "Bearer " + token}, initializeBody); status != 401 {
		t.Errorf("a key fetched before its time: %d", status)
	}
	v.mu.Lock()
	v.fetched = v.fetched.Add(-jwksRefreshEvery)
	v.mu.Unlock()
	if status, _, body := rawRequest(t, "POST", base+PathStreamable, map[string]string{"Authorization": "Bearer " + token}, initializeBody); status != 200 {
		t.Errorf("a rotated key: %d %s", status, body)
	}
}

// A verifier that cannot be sure of its issuer's keys does not start.
func TestNewOAuthVerifierRefuses(t *testing.T) {
	iss := newTestIssuer(t, "oauth-authorization-server")
	liar := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, 200, map[string]any{"issuer": "https://someone-else.example", "jwks_uri": iss.URL + "/jwks"})
	}))
	defer liar.Close()
	empty := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/jwks" {
			writeJSON(w, 200, map[string]any{"keys": []any{map[string]string{"kty": "oct", "k": "c2VjcmV0", "kid": "hmac"}}})
			return
		}
		http.NotFound(w, r)
	}))
	defer empty.Close()
	const resource = "https://mcp.example/mcp"
	for _, tt := range []struct {
		name string
		opts OAuthOptions
		want string
	}{
		{"plain http beyond loopback", OAuthOptions{Issuer: "http://issuer.example", Resource: resource}, "must be https"},
		{"relative issuer", OAuthOptions{Issuer: "issuer", Resource: resource}, "not an absolute URL"},
		{"resource with a fragment", OAuthOptions{Issuer: iss.URL, Resource: resource + "#x"}, "fragment"},
		{"metadata of another issuer", OAuthOptions{Issuer: liar.URL, Resource: resource}, "names issuer"},
		{"no metadata", OAuthOptions{Issuer: empty.URL, Resource: resource}, "no usable metadata"},
		{"only a symmetric key", OAuthOptions{Issuer: empty.URL, Resource: resource, JWKSURL: empty.URL + "/jwks"}, "no public signing keys"},
		{"jwks over http beyond loopback", OAuthOptions{Issuer: iss.URL, Resource: resource, JWKSURL: "http://keys.example/jwks"}, "must be https"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewOAuthVerifier(context.Background(), tt.opts)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("%v, want an error saying %q", err, tt.want)
			}
		})
	}
}
