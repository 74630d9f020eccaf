package mcpserver

import "net/http"

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
}

// Health reports the server's state: "ok", or "shutting_down" once
// Shutdown has begun (new calls are refused), its plugins, tools, the
// sandbox backend of native plugins ("unavailable" when they cannot run),
// whether WebAssembly plugins run, and clusters.
func (s *Server) Health() Health {
	status := "ok"
	if s.stopping.Load() {
		status = "shutting_down"
	}
	return Health{
		Status:         status,
		Version:        s.version,
		Plugins:        len(s.rt.Plugins()),
		Tools:          len(s.Tools()),
		Sandbox:        s.sandboxName(),
		WasmSandbox:    s.rt.Sandbox().Wasm,
		Clusters:       s.clusters,
		DefaultCluster: s.defaultCluster,
	}
}

func (s *Server) serveHealth(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use GET"})
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	h := s.Health()
	code := http.StatusOK
	if h.Status != "ok" {
		// A load balancer or readiness probe stops sending calls here.
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, h)
}
