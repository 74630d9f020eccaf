package clusters

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/internal/flock"
)

// RancherSource is the name of the Rancher source in Registry.Sources.
const RancherSource = "rancher"

// Files of the Rancher source in its folder besides the kubeconfigs. They
// are hidden, so a kubeconfig_dir that is the same folder skips them.
const (
	manifestFile = ".kubernetes-mcp-server-rancher.json"
	lockFile     = ".kubernetes-mcp-server-rancher.lock"
	tempPrefix   = ".kubernetes-mcp-server-rancher.tmp-"
)

// Bounds of what Rancher may send: a page of clusters, one kubeconfig.
const (
	maxListBytes       = 32 << 20
	maxKubeconfigBytes = 8 << 20
	maxPages           = 1000
)

// RancherOptions configure a Rancher source of clusters.
type RancherOptions struct {
	// URL is Rancher's address, such as https://rancher.example.com (a
	// trailing /v3 is dropped). http is accepted on loopback only: the
	// token travels with every request.
	URL string
	// Token is a Rancher API token, sent as a bearer token.
	Token string
	// TokenFile holds the token instead; it is read again on every
	// refresh, so a rotated secret is picked up.
	TokenFile string
	// Dir receives one kubeconfig per cluster, NAME.yaml (mode 0600), and
	// the list of the files this source wrote.
	Dir string
	// Interval is how often Run refreshes.
	Interval time.Duration
	// AutoRefresh keeps Run refreshing every Interval; without it Run
	// returns once a refresh has succeeded.
	AutoRefresh bool
	// Timeout bounds each request to Rancher; 30 s when zero.
	Timeout time.Duration
	// RetryMin is Run's first wait after a failed refresh, doubled after
	// each further failure up to Interval; 10 s when zero.
	RetryMin time.Duration
	// MaxAge is how long a generated kubeconfig is used before a refresh
	// generates it anew; 24 h when zero. Rancher makes a token for each one
	// it generates, so a refresh does not generate them every time.
	MaxAge time.Duration
	Logger hclog.Logger
}

// Rancher is a source of clusters: every cluster a Rancher server lists,
// each with a kubeconfig Rancher generates, kept in a folder so that a
// restart that cannot reach Rancher still has them.
type Rancher struct {
	opts   RancherOptions
	base   string // scheme://host[:port][/path], without /v3
	host   string // the only host the token is sent to
	client *http.Client
	log    hclog.Logger

	// owned are the files of the folder this source wrote, as listed when
	// it was made; Load reads none of them as a file cluster.
	owned map[string]bool

	mu     sync.Mutex // one refresh at a time; guards the fields below
	reg    *Registry
	have   map[string]*rancherCluster // by cluster name
	status SourceStatus
	// warnings are what the last refresh (or the load) left out, and why.
	warnings []string
	// finished is when the last refresh got as far as writing its list.
	finished time.Time
}

// rancherCluster is one cluster of the source and where its kubeconfig came from.
type rancherCluster struct {
	id        string
	generated time.Time
	cluster   *Cluster
}

// manifest lists the kubeconfigs this source wrote, so that it removes only
// its own files and, after a restart, knows its last good set.
type manifest struct {
	URL         string                   `json:"rancher_url"`
	LastSuccess *time.Time               `json:"last_success,omitempty"`
	Clusters    map[string]manifestEntry `json:"clusters"`
}

type manifestEntry struct {
	ID        string    `json:"id"`
	File      string    `json:"file"`
	Generated time.Time `json:"generated"`
}

