// Package gateway is the per-call Kubernetes API gateway that a sandboxed plugin talks to instead of the cluster: it adds the cluster's real credentials, decides every request against the call's policy and audits each one.
package gateway

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"path"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apiserver/pkg/endpoints/request"
	"k8s.io/client-go/rest"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/policy"
)

// Request is what a Decider knows of one API request, as parsed by
// k8s.io/apiserver's RequestInfoFactory: policy's description of a request.
type Request = policy.Request

// Decision is a Decider's answer: policy's decision on one request.
type Decision = policy.RequestDecision

// Decider decides one request. It must be safe for concurrent use.
type Decider func(Request) Decision

// Record is one audited API request.
type Record struct {
	CallID  string    `json:"call_id" jsonschema:"The call that made the request."`
	Plugin  string    `json:"plugin" jsonschema:"The plugin that made it."`
	Cluster string    `json:"cluster" jsonschema:"The cluster it was for."`
	Time    time.Time `json:"time" jsonschema:"When the request arrived, RFC 3339."` // when the request arrived
	Method  string    `json:"method" jsonschema:"The HTTP method."`
	Path    string    `json:"path" jsonschema:"The URL path, without the query."` // without the query

	Verb        string `json:"verb" jsonschema:"The Kubernetes verb: get, list, watch, create, update, patch, delete or deletecollection; empty for a non-resource path."`
	APIGroup    string `json:"group" jsonschema:"The API group; empty for the core group."`
	APIVersion  string `json:"version" jsonschema:"The API version."`
	Resource    string `json:"resource" jsonschema:"The resource, such as pods; empty for a non-resource path."`
	Subresource string `json:"subresource" jsonschema:"The subresource, such as log; empty for none."`
	Namespace   string `json:"namespace" jsonschema:"The namespace; empty for cluster-scoped requests and those across all namespaces."`
	Name        string `json:"name" jsonschema:"The object's name; empty for lists and collections."`

	Decision string `json:"decision" jsonschema:"What policy decided: allow or deny."` // "allow" or "deny"
	Rule     string `json:"rule" jsonschema:"The policy rule that decided."`
	// Status is the HTTP status returned to the plugin: 101 for a
	// connection that was upgraded, 502 when the cluster did not answer.
	Status int `json:"status" jsonschema:"The HTTP status the plugin got: 101 for a connection that was upgraded, 502 when the cluster did not answer."`
	// BytesIn counts the request body; for an upgraded connection, also
	// everything the plugin sent after the switch. BytesOut counts the
	// response body; for an upgraded connection, everything sent to the
	// plugin from the 101 response on.
	BytesIn  int64 `json:"bytes_in" jsonschema:"Bytes of the request body; for an upgraded connection, everything the plugin sent."`
	BytesOut int64 `json:"bytes_out" jsonschema:"Bytes of the response body; for an upgraded connection, everything sent to the plugin."`
	// LatencyMS is the time until the response finished; for watches and
	// upgraded connections, until they closed.
	LatencyMS float64 `json:"latency_ms" jsonschema:"Milliseconds until the response finished; for watches and upgraded connections, until they closed."`
	// Reason says why a request was denied, or why the gateway itself
	// answered with an error.
	Reason string `json:"reason,omitempty" jsonschema:"Why the request was denied, or why the gateway itself answered with an error."`
}

// Decisions as written in Record.Decision.
const (
	Allow = "allow"
	Deny  = "deny"
)

// Rules of the gateway's own, for requests that never reach the Decider or
// fail after it allowed them.
const (
	RuleBadRequest = "gateway.bad_request" // malformed path or request
	RuleTooLarge   = "gateway.too_large"   // body or headers over the limits
	RuleClosed     = "gateway.closed"      // the gateway was closing
	RuleNoUpgrade  = "gateway.no_upgrade"  // the connection cannot be upgraded
	// RuleCapability is for a request over the network without the call's
	// capability (see Config.Capability).
	RuleCapability = "gateway.capability"
	// RuleAuditUnavailable is for an allowed request that was not
	// forwarded because its audit record could not be written.
	RuleAuditUnavailable = "gateway.audit_unavailable"
	// RuleInternalError is for a panic while serving, in the Decider say.
	RuleInternalError = "gateway.internal_error"
)

// Limits on what a plugin may send.
const (
	MaxBodyBytes   = 8 << 20
	MaxHeaderBytes = 1 << 20
)

