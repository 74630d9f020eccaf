package mcpserver

import (
	"context"
	"fmt"
	"sync"

	"github.com/mark3labs/mcp-go/mcp"
	"github.com/mark3labs/mcp-go/server"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/runtime"
)

// loggerName is the logger of every log notification this server sends.
const loggerName = "kubernetes-mcp-server"

// clientLogs remembers which sessions asked for log notifications with
// logging/setLevel (the 2025-11-25 revision). mcp-go gives a session that
// never asked the level "error"; this server sends nothing to it. A
// 2026-07-28 request asks per request in its _meta, which mcp-go checks.
type clientLogs struct {
	mu    sync.Mutex
	asked map[string]bool // session id -> called logging/setLevel
}

func (c *clientLogs) hooks() *server.Hooks {
	h := &server.Hooks{}
	h.AddAfterSetLevel(func(ctx context.Context, _ any, _ *mcp.SetLevelRequest, _ *mcp.EmptyResult) {
		if cs := server.ClientSessionFromContext(ctx); cs != nil {
			c.mu.Lock()
			c.asked[cs.SessionID()] = true
			c.mu.Unlock()
		}
	})
	h.AddOnUnregisterSession(func(_ context.Context, cs server.ClientSession) {
		c.mu.Lock()
		delete(c.asked, cs.SessionID())
		c.mu.Unlock()
	})
	return h
}

// wants reports whether the client of ctx's request asked for log
// notifications at all; mcp-go then filters by the level it asked for.
func (c *clientLogs) wants(ctx context.Context) bool {
	if info := server.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern {
		return info.LogLevel != ""
	}
	cs := server.ClientSessionFromContext(ctx)
	if cs == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.asked[cs.SessionID()]
}

// logToClient sends one log notification to the client of ctx's request,
// if it asked for them at this level. A client that cannot take it loses
// nothing it asked for: the server's own log has every line.
func (s *Server) logToClient(ctx context.Context, level mcp.LoggingLevel, data map[string]any) {
	if !s.clientLogs.wants(ctx) {
		return
	}
	if err := s.mcp.SendLogMessageToClient(ctx, mcp.NewLoggingMessageNotification(level, loggerName, data)); err != nil {
		s.log.Debug("log notification not sent", "error", err)
	}
}

// logCall tells the client what one call did: how it ended, and each API
// request the gateway denied, the part of a call an agent most needs to
// hear about.
func (s *Server) logCall(ctx context.Context, res *runtime.Result) {
	if !s.clientLogs.wants(ctx) { // most clients: skip building messages
		return
	}
	level := mcp.LoggingLevelInfo
	if res.Status != runtime.StatusOK {
		level = mcp.LoggingLevelWarning
	}
	denied := 0
	for _, r := range res.APIRequests {
		if r.Decision != "allow" {
			denied++
			s.logToClient(ctx, mcp.LoggingLevelWarning, map[string]any{
				"message": fmt.Sprintf("plugin %s: API request denied: %s %s (rule %s): %s", res.Plugin, r.Method, r.Path, r.Rule, r.Reason),
				"call_id": res.CallID, "plugin": res.Plugin, "cluster": res.Cluster,
				"verb": r.Verb, "resource": r.Resource, "namespace": r.Namespace, "rule": r.Rule,
			})
		}
	}
	s.logToClient(ctx, level, map[string]any{
		"message": fmt.Sprintf("plugin %s ran in sandbox %s: %s, exit code %d, %d ms, %d API requests (%d denied)",
			res.Plugin, sandboxName(res.Sandbox), res.Status, res.ExitCode, res.DurationMS, len(res.APIRequests), denied),
		"call_id": res.CallID, "plugin": res.Plugin, "cluster": res.Cluster, "sandbox": res.Sandbox,
		"status": res.Status, "exit_code": res.ExitCode, "duration_ms": res.DurationMS,
	})
}

// logRefusal tells the client a call was refused before it ran.
func (s *Server) logRefusal(ctx context.Context, plugin, cluster string, err error) {
	s.logToClient(ctx, mcp.LoggingLevelWarning, map[string]any{
		"message": fmt.Sprintf("call of plugin %q refused: %v", plugin, err),
		"plugin":  plugin, "cluster": cluster,
	})
}

func sandboxName(name string) string {
	switch name {
	case "":
		return "(none available)"
	case "none":
		return "none (NOT isolated)"
	}
	return name
}
