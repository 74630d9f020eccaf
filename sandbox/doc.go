// Package sandbox defines how a plugin process is run in isolation, and the
// backends that do it.
package sandbox