// Config is what one gateway needs. Upstream, Decide are required.
type Config struct {
	CallID, Plugin, Cluster string
	// Upstream is the target cluster's real configuration, credentials
	// included (clusters.Cluster.REST). Its transport is built with
	// rest.TransportFor, so exec and auth-provider credentials work.
	Upstream *rest.Config
	Decide   Decider
	// Audit is called once per request, after its response finished. The
	// gateway calls it from many goroutines at once.
	Audit func(Record)
	// AuditReady, when set, is asked before an allowed request is
	// forwarded; an error means its record could not be written, and the
	// request is refused (503, rule gateway.audit_unavailable) instead.
	AuditReady func() error
	// Capability, when set, is the bearer token every request served on a
	// listener (Serve) must carry: the call's own, for sandboxes that reach
	// their gateway over a network others share (a cluster's pod network).
	// Kubeconfig puts it in the plugin's kubeconfig; it opens this gateway
	// only, for as long as it serves, and never reaches the cluster.
	// Handler, in process, does not ask for it.
	Capability string
	Logger     hclog.Logger
}

// Gateway is one call's API gateway. Use Handler in process, or Serve on
// listeners; Close ends both.
type Gateway struct {
	cfg      Config
	log      hclog.Logger
	upstream *url.URL
	info     request.RequestInfoFactory
	proxy    *httputil.ReverseProxy // over the upstream transport (HTTP/2 if the cluster speaks it)
	upgrade  *httputil.ReverseProxy // over an HTTP/1.1-only upstream transport, for upgrades
	handler  http.Handler
	certs    *certs

	ctx    context.Context // cancelled by Close; parent of every forwarded request
	cancel context.CancelFunc

	mu       sync.Mutex
	closed   bool
	servers  map[*http.Server]struct{}
	inflight sync.WaitGroup
}

// New builds a gateway: the transports to the upstream cluster and a fresh
// certificate authority with a serving certificate of its own.
func New(cfg Config) (*Gateway, error) {
	if cfg.Upstream == nil {
		return nil, errors.New("gateway: no upstream cluster configuration")
	}
	if cfg.Decide == nil {
		return nil, errors.New("gateway: no Decider")
	}
	if cfg.Audit == nil {
		cfg.Audit = func(Record) {}
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	target, err := upstreamURL(cfg.Upstream)
	if err != nil {
		return nil, err
	}
	transport, err := rest.TransportFor(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("gateway: transport to cluster %q: %w", cfg.Cluster, err)
	}
	// Only HTTP/1.1 can switch protocols. net/http keeps WebSocket
	// upgrades on HTTP/1.1 by itself, but would send a SPDY upgrade (exec,
	// attach, port-forward of older clients) over an HTTP/2 connection,
	// where it fails; so upgrades get a transport that never offers h2.
	h1 := rest.CopyConfig(cfg.Upstream)
	h1.NextProtos = []string{"http/1.1"}
	h1Transport, err := rest.TransportFor(h1)
	if err != nil {
		return nil, fmt.Errorf("gateway: transport to cluster %q: %w", cfg.Cluster, err)
	}
	c, err := newCerts(time.Now())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	g := &Gateway{
		cfg:      cfg,
		log:      cfg.Logger,
		upstream: target,
		info: request.RequestInfoFactory{
			APIPrefixes:          sets.NewString("api", "apis"),
			GrouplessAPIPrefixes: sets.NewString("api"),
		},
		certs:   c,
		ctx:     ctx,
		cancel:  cancel,
		servers: map[*http.Server]struct{}{},
	}
	g.proxy = g.newProxy(transport)
	g.upgrade = g.newProxy(h1Transport)
	g.handler = http.HandlerFunc(g.serveHTTP)
	return g, nil
}

// upstreamURL is the server URL of cfg, with any path prefix it has,
// chosen as client-go chooses it.
func upstreamURL(cfg *rest.Config) (*url.URL, error) {
	if cfg.Host == "" {
		return nil, errors.New("gateway: upstream configuration has no host")
	}
	u, _, err := rest.DefaultServerUrlFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("gateway: upstream host %q: %w", cfg.Host, err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return nil, fmt.Errorf("gateway: upstream host %q: scheme must be https or http", cfg.Host)
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

func (g *Gateway) newProxy(transport http.RoundTripper) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite:        g.rewrite,
		Transport:      transport,
		FlushInterval:  -1,
		ErrorLog:       g.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
		ErrorHandler:   g.upstreamError,
		ModifyResponse: g.watchBody,
	}
}

// recorderKey carries a request's recorder to watchBody.
type recorderKey struct{}

// watchBody notes on the request's recorder why the cluster's response
// body ended early, if it does: served in process (wasm) httputil drops
// that error silently, and the record must say the response was cut short.
func (g *Gateway) watchBody(resp *http.Response) error {
	rw, _ := resp.Request.Context().Value(recorderKey{}).(*recorder)
	if rw == nil || resp.StatusCode == http.StatusSwitchingProtocols || resp.Body == nil {
		return nil
	}
	resp.Body = &bodyWatch{ReadCloser: resp.Body, rw: rw, cluster: g.cfg.Cluster}
	return nil
}

type bodyWatch struct {
	io.ReadCloser
	rw      *recorder
	cluster string
}

func (b *bodyWatch) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF && b.rw.failure == "" {
		b.rw.failure = fmt.Sprintf("the response of cluster %q was cut short: %v", b.cluster, err)
		if errors.Is(err, context.Canceled) {
			b.rw.failure = fmt.Sprintf("the response of cluster %q was cut short: the plugin went away or its call ended", b.cluster)
		}
	}
	return n, err
}

