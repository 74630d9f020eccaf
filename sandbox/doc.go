// Package sandbox defines how one plugin process runs in isolation (the
// Backend interface) and provides its backends.
package sandbox
