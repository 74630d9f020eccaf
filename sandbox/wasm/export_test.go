package wasm

// SetMemoryInspector has f see each guest's whole linear memory as the
// guest ends, before it is unmapped.
func SetMemoryInspector(b *Backend, f func([]byte)) { b.inspectMemory = f }
