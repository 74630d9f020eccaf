package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// Rancher is a fake Rancher server on 127.0.0.1 with the two parts of its
// v3 API that a source of clusters uses, shaped as Rancher's API
// documentation describes them: GET /v3/clusters, a collection paged by
// pagination.next, and POST /v3/clusters/ID?action=generateKubeconfig,
// both behind a bearer token (401 for a wrong one). Its failures are
// switchable with SetFault.
type Rancher struct {
	// URL is the server's address, without /v3.
	URL string
	// Token is the API token it accepts.
	Token string

	srv    *httptest.Server
	closed chan struct{}

	mu        sync.Mutex
	clusters  []RancherCluster
	fault     RancherFault
	pageSize  int
	generated map[string]int
	requests  int
}

// RancherCluster is one cluster the fake lists.
type RancherCluster struct {
	ID    string
	Name  string
	State string
	// Kubeconfig is the YAML generateKubeconfig answers.
	Kubeconfig []byte
}

// RancherFault is how the fake misbehaves.
type RancherFault string

const (
	RancherHealthy RancherFault = ""
	// RancherUnauthorized answers 401 to every request, as for a revoked token.
	RancherUnauthorized RancherFault = "unauthorized"
	// RancherForbidden answers 403.
	RancherForbidden RancherFault = "forbidden"
	// RancherServerError answers 500.
	RancherServerError RancherFault = "server-error"
	// RancherHang never answers (until the client gives up or the test ends).
	RancherHang RancherFault = "hang"
	// RancherMalformed answers the list with JSON cut short.
	RancherMalformed RancherFault = "malformed"
	// RancherBadKubeconfig lists as usual, but generateKubeconfig answers a
	// config that does not parse.
	RancherBadKubeconfig RancherFault = "bad-kubeconfig"
)

// StartRancher starts a fake Rancher listing clusters, stopped when the
// test ends.
func StartRancher(t testing.TB, clusters ...RancherCluster) *Rancher {
	t.Helper()
	r := &Rancher{Token: "token-" + randomHex(3) + ":" + randomHex(24), closed: make(chan struct{}),
		generated: map[string]int{}, clusters: clusters}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	r.URL = r.srv.URL
	t.Cleanup(func() {
		close(r.closed) // ends hanging requests first: Close waits for them
		r.srv.Close()
	})
	return r
}

// SetClusters replaces the clusters the fake lists: leave one out to
// remove it from Rancher.
func (r *Rancher) SetClusters(clusters ...RancherCluster) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clusters = append([]RancherCluster(nil), clusters...)
}

// SetFault switches how the fake answers from now on.
func (r *Rancher) SetFault(f RancherFault) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fault = f
}

// SetPageSize makes the list answer n clusters a page (0: all at once).
func (r *Rancher) SetPageSize(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pageSize = n
}

// Generated is how many kubeconfigs the fake generated for a cluster id.
func (r *Rancher) Generated(id string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.generated[id]
}

// Requests is how many requests the fake has had.
func (r *Rancher) Requests() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.requests
}

// AsRancher is this test cluster as Rancher would list it under name: its
// generated kubeconfig reaches this cluster's API server with its token.
func (c *Cluster) AsRancher(id, name string) RancherCluster {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: c.Server, CertificateAuthorityData: c.CAData}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: c.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name}
	cfg.CurrentContext = name
	data, err := clientcmd.Write(*cfg)
	if err != nil {
		panic(err) // a config made here always encodes
	}
	return RancherCluster{ID: id, Name: name, State: "active", Kubeconfig: data}
}