// NewRancher checks the options, makes the folder and reads the clusters
// an earlier run wrote there. It asks Rancher nothing: Refresh does.
func NewRancher(opts RancherOptions) (*Rancher, error) {
	base, host, err := rancherBase(opts.URL)
	if err != nil {
		return nil, err
	}
	if opts.Dir == "" {
		return nil, errors.New("rancher: config_dir is empty: name the folder for the kubeconfigs of Rancher's clusters")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 30 * time.Second
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 10 * time.Second
	}
	if opts.MaxAge <= 0 {
		opts.MaxAge = 24 * time.Hour
	}
	if opts.Interval <= 0 {
		opts.Interval = 10 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = hclog.NewNullLogger()
	}
	r := &Rancher{opts: opts, base: base, host: host, log: opts.Logger, owned: map[string]bool{},
		have: map[string]*rancherCluster{}, status: SourceStatus{Status: "pending"}}
	if _, err := r.token(); err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	r.client = &http.Client{Transport: transport, Timeout: opts.Timeout,
		CheckRedirect: func(req *http.Request, _ []*http.Request) error {
			// The token goes to Rancher's own host and nowhere else.
			if req.URL.Host != r.host {
				return fmt.Errorf("redirect to %s refused: the token is only sent to %s", req.URL.Host, r.host)
			}
			return nil
		}}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("rancher: config_dir: %w", err)
	}
	r.removeTemps()
	m, err := r.readManifest()
	if err != nil {
		r.log.Warn("rancher: the list of files written by an earlier run cannot be read; starting without them", "error", err)
	}
	for name, e := range m.Clusters {
		r.owned[e.File] = true
		if m.URL != r.base {
			continue // another Rancher's clusters: removed by the first refresh
		}
		rc, err := r.loadFile(name, e)
		if err != nil {
			r.warnings = append(r.warnings, fmt.Sprintf("cluster %q of an earlier run is left out: %v", name, err))
			continue
		}
		r.have[name] = rc
	}
	if m.URL == r.base {
		r.status.LastSuccess = m.LastSuccess
	}
	r.status.Clusters = len(r.have)
	return r, nil
}

// rancherBase checks Rancher's URL and returns it without a trailing /v3,
// and its host.
func rancherBase(raw string) (string, string, error) {
	if raw == "" {
		return "", "", errors.New("rancher: rancher_url is empty")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return "", "", fmt.Errorf("rancher: rancher_url: %w", err)
	}
	switch {
	case u.Host == "":
		return "", "", fmt.Errorf("rancher: rancher_url %q has no host: write it like https://rancher.example.com", raw)
	case u.User != nil:
		return "", "", errors.New("rancher: rancher_url must not hold credentials: set rancher_token (or PLUGINS_RANCHER_TOKEN, or rancher_token_file)")
	case u.RawQuery != "" || u.Fragment != "":
		return "", "", fmt.Errorf("rancher: rancher_url %q: no query or fragment, please", raw)
	case u.Scheme == "https":
	case u.Scheme == "http" && isLoopback(u.Hostname()):
	case u.Scheme == "http":
		return "", "", fmt.Errorf("rancher: rancher_url %q: use https; the token would cross the network in the clear (http is accepted on loopback only)", raw)
	default:
		return "", "", fmt.Errorf("rancher: rancher_url %q: the scheme must be https", raw)
	}
	path := strings.TrimSuffix(strings.TrimSuffix(u.Path, "/"), "/v3")
	return u.Scheme + "://" + u.Host + strings.TrimSuffix(path, "/"), u.Host, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// token is the token for the next requests, from the options or read
// again from its file.
func (r *Rancher) token() (string, error) {
	if r.opts.TokenFile == "" {
		if r.opts.Token == "" {
			return "", errors.New("rancher: rancher_url is set but there is no token: set rancher_token, PLUGINS_RANCHER_TOKEN or rancher_token_file")
		}
		return r.opts.Token, nil
	}
	if r.opts.Token != "" {
		return "", errors.New("rancher: rancher_token and rancher_token_file exclude each other: set one")
	}
	return readTokenFile(r.opts.TokenFile)
}

// readTokenFile reads a token from a file only its owner may write and
// others may not read.
func readTokenFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("rancher: rancher_token_file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("rancher: rancher_token_file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("rancher: rancher_token_file %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o026 != 0 {
		return "", fmt.Errorf("rancher: rancher_token_file %s: mode %04o lets others read it or others than its owner write it; run chmod 600 %s", path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, 64<<10+1))
	if err != nil {
		return "", fmt.Errorf("rancher: rancher_token_file %s: %w", path, err)
	}
	token := strings.TrimSpace(string(data))
	switch {
	case len(data) > 64<<10:
		return "", fmt.Errorf("rancher: rancher_token_file %s: over 64 KiB: it holds more than a token", path)
	case token == "":
		return "", fmt.Errorf("rancher: rancher_token_file %s is empty", path)
	case strings.ContainsAny(token, " \t\r\n"):
		return "", fmt.Errorf("rancher: rancher_token_file %s: the token has spaces or several lines: one token only", path)
	}
	return token, nil
}

// owns reports whether file is one this source wrote to its folder.
func (r *Rancher) owns(file string) bool {
	if !r.owned[filepath.Base(file)] {
		return false
	}
	a, errA := os.Stat(filepath.Dir(file))
	b, errB := os.Stat(r.opts.Dir)
	return errA == nil && errB == nil && os.SameFile(a, b)
}

// attach makes the clusters of the earlier run the registry's Rancher set.
func (r *Rancher) attach(reg *Registry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reg = reg
	r.publish()
}

// publish hands the set to the registry and reports the status, with the
// warnings of the last refresh (or load) and the clashes the registry finds.
func (r *Rancher) publish() {
	set := make([]*Cluster, 0, len(r.have))
	for _, name := range slices.Sorted(maps.Keys(r.have)) {
		set = append(set, r.have[name].cluster)
	}
	kept, err := r.reg.replace(RancherSource, set)
	r.status.Warnings = append([]string{}, r.warnings...)
	if err != nil {
		r.status.Warnings = append(r.status.Warnings, strings.Split(err.Error(), "\n")...)
	}
	r.status.Clusters = kept
	r.reg.report(RancherSource, r.status)
}

// Status is how the last refresh went.
func (r *Rancher) Status() SourceStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	st := r.status
	st.Warnings = append([]string(nil), st.Warnings...)
	return st
}

