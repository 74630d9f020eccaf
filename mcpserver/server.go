package mcpserver

import (
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/discovery"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// Name is the server's name in the MCP handshake.
const Name = "kubernetes-mcp-server"

// Options are what a Server needs.
type Options struct {
	Runtime *runtime.Runtime
	Logger  hclog.Logger
	// Clusters fixes the clusters' names of tool descriptions and /health
	// (tests). Nil, the usual, reads them live from the runtime, whose
	// clusters change when Rancher's do.
	Clusters []string
	// DefaultCluster is the cluster a call without one goes to. It is only
	// read when Clusters is set; otherwise the runtime's default is used.
	DefaultCluster string
	Version        string
	// HTTP guards the HTTP transports: authentication and the Origin
	// allow list.
	HTTP HTTPOptions
	// Metrics, when set, is served at /metrics over HTTP, behind the same
	// authentication as MCP: its labels name plugins and clusters.
	Metrics http.Handler
}

// Server is the MCP front end of one runtime: the plugins_* management
// tools and one plugin_* tool per allowed plugin.
type Server struct {
	rt  *runtime.Runtime
	log hclog.Logger
	mcp *server.MCPServer
	// fixed holds Options.Clusters; without it the names are the runtime's.
	fixed   *fixedClusters
	version string
	metrics http.Handler

	resultSchema json.RawMessage // outputSchema of plugins_execute

	guard           *guard        // Origin and authentication of the HTTP transports
	bodyReadTimeout time.Duration // for one HTTP request body

	calls    *inflight     // tools/call requests and handlers not yet done
	stopping atomic.Bool   // Shutdown has begun
	stopOnce sync.Once     // closes stopped
	stopped  chan struct{} // closed when the first Shutdown returns

	syncMu sync.Mutex            // one SyncTools at a time
	mu     sync.Mutex            // guards the fields below
	tools  map[string]toolDigest // tool name -> the digest of its definition as served, to tell changes
	owners map[string]string     // plugin_* tool name -> the plugin it runs

	clientLogs *clientLogs // which sessions asked for log notifications
}

// New builds a Server, registers its tools and follows the runtime's
// discoveries. It serves nothing until ServeStdio or ServeHTTP.
func New(opts Options) (*Server, error) {
	if opts.Runtime == nil {
		return nil, errors.New("mcpserver: Options.Runtime is required")
	}
	log := opts.Logger
	if log == nil {
		log = hclog.NewNullLogger()
	}
	version := opts.Version
	if version == "" {
		version = "dev"
	}
	schema, err := resultSchema()
	if err != nil {
		return nil, fmt.Errorf("mcpserver: %w", err)
	}
	g, err := newGuard(opts.HTTP)
	if err != nil {
		return nil, fmt.Errorf("mcpserver: %w", err)
	}
	s := &Server{rt: opts.Runtime, log: log, version: version, tools: map[string]toolDigest{},
		resultSchema: schema, calls: newInflight(), stopped: make(chan struct{}),
		guard: g, bodyReadTimeout: bodyReadTimeout, metrics: opts.Metrics,
		clientLogs: &clientLogs{asked: map[string]bool{}}}
	if opts.Clusters != nil {
		s.fixed = &fixedClusters{names: append([]string{}, opts.Clusters...), def: opts.DefaultCluster}
	}
	s.mcp = server.NewMCPServer(Name, version,
		server.WithToolCapabilities(true),
		server.WithRecovery(),
		server.WithOutputSchemaValidation(),
		server.WithToolHandlerMiddleware(s.trackHandler),
		server.WithInstructions(s.instructions()),
		server.WithTitle("Kubernetes MCP server: kubectl plugins"),
		server.WithLogging(),
		server.WithHooks(s.clientLogs.hooks()),
		server.WithResourceCapabilities(false, false),
	)
	s.addResources()
	s.SyncTools()
	opts.Runtime.Subscribe(func([]discovery.Event) { s.SyncTools() })
	// The descriptions name the clusters: a change of them is a change of
	// the tools, and clients hear of it through list_changed.
	opts.Runtime.SubscribeClusters(s.SyncTools)
	return s, nil
}

type fixedClusters struct {
	names []string
	def   string
}

// clusterNames are the clusters calls may target now, and the default.
func (s *Server) clusterNames() ([]string, string) {
	if s.fixed != nil {
		return append([]string{}, s.fixed.names...), s.fixed.def
	}
	names := s.rt.Clusters()
	if names == nil {
		names = []string{}
	}
	return names, s.rt.DefaultCluster()
}

// MCPServer is the underlying mcp-go server, for transports and tests this
// package does not provide.
func (s *Server) MCPServer() *server.MCPServer { return s.mcp }

// Tools returns the names of the tools served now, sorted.
func (s *Server) Tools() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make([]string, 0, len(s.tools))
	for name := range s.tools {
		names = append(names, name)
	}
	sort.Strings(names)
	return names
}

// toolDigest tells one definition of a tool from another; the definitions
// themselves live in mcp-go.
type toolDigest = [sha256.Size]byte

