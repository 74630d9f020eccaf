// Package wasm runs kubectl plugins compiled to WebAssembly (WASI preview 1)
// in wazero, one fresh module instance per call, with nothing of the host in
// reach but what the call's profile hands it.
//
// # Notes
//
//   - One wazero runtime serves the whole server. Modules are compiled once,
//     ahead of their first call (Prepare), and kept by sha256 in memory and
//     in wazero's compilation cache on disk.
//   - A guest has no sockets: WASI preview 1 offers none and neither does
//     this host. Its one way to a cluster is the host function of package
//     abi, served by the call's own API gateway in process.
//   - Linear memory is an anonymous mapping per call, with the module's data
//     mapped copy-on-write from a sealed image: every call starts from the
//     module's own initial memory, and a guest's memory never burdens the
//     server's garbage collector.
package wasm