// Run refreshes every Interval until ctx ends (after a failure sooner,
// from RetryMin on); without AutoRefresh it returns once a refresh has
// succeeded. A failed refresh keeps the last good set.
func (r *Rancher) Run(ctx context.Context) {
	wait, backoff := r.opts.Interval, r.opts.RetryMin
	if r.Status().Status != "ok" {
		wait = backoff // the first fetch failed: try again soon
	} else if !r.opts.AutoRefresh {
		return
	}
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := r.Refresh(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			wait, backoff = backoff, min(2*backoff, r.opts.Interval)
			continue
		}
		if !r.opts.AutoRefresh {
			return
		}
		wait, backoff = r.opts.Interval, r.opts.RetryMin
	}
}

// Refresh asks Rancher for its clusters once: it generates the kubeconfig
// of each active cluster that has none yet (or whose kubeconfig is older
// than MaxAge), writes it to the folder, removes the files of clusters
// Rancher no longer lists, and makes the result the registry's Rancher set.
// When the list cannot be had, nothing changes; when one cluster's
// kubeconfig cannot be had, that cluster keeps its last good one (or stays
// out). Either way the error is reported in the registry's Sources and
// returned; it never holds the token.
func (r *Rancher) Refresh(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reg == nil {
		return errors.New("rancher: Refresh before Load: pass the source in clusters.Options")
	}
	before := slices.Sorted(maps.Keys(r.have))
	r.finished = time.Time{}
	token, err := r.token()
	if err == nil {
		err = r.refresh(ctx, token)
		err = scrub(err, token)
	}
	now := r.finished // the time the manifest records, when it was written
	if now.IsZero() {
		now = time.Now()
	}
	r.status.LastAttempt = &now
	if err != nil {
		r.status.Status, r.status.Error = "error", err.Error()
		r.log.Warn("rancher: refresh failed; the last good set of clusters stays", "error", err, "clusters", len(r.have))
	} else {
		r.status.Status, r.status.Error, r.status.LastSuccess = "ok", "", &now
	}
	r.publish()
	for _, w := range r.status.Warnings {
		r.log.Warn("rancher: " + w)
	}
	if after := slices.Sorted(maps.Keys(r.have)); strings.Join(before, ",") != strings.Join(after, ",") {
		r.log.Info("rancher: clusters changed", "clusters", strings.Join(after, ","), "before", strings.Join(before, ","))
	}
	return err
}

// rancherItem is the part of a Rancher cluster resource this source reads.
type rancherItem struct {
	ID    string `json:"id"`
	Name  string `json:"name"`
	State string `json:"state"`
}