// Handler is the gateway's HTTP handler, for serving in process. An
// upgrade (exec, attach, port-forward) needs a ResponseWriter that is, or
// unwraps to, an http.Hijacker; without one it is answered 400 (rule
// gateway.no_upgrade) before the cluster is asked.
func (g *Gateway) Handler() http.Handler { return g.handler }

// Serve serves TLS, HTTP/2 and HTTP/1.1, on l until l closes or the gateway
// is closed; then it returns nil. It closes l.
func (g *Gateway) Serve(l net.Listener) error {
	srv := &http.Server{
		Handler:           g.handler,
		BaseContext:       func(net.Listener) context.Context { return context.WithValue(context.Background(), servedKey{}, true) },
		TLSConfig:         g.TLSConfig(),
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    MaxHeaderBytes,
		ErrorLog:          g.log.StandardLogger(&hclog.StandardLoggerOptions{ForceLevel: hclog.Debug}),
	}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		l.Close()
		return nil
	}
	g.servers[srv] = struct{}{}
	g.mu.Unlock()
	defer func() {
		g.mu.Lock()
		delete(g.servers, srv)
		g.mu.Unlock()
	}()
	err := srv.ServeTLS(l, "", "")
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// Close stops serving, ends open requests (watches and upgraded connections
// included) and waits until each has been audited. It is safe to call more
// than once.
func (g *Gateway) Close() error {
	g.mu.Lock()
	g.closed = true
	servers := make([]*http.Server, 0, len(g.servers))
	for srv := range g.servers {
		servers = append(servers, srv)
	}
	g.mu.Unlock()
	g.cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	g.inflight.Wait()
	return errors.Join(errs...)
}

// begin registers a request; false means the gateway is closing.
func (g *Gateway) begin() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.inflight.Add(1)
	return true
}

