package mcpserver

import "github.com/mark3labs/mcp-go/server"

// installTools are plugins_install, served only where installing is on.
func (s *Server) installTools() []server.ServerTool { return nil }