func (r *Rancher) refresh(ctx context.Context, token string) error {
	unlock, err := r.lock(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	items, err := r.list(ctx, token)
	if err != nil {
		return err
	}
	m, err := r.readManifest()
	if err != nil {
		// Without it this source cannot tell its files from others': it
		// writes no file over one that exists, and removes none.
		r.log.Warn("rancher: the list of files this server wrote cannot be read; it is written anew", "error", err)
	}
	sort.Slice(items, func(i, j int) bool {
		if items[i].Name != items[j].Name {
			return items[i].Name < items[j].Name
		}
		return items[i].ID < items[j].ID
	})
	var warnings []string
	var errs []error
	next := map[string]*rancherCluster{}
	for _, it := range items {
		if err := checkClusterName(it.Name); err != nil {
			warnings = append(warnings, fmt.Sprintf("Rancher cluster %s is left out: %v", it.ID, err))
			continue
		}
		if prev, dup := next[it.Name]; dup {
			warnings = append(warnings, fmt.Sprintf("Rancher cluster %s is left out: its name %q is also the name of %s", it.ID, it.Name, prev.id))
			continue
		}
		if other := r.reg.taken(RancherSource, it.Name); other != nil {
			warnings = append(warnings, fmt.Sprintf("Rancher cluster %q (%s) is left out: the name is taken by %s, which is kept", it.Name, it.ID, other.Source))
			continue
		}
		rc, warning, err := r.resolve(ctx, it, token, &m)
		if warning != "" {
			warnings = append(warnings, warning)
		}
		if err != nil {
			errs = append(errs, err)
		}
		if rc != nil {
			next[it.Name] = rc
		}
	}
	// Files of clusters that are gone (or left out) go too, but only those
	// this source wrote.
	for name, e := range m.Clusters {
		if next[name] != nil && e.File == fileFor(name) {
			continue
		}
		if err := os.Remove(filepath.Join(r.opts.Dir, e.File)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("rancher: remove the kubeconfig of %q: %w", name, err))
			continue
		}
		delete(m.Clusters, name)
		delete(r.owned, e.File)
	}
	for name, rc := range next {
		if _, ok := m.Clusters[name]; !ok {
			// Kept from memory while the list of files was lost: it is ours.
			m.Clusters[name] = manifestEntry{ID: rc.id, File: fileFor(name), Generated: rc.generated}
			r.owned[fileFor(name)] = true
		}
	}
	r.have = next
	r.finished = time.Now()
	if len(errs) == 0 {
		m.LastSuccess = &r.finished
	}
	if err := r.writeManifest(m); err != nil {
		errs = append(errs, err)
	}
	r.warnings = warnings
	return errors.Join(errs...)
}

// resolve finds one listed cluster its kubeconfig: the one in memory or in
// the folder when it is fresh, else a new one from Rancher.
func (r *Rancher) resolve(ctx context.Context, it rancherItem, token string, m *manifest) (*rancherCluster, string, error) {
	cur := r.have[it.Name]
	if cur != nil && cur.id != it.ID {
		cur = nil // a new cluster of the same name
	}
	file := fileFor(it.Name)
	if e, ok := m.Clusters[it.Name]; ok && m.URL == r.base && e.ID == it.ID && e.File == file && time.Since(e.Generated) < r.opts.MaxAge {
		if _, err := os.Stat(filepath.Join(r.opts.Dir, file)); err == nil {
			if cur != nil && cur.generated.Equal(e.Generated) {
				return cur, "", nil
			}
			if rc, err := r.loadFile(it.Name, e); err == nil {
				return rc, "", nil
			}
		}
	}
	if it.State != "active" {
		if cur != nil {
			return cur, "", nil // it may come back; its kubeconfig stays
		}
		return nil, fmt.Sprintf("Rancher cluster %q (%s) is left out until it is active (state %q)", it.Name, it.ID, it.State), nil
	}
	rc, err := r.generate(ctx, it, token, m)
	if err != nil {
		if cur != nil {
			return cur, "", fmt.Errorf("%w (its last good kubeconfig stays in use)", err)
		}
		return nil, "", err
	}
	return rc, "", nil
}

func fileFor(name string) string { return name + ".yaml" }

var clusterName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)

// checkClusterName refuses names that cannot be a file name of the folder
// or that read badly as a tool argument.
func checkClusterName(name string) error {
	if !clusterName.MatchString(name) {
		return fmt.Errorf("its name %q is not a usable cluster name (letters, digits, '.', '_' and '-', starting and ending with a letter or digit)", name)
	}
	return nil
}