func (g *Gateway) serveHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &recorder{ResponseWriter: w}
	rec := Record{
		CallID:   g.cfg.CallID,
		Plugin:   g.cfg.Plugin,
		Cluster:  g.cfg.Cluster,
		Time:     start,
		Method:   r.Method,
		Path:     r.URL.Path,
		Decision: Deny,
	}
	if !g.begin() {
		rec.Rule, rec.Reason = RuleClosed, "the gateway is closing"
		writeStatus(rw, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, rec.Reason, nil)
		g.finish(&rec, rw, nil, start)
		return
	}
	defer g.inflight.Done()

	var body *countingReader
	if !g.capable(r) {
		rec.Rule, rec.Reason = RuleCapability, "the request does not carry this call's capability"
		writeStatus(rw, http.StatusUnauthorized, metav1.StatusReasonUnauthorized, rec.Reason, nil)
		g.finish(&rec, rw, nil, start)
		return
	}
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler && !rw.wrote() {
				// A bug, in the Decider say: fail closed, and say so.
				g.log.Error("panic serving a request", "method", r.Method, "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
				rec.Decision, rec.Rule, rec.Reason = Deny, RuleInternalError, fmt.Sprintf("internal error: %v", p)
				writeStatus(rw, http.StatusInternalServerError, metav1.StatusReasonInternalError, "internal error in the gateway", nil)
				g.finish(&rec, rw, body, start)
				return
			}
			// net/http's way to cut a response short (the plugin or the
			// cluster went away mid-stream); audit, then let it through.
			if rec.Reason == "" {
				rec.Reason = "the response was cut short"
				if rw.failure != "" {
					rec.Reason = rw.failure
				}
			}
			g.finish(&rec, rw, body, start)
			panic(p)
		}
		g.finish(&rec, rw, body, start)
	}()

	if reason := checkRequest(r); reason != "" {
		rec.Rule, rec.Reason = RuleBadRequest, reason
		writeStatus(rw, http.StatusBadRequest, metav1.StatusReasonBadRequest, reason, nil)
		return
	}
	info, err := g.info.NewRequestInfo(r)
	if err != nil {
		rec.Rule, rec.Reason = RuleBadRequest, err.Error()
		writeStatus(rw, http.StatusBadRequest, metav1.StatusReasonBadRequest, rec.Reason, nil)
		return
	}
	req := Request{
		IsResourceRequest: info.IsResourceRequest,
		Path:              info.Path,
		Verb:              info.Verb,
		APIGroup:          info.APIGroup,
		APIVersion:        info.APIVersion,
		Resource:          info.Resource,
		Subresource:       info.Subresource,
		Namespace:         info.Namespace,
		Name:              info.Name,
	}
	rec.Verb, rec.APIGroup, rec.APIVersion = req.Verb, req.APIGroup, req.APIVersion
	rec.Resource, rec.Subresource, rec.Namespace, rec.Name = req.Resource, req.Subresource, req.Namespace, req.Name

	if n := headerBytes(r.Header); n > MaxHeaderBytes {
		rec.Rule, rec.Reason = RuleTooLarge, fmt.Sprintf("request headers of %d bytes are over the gateway's limit of %d", n, MaxHeaderBytes)
		writeStatus(rw, http.StatusRequestHeaderFieldsTooLarge, metav1.StatusReasonBadRequest, rec.Reason, nil)
		return
	}
	if r.ContentLength > MaxBodyBytes {
		rec.Rule, rec.Reason = RuleTooLarge, bodyTooLarge
		writeStatus(rw, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, rec.Reason, nil)
		return
	}

	d := g.cfg.Decide(req)
	rec.Rule = d.Rule
	if !d.Allowed {
		rec.Reason = d.Reason
		msg := d.Reason
		if d.Rule != "" {
			msg = fmt.Sprintf("%s (rule %s)", d.Reason, d.Rule)
		}
		var details *metav1.StatusDetails
		if req.IsResourceRequest {
			details = &metav1.StatusDetails{Name: req.Name, Group: req.APIGroup, Kind: req.Resource}
		}
		writeStatus(rw, http.StatusForbidden, metav1.StatusReasonForbidden, msg, details)
		return
	}

	upgrade := isUpgrade(r.Header)
	if upgrade && !canHijack(w) {
		rec.Rule, rec.Reason = RuleNoUpgrade, "this connection to the gateway cannot be upgraded (exec, attach and port-forward need HTTP/1.1)"
		writeStatus(rw, http.StatusBadRequest, metav1.StatusReasonBadRequest, rec.Reason, nil)
		return
	}
	if g.cfg.AuditReady != nil {
		if err := g.cfg.AuditReady(); err != nil {
			// Fail closed: what cannot be audited does not reach the cluster.
			rec.Rule, rec.Reason = RuleAuditUnavailable, "not forwarded: "+err.Error()
			writeStatus(rw, http.StatusServiceUnavailable, metav1.StatusReasonServiceUnavailable, "the server cannot audit this request, so it was not forwarded: "+err.Error(), nil)
			return
		}
	}
	rec.Decision = Allow

	if r.Body != nil && r.Body != http.NoBody {
		body = &countingReader{r: http.MaxBytesReader(rw, r.Body, MaxBodyBytes)}
		r.Body = body
	}
	rw.body = body
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(g.ctx, cancel)
	defer stop()
	out := r.WithContext(context.WithValue(ctx, recorderKey{}, rw))
	if upgrade {
		rw.done = ctx
		g.upgrade.ServeHTTP(rw, out)
	} else {
		g.proxy.ServeHTTP(rw, out)
	}
	if rw.failure != "" {
		rec.Reason = rw.failure
	}
}

