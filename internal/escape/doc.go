// Package escape is the hostile-plugin suite: small programs that try to
// break out of a sandbox, run as plugins on every isolation tier the server
// offers, each case asserting what the plugin could not read, write, reach
// or keep. It holds tests only; `make security-report` turns a run into
// SECURITY-REPORT.md.
package escape