// list reads every page of GET /v3/clusters.
func (r *Rancher) list(ctx context.Context, token string) ([]rancherItem, error) {
	var items []rancherItem
	next := r.base + "/v3/clusters"
	seen := map[string]bool{}
	for page := 0; next != ""; page++ {
		if page == maxPages || seen[next] {
			return nil, fmt.Errorf("rancher: list clusters: pagination does not end (%d pages)", page)
		}
		seen[next] = true
		var coll struct {
			Type       string        `json:"type"`
			Data       []rancherItem `json:"data"`
			Pagination *struct {
				Next string `json:"next"`
			} `json:"pagination"`
		}
		if err := r.do(ctx, http.MethodGet, next, token, nil, maxListBytes, &coll); err != nil {
			return nil, fmt.Errorf("rancher: list clusters: %w", err)
		}
		if coll.Type != "collection" {
			return nil, fmt.Errorf("rancher: list clusters: the answer is not a collection (type %q)", coll.Type)
		}
		for _, it := range coll.Data {
			if it.ID == "" {
				return nil, fmt.Errorf("rancher: list clusters: a cluster without an id (name %q)", it.Name)
			}
		}
		items = append(items, coll.Data...)
		next = ""
		if coll.Pagination != nil && coll.Pagination.Next != "" {
			u, err := url.Parse(coll.Pagination.Next)
			if err != nil || u.Host != r.host || u.Scheme != strings.SplitN(r.base, ":", 2)[0] {
				return nil, fmt.Errorf("rancher: list clusters: pagination.next %q is not on %s; the token is only sent there", coll.Pagination.Next, r.host)
			}
			next = u.String()
		}
	}
	return items, nil
}

// generate asks Rancher for a cluster's kubeconfig, checks that it gives a
// usable cluster, and writes it to the folder.
func (r *Rancher) generate(ctx context.Context, it rancherItem, token string, m *manifest) (*rancherCluster, error) {
	file := fileFor(it.Name)
	path := filepath.Join(r.opts.Dir, file)
	if e, ours := m.Clusters[it.Name]; !ours || e.File != file {
		if _, err := os.Lstat(path); err == nil && !r.owned[file] {
			return nil, fmt.Errorf("rancher: cluster %q (%s): %s exists and this server did not write it; it is left alone", it.Name, it.ID, path)
		}
	}
	var out struct {
		Type   string `json:"type"`
		Config string `json:"config"`
	}
	action := r.base + "/v3/clusters/" + url.PathEscape(it.ID) + "?action=generateKubeconfig"
	if err := r.do(ctx, http.MethodPost, action, token, []byte("{}"), maxKubeconfigBytes, &out); err != nil {
		return nil, fmt.Errorf("rancher: cluster %q (%s): generate kubeconfig: %w", it.Name, it.ID, err)
	}
	if out.Config == "" {
		return nil, fmt.Errorf("rancher: cluster %q (%s): generate kubeconfig: the answer has no config (type %q)", it.Name, it.ID, out.Type)
	}
	generated := time.Now().UTC()
	c, err := buildCluster(it.Name, it.ID, path, []byte(out.Config))
	if err != nil {
		return nil, err
	}
	// The list first, then the file: a file is never there without the
	// list naming it, so it is never taken for someone else's.
	m.URL = r.base
	if m.Clusters == nil {
		m.Clusters = map[string]manifestEntry{}
	}
	m.Clusters[it.Name] = manifestEntry{ID: it.ID, File: file, Generated: generated}
	r.owned[file] = true
	if err := r.writeManifest(*m); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(r.opts.Dir, file, []byte(out.Config)); err != nil {
		return nil, fmt.Errorf("rancher: cluster %q: %w", it.Name, err)
	}
	return &rancherCluster{id: it.ID, generated: generated, cluster: c}, nil
}

// buildCluster makes the Cluster of a kubeconfig from Rancher: its current
// context, or its only one.
func buildCluster(name, id, path string, data []byte) (*Cluster, error) {
	cfg, err := clientcmd.Load(data)
	if err != nil {
		return nil, fmt.Errorf("rancher: cluster %q (%s): the kubeconfig does not parse: %w", name, id, err)
	}
	ctx := cfg.CurrentContext
	if ctx == "" && len(cfg.Contexts) == 1 {
		for only := range cfg.Contexts {
			ctx = only
		}
	}
	if _, ok := cfg.Contexts[ctx]; !ok {
		return nil, fmt.Errorf("rancher: cluster %q (%s): the kubeconfig has %d contexts and no usable current-context", name, id, len(cfg.Contexts))
	}
	return newCluster(name, fmt.Sprintf("Rancher cluster %s (%s)", id, path), cfg, ctx)
}

// loadFile reads a kubeconfig this source wrote earlier.
func (r *Rancher) loadFile(name string, e manifestEntry) (*rancherCluster, error) {
	path := filepath.Join(r.opts.Dir, e.File)
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := buildCluster(name, e.ID, path, data)
	if err != nil {
		return nil, err
	}
	return &rancherCluster{id: e.ID, generated: e.Generated, cluster: c}, nil
}

