// Package mcpserver serves the runtime's plugins to AI agents over the Model
// Context Protocol (stdio, streamable HTTP and SSE).
package mcpserver
