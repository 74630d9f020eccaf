package wasm

import (
	"golang.org/x/sys/unix"

	"github.com/tetratelabs/wazero/experimental"
)

// mappedMemory backs a guest's linear memory with an anonymous mapping of
// its largest size, reserved but not committed: pages cost only once
// touched, arrive zeroed, never move when the guest grows its memory, and
// are returned to the kernel at once when the guest ends. Go's heap would
// copy on every growth and keep the pages for its collector to find.
type mappedMemory struct {
	buf    []byte
	onFree func([]byte) // tests read what a guest left in memory
}

// mappedAllocator allocates mappedMemory, at most limit bytes of it.
func mappedAllocator(limit uint64, onFree func([]byte)) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(_, max uint64) experimental.LinearMemory {
		if max > limit {
			max = limit
		}
		buf, err := unix.Mmap(-1, 0, int(max), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return &heapMemory{limit: max}
		}
		return &mappedMemory{buf: buf, onFree: onFree}
	})
}

// heapMemory is the fallback when the kernel refuses the mapping: Go's
// heap, copied on growth.
type heapMemory struct {
	buf   []byte
	limit uint64
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		grown := make([]byte, size, min(max(size, 2*uint64(cap(m.buf))), m.limit))
		copy(grown, m.buf)
		m.buf = grown
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }

// Reallocate grows the memory to size bytes, or returns nil past the limit,
// which the guest sees as a failed memory.grow.
func (m *mappedMemory) Reallocate(size uint64) []byte {
	if size > uint64(len(m.buf)) {
		return nil
	}
	return m.buf[:size]
}

func (m *mappedMemory) Free() {
	if m.buf != nil {
		if m.onFree != nil {
			m.onFree(m.buf)
		}
		_ = unix.Munmap(m.buf)
		m.buf = nil
	}
}