// SyncTools rebuilds the plugin_* tools from the runtime's plugins. When the
// set of tools or any definition changed, every connected client gets
// notifications/tools/list_changed.
func (s *Server) SyncTools() {
	s.syncMu.Lock()
	defer s.syncMu.Unlock()

	pluginTools, owners := s.pluginTools()
	all := append(s.managementTools(), pluginTools...)
	defs := make(map[string]toolDigest, len(all))
	for _, t := range all {
		b, err := json.Marshal(t.Tool)
		if err != nil {
			// A definition mcp-go cannot serve would break tools/list for
			// every client; leave that one tool out instead.
			s.log.Error("tool left out: its definition does not encode", "tool", t.Tool.Name, "error", err)
			continue
		}
		defs[t.Tool.Name] = sha256.Sum256(b)
	}
	kept := all[:0]
	for _, t := range all {
		if _, ok := defs[t.Tool.Name]; ok {
			kept = append(kept, t)
		}
	}

	s.mu.Lock()
	s.owners = owners
	changed := len(defs) != len(s.tools)
	for name, b := range defs {
		if old, ok := s.tools[name]; !ok || old != b {
			changed = true
		}
	}
	var added, removed []string
	if changed {
		for name := range defs {
			if _, ok := s.tools[name]; !ok {
				added = append(added, name)
			}
		}
		for name := range s.tools {
			if _, ok := defs[name]; !ok {
				removed = append(removed, name)
			}
		}
		s.tools = defs
	}
	s.mu.Unlock()
	if !changed {
		return
	}
	sort.Strings(added)
	sort.Strings(removed)
	// SetTools replaces the whole set at once and sends one list_changed.
	s.mcp.SetTools(kept...)
	s.log.Info("tools updated", "tools", len(defs), "added", strings.Join(added, ","), "removed", strings.Join(removed, ","))
	// The discovery behind a change (a thousand helps, at start) and the
	// tools it replaced are garbage now; an idle server should not keep
	// their pages until the heap grows that large again.
	debug.FreeOSMemory()
}

// clusterText says which clusters a call can target, for descriptions.
func (s *Server) clusterText() string {
	names, def := s.clusterNames()
	switch {
	case len(names) == 0 && def != "":
		return fmt.Sprintf("No cluster is available now (the default cluster, %s, is not): calls that need a cluster fail.", def)
	case len(names) == 0:
		return "No clusters are configured: leave cluster empty; the plugin then gets an empty kubeconfig and cannot reach any cluster."
	case def != "" && !slices.Contains(names, def):
		return fmt.Sprintf("Clusters: %s. The default cluster, %s, is not available now: name a cluster in every call.", strings.Join(names, ", "), def)
	case def != "":
		return fmt.Sprintf("Clusters: %s. Without cluster the call goes to the default cluster, %s.", strings.Join(names, ", "), def)
	default:
		return fmt.Sprintf("Clusters: %s. There is no default cluster: name one in every call.", strings.Join(names, ", "))
	}
}

// sandboxText says how plugins run, for descriptions and results.
func (s *Server) sandboxText() string {
	sb := s.rt.Sandbox()
	var text string
	switch {
	case !sb.Available && sb.Wasm:
		return "Only WebAssembly plugins run here, each call in a fresh wasm sandbox; native plugins are listed but cannot run until the operator configures a container sandbox."
	case !sb.Available:
		return "No sandbox backend is available, so plugins are listed but cannot run until the operator configures one."
	case !sb.Isolated:
		text = fmt.Sprintf("Plugins run WITHOUT a sandbox here (backend %q): as plain processes with this server's own rights, files and network.", sb.Name)
	default:
		text = fmt.Sprintf("Every call runs in a fresh %s sandbox.", sb.Name)
	}
	if sb.Wasm {
		text += " WebAssembly plugins (kubectl-*.wasm) run in a fresh wasm sandbox each call."
	}
	return text
}

func (s *Server) instructions() string {
	return joinSentences(
		"This server runs kubectl plugins for you, one call per plugin run, with the plugin's output, exit code and status as the result.",
		"Start with plugins_list to see which plugins exist and which policy allows; each allowed plugin also has its own tool, plugin_<name>, whose parameters are the plugin's flags.",
		"Use plugins_info for one plugin's flags, and plugins_execute to run any allowed plugin with raw arguments.",
		"Plugin names may be written get_all or get-all, with or without the kubectl- prefix.",
		s.installText(),
		s.clusterText(),
		s.sandboxText(),
	)
}

// joinSentences joins the sentences that are not empty.
func joinSentences(sentences ...string) string {
	kept := sentences[:0]
	for _, t := range sentences {
		if t != "" {
			kept = append(kept, t)
		}
	}
	return strings.Join(kept, " ")
}

// boolPtr is for annotations.
func boolPtr(b bool) *bool { return &b }

// annotations builds a tool's annotations; every tool has a title.
func annotations(title string, readOnly, destructive, idempotent, openWorld bool) mcp.ToolAnnotation {
	return mcp.ToolAnnotation{
		Title:           title,
		ReadOnlyHint:    boolPtr(readOnly),
		DestructiveHint: boolPtr(destructive),
		IdempotentHint:  boolPtr(idempotent),
		OpenWorldHint:   boolPtr(openWorld),
	}
}
