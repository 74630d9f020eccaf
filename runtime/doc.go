// Package runtime turns one tool call into one sandboxed plugin run, with its
// timeout, concurrency limit, output cap and structured result.
package runtime
