package mcpserver

import (
	"net/http"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/clusters"
)

// Health is what /health and /healthz answer.
type Health struct {
	Status         string   `json:"status"`
	Version        string   `json:"version"`
	Plugins        int      `json:"plugins"`
	Tools          int      `json:"tools"`
	Sandbox        string   `json:"sandbox"`
	WasmSandbox    bool     `json:"wasm_sandbox"`
	Clusters       []string `json:"clusters"`
	DefaultCluster string   `json:"default_cluster"`
	// Audit is "ok" or why audit records cannot be written; absent
	// without an audit file.
	Audit string `json:"audit,omitempty"`
	// Rancher is how the last refresh of Rancher's clusters went; absent
	// without rancher_url.
	Rancher *clusters.SourceStatus `json:"rancher,omitempty"`
}

// Health reports the server's state: "ok", or "shutting_down" once
// Shutdown has begun (new calls are refused), its plugins, tools, the
// sandbox backend of native plugins ("unavailable" when they cannot run),
// whether WebAssembly plugins run, the clusters as they are now, and how
// Rancher's last refresh went.
func (s *Server) Health() Health {
	status := "ok"
	if s.stopping.Load() {
		status = "shutting_down"
	}
	names, def := s.clusterNames()
	h := Health{
		Status:         status,
		Version:        s.version,
		Plugins:        len(s.rt.Plugins()),
		Tools:          len(s.Tools()),
		Sandbox:        s.sandboxName(),
		WasmSandbox:    s.rt.Sandbox().Wasm,
		Clusters:       names,
		DefaultCluster: def,
		Audit:          s.rt.AuditState(),
	}
	if st, ok := s.rt.ClusterSources()[clusters.RancherSource]; ok {
		h.Rancher = &st
	}
	return h
}

// httpHealth is what /health answers over HTTP: the server's Health and
// how its HTTP endpoint is guarded.
type httpHealth struct {
	Health
	// Auth is the authentication of /mcp, /sse and /message:
	// "bearer_token", "oauth" or "none".
	Auth string `json:"auth"`
	// Warning says the endpoint is unauthenticated beyond loopback
	// (InsecureListen).
	Warning string `json:"warning,omitempty"`
}

// publicHealth is what /health tells a request without valid credentials
// while authentication is on: enough for a probe (the status, and 200 or
// 503), nothing of the plugins, tools or clusters.
type publicHealth struct {
	Status string `json:"status"`
	Auth   string `json:"auth"`
}

// insecureWarning is the warning of an unauthenticated endpoint beyond
// loopback, or "".
func (h *httpHandler) insecureWarning() string {
	if !h.exposed || h.s.guard.opts.authMode() != "none" {
		return ""
	}
	return "the HTTP endpoint is UNAUTHENTICATED and listens beyond loopback (insecure listen): anyone who reaches it can run plugins against the clusters"
}

func (h *httpHandler) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	health := h.s.Health()
	code := http.StatusOK
	if health.Status != "ok" {
		// A load balancer or readiness probe stops sending calls here.
		code = http.StatusServiceUnavailable
	}
	auth := h.s.guard.opts.authMode()
	if h.s.guard.authenticate(r.Context(), r) != nil {
		writeJSON(w, code, publicHealth{Status: health.Status, Auth: auth})
		return
	}
	writeJSON(w, code, httpHealth{Health: health, Auth: auth, Warning: h.insecureWarning()})
}