// finish completes rec and audits it.
func (g *Gateway) finish(rec *Record, rw *recorder, body *countingReader, start time.Time) {
	rec.Status = rw.statusCode()
	rec.BytesOut = rw.bytesOut()
	rec.BytesIn = rw.bytesIn()
	if body != nil {
		rec.BytesIn += body.n.Load()
	}
	rec.LatencyMS = float64(time.Since(start).Microseconds()) / 1000
	if rec.Decision == Deny {
		g.log.Debug("denied", "method", rec.Method, "path", rec.Path, "rule", rec.Rule, "reason", rec.Reason)
	}
	g.cfg.Audit(*rec)
}

// rewrite sends the request to the upstream cluster, with no credential or
// identity of the plugin's own: the upstream transport adds the cluster's.
func (g *Gateway) rewrite(pr *httputil.ProxyRequest) {
	// Forward the path as parsed and decided, not a differently escaped
	// spelling of it that the cluster might split differently.
	pr.Out.URL.RawPath = ""
	pr.SetURL(g.upstream)
	h := pr.Out.Header
	h.Del("Authorization")
	h.Del("Proxy-Authorization")
	h.Del("Cookie")
	for k := range h {
		// Impersonate-User, -Group, -Uid, -Extra-*, and the headers of an
		// authenticating front proxy (X-Remote-User, -Group, -Extra-*).
		if strings.HasPrefix(k, "Impersonate-") || strings.HasPrefix(k, "X-Remote-") {
			delete(h, k)
		}
	}
	// Browsers' WebSocket bearer tokens ride in the subprotocol list.
	if protos := h.Values("Sec-Websocket-Protocol"); len(protos) > 0 {
		var keep []string
		for _, v := range protos {
			for p := range strings.SplitSeq(v, ",") {
				p = strings.TrimSpace(p)
				if p != "" && !strings.HasPrefix(p, "base64url.bearer.authorization.k8s.io.") {
					keep = append(keep, p)
				}
			}
		}
		h.Del("Sec-Websocket-Protocol")
		if len(keep) > 0 {
			h.Set("Sec-Websocket-Protocol", strings.Join(keep, ", "))
		}
	}
}

const bodyTooLarge = "the request body is over the gateway's limit of 8 MiB"

// upstreamError answers for a request that got no response from the cluster.
func (g *Gateway) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	rw, _ := w.(*recorder)
	if rw != nil && rw.body != nil && rw.body.tooLarge.Load() {
		rw.failure = bodyTooLarge
		writeStatus(w, http.StatusRequestEntityTooLarge, metav1.StatusReasonRequestEntityTooLarge, bodyTooLarge, nil)
		return
	}
	msg := fmt.Sprintf("cluster %q did not answer: %v", g.cfg.Cluster, err)
	switch {
	case g.ctx.Err() != nil:
		msg = "the gateway closed while waiting for cluster " + fmt.Sprintf("%q", g.cfg.Cluster)
	case r.Context().Err() != nil:
		msg = "the plugin went away while waiting for cluster " + fmt.Sprintf("%q", g.cfg.Cluster)
	default:
		g.log.Warn("cluster did not answer", "cluster", g.cfg.Cluster, "method", r.Method, "path", r.URL.Path, "error", err)
	}
	if rw != nil {
		rw.failure = msg
		if rw.wrote() {
			// Part of the response was sent already; all that is left is
			// to cut it short, which returning does.
			return
		}
	}
	writeStatus(w, http.StatusBadGateway, metav1.StatusReasonServiceUnavailable, msg, nil)
}

// servedKey marks the context of a request that came in on a listener.
type servedKey struct{}

// capable reports whether r may be served: it came in process, or the
// gateway asks for no capability, or r carries the capability.
func (g *Gateway) capable(r *http.Request) bool {
	if g.cfg.Capability == "" || r.Context().Value(servedKey{}) == nil {
		return true
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(token), []byte(g.cfg.Capability)) == 1
}

// checkRequest returns why r cannot be forwarded, or "".
func checkRequest(r *http.Request) string {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/") {
		return fmt.Sprintf("request path %q is not absolute", p)
	}
	// No "." or ".." segments and no empty ones: the path the Decider sees
	// must be the path the cluster serves.
	if clean := path.Clean(p); p != clean && p != clean+"/" || strings.HasPrefix(p, "//") {
		return fmt.Sprintf("request path %q is not in canonical form", p)
	}
	return ""
}

func isUpgrade(h http.Header) bool {
	for _, v := range h.Values("Connection") {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), "upgrade") {
				return true
			}
		}
	}
	return false
}

func headerBytes(h http.Header) int {
	n := 0
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}