// do sends one request to Rancher and decodes its JSON answer into out.
func (r *Rancher) do(ctx context.Context, method, target, token string, body []byte, limit int64, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, target, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return apiError(resp)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return fmt.Errorf("%s %s: read the answer: %w", method, req.URL.Path, err)
	}
	if int64(len(data)) > limit {
		return fmt.Errorf("%s %s: the answer is over %d MiB", method, req.URL.Path, limit>>20)
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: malformed JSON: %w", method, req.URL.Path, err)
	}
	return nil
}

// apiError describes an answer other than 2xx with Rancher's error body
// ({"type":"error","code":...,"message":...}) when it has one.
func apiError(resp *http.Response) error {
	data, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	msg := fmt.Sprintf("%s %s: %s", resp.Request.Method, resp.Request.URL.Path, resp.Status)
	var e struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	}
	if json.Unmarshal(data, &e) == nil && (e.Code != "" || e.Message != "") {
		text := strings.TrimSpace(e.Code + ": " + e.Message)
		if len(text) > 200 {
			text = text[:200] + "..."
		}
		msg += " (" + strings.Trim(text, ": ") + ")"
	}
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		msg += "; the token was refused: check rancher_token"
	case http.StatusForbidden:
		msg += "; the token's user may not do this"
	}
	return errors.New(msg)
}

// scrub takes the token, and the secret part of a Rancher token
// ("token-xxxxx:secret"), out of an error's text.
func scrub(err error, token string) error {
	if err == nil || token == "" {
		return err
	}
	text := err.Error()
	secrets := []string{token}
	if _, secret, ok := strings.Cut(token, ":"); ok && len(secret) >= 8 {
		secrets = append(secrets, secret)
	}
	clean := text
	for _, s := range secrets {
		clean = strings.ReplaceAll(clean, s, "<redacted>")
	}
	if clean == text {
		return err
	}
	return &scrubbed{text: clean, err: err}
}

// scrubbed is an error whose text no longer holds the token; errors.Is
// still sees the cause (a deadline, say).
type scrubbed struct {
	text string
	err  error
}

func (e *scrubbed) Error() string { return e.text }
func (e *scrubbed) Unwrap() error { return e.err }

func (r *Rancher) readManifest() (manifest, error) {
	m := manifest{Clusters: map[string]manifestEntry{}}
	data, err := os.ReadFile(filepath.Join(r.opts.Dir, manifestFile))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("rancher: %w", err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return manifest{Clusters: map[string]manifestEntry{}}, fmt.Errorf("rancher: %s: %w", manifestFile, err)
	}
	if m.Clusters == nil {
		m.Clusters = map[string]manifestEntry{}
	}
	for name, e := range m.Clusters {
		// Only plain names of this folder: the list is never a way to
		// remove files elsewhere.
		if e.File != fileFor(name) || checkClusterName(name) != nil {
			delete(m.Clusters, name)
		}
	}
	return m, nil
}

func (r *Rancher) writeManifest(m manifest) error {
	m.URL = r.base
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("rancher: %w", err)
	}
	if err := writeFileAtomic(r.opts.Dir, manifestFile, append(data, '\n')); err != nil {
		return fmt.Errorf("rancher: %w", err)
	}
	return nil
}

// writeFileAtomic writes dir/name with mode 0600 through a temporary file
// and a rename, so that a reader sees the old file or the new one, whole.
func writeFileAtomic(dir, name string, data []byte) error {
	f, err := os.CreateTemp(dir, tempPrefix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	tmp := f.Name()
	err = f.Chmod(0o600)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, name))
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", name, err)
	}
	if d, err := os.Open(dir); err == nil {
		d.Sync() // the rename itself survives a crash
		d.Close()
	}
	return nil
}

// removeTemps removes temporary files a crashed run left.
func (r *Rancher) removeTemps() {
	matches, _ := filepath.Glob(filepath.Join(r.opts.Dir, tempPrefix+"*"))
	for _, m := range matches {
		os.Remove(m)
	}
}

// lock takes the folder for one refresh, so that a server and a command
// (config show, profile show) sharing it never interleave their writes.
func (r *Rancher) lock(ctx context.Context) (func(), error) {
	unlock, err := flock.Lock(ctx, filepath.Join(r.opts.Dir, lockFile))
	if err != nil {
		return nil, fmt.Errorf("rancher: lock config_dir: %w", err)
	}
	return unlock, nil
}