func (r *Rancher) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.requests++
	fault, pageSize := r.fault, r.pageSize
	clusters := append([]RancherCluster(nil), r.clusters...)
	r.mu.Unlock()

	switch fault {
	case RancherHang:
		select {
		case <-req.Context().Done():
		case <-r.closed:
		}
		return
	case RancherUnauthorized:
		rancherError(w, http.StatusUnauthorized, "Unauthorized", "must authenticate")
		return
	case RancherForbidden:
		rancherError(w, http.StatusForbidden, "Forbidden", "clusters.management.cattle.io is forbidden")
		return
	case RancherServerError:
		rancherError(w, http.StatusInternalServerError, "ServerError", "Internal error occurred")
		return
	}
	if req.Header.Get("Authorization") != "Bearer "+r.Token {
		rancherError(w, http.StatusUnauthorized, "Unauthorized", "must authenticate")
		return
	}
	path := strings.TrimSuffix(req.URL.Path, "/")
	switch {
	case path == "/v3/clusters":
		if req.Method != http.MethodGet {
			rancherError(w, http.StatusMethodNotAllowed, "MethodNotAllow", "use GET")
			return
		}
		if fault == RancherMalformed {
			w.Header().Set("Content-Type", "application/json")
			fmt.Fprint(w, `{"type":"collection","data":[{"id":"c-`)
			return
		}
		r.list(w, req, clusters, pageSize)
	case strings.HasPrefix(path, "/v3/clusters/"):
		id := strings.TrimPrefix(path, "/v3/clusters/")
		if req.Method != http.MethodPost || req.URL.Query().Get("action") != "generateKubeconfig" {
			rancherError(w, http.StatusMethodNotAllowed, "InvalidAction", "only the generateKubeconfig action is served")
			return
		}
		for _, c := range clusters {
			if c.ID != id {
				continue
			}
			r.mu.Lock()
			r.generated[id]++
			r.mu.Unlock()
			config := string(c.Kubeconfig)
			if fault == RancherBadKubeconfig {
				config = "apiVersion: v1\nclusters: [\n"
			}
			writeRancherJSON(w, http.StatusOK, map[string]any{"type": "generateKubeconfigOutput", "baseType": "generateKubeconfigOutput", "config": config})
			return
		}
		rancherError(w, http.StatusNotFound, "NotFound", "clusters.management.cattle.io \""+id+"\" not found")
	default:
		rancherError(w, http.StatusNotFound, "NotFound", "not found")
	}
}

// list answers one page of the collection, from the cluster whose id is
// the marker on, with pagination.next naming the next page.
func (r *Rancher) list(w http.ResponseWriter, req *http.Request, clusters []RancherCluster, pageSize int) {
	q := req.URL.Query()
	if n, err := strconv.Atoi(q.Get("limit")); err == nil && n > 0 {
		pageSize = n
	}
	start := 0
	if marker := q.Get("marker"); marker != "" {
		start = len(clusters)
		for i, c := range clusters {
			if c.ID == marker {
				start = i
			}
		}
	}
	end := len(clusters)
	if pageSize > 0 && start+pageSize < end {
		end = start + pageSize
	}
	self := r.URL + "/v3/clusters"
	data := []map[string]any{}
	for _, c := range clusters[start:end] {
		link := self + "/" + c.ID
		data = append(data, map[string]any{
			"id": c.ID, "type": "cluster", "baseType": "cluster", "name": c.Name, "state": c.State,
			"transitioning": "no", "internal": false, "driver": "imported",
			"links":   map[string]string{"self": link, "nodes": link + "/nodes"},
			"actions": map[string]string{"generateKubeconfig": link + "?action=generateKubeconfig"},
		})
	}
	pagination := map[string]any{"total": len(clusters)}
	if pageSize > 0 {
		pagination["limit"] = pageSize
		if end < len(clusters) {
			pagination["next"] = fmt.Sprintf("%s?limit=%d&marker=%s", self, pageSize, clusters[end].ID)
			pagination["partial"] = true
		}
	}
	writeRancherJSON(w, http.StatusOK, map[string]any{
		"type": "collection", "resourceType": "cluster",
		"links":       map[string]string{"self": self},
		"createTypes": map[string]string{"cluster": self},
		"actions":     map[string]string{},
		"pagination":  pagination,
		"sort":        map[string]any{"order": "asc", "reverse": self + "?order=desc"},
		"filters":     map[string]any{},
		"data":        data,
	})
}

func rancherError(w http.ResponseWriter, status int, code, message string) {
	writeRancherJSON(w, status, map[string]any{"type": "error", "baseType": "error", "status": status, "code": code, "message": message})
}

func writeRancherJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
