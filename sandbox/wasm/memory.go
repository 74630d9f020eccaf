package wasm

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/tetratelabs/wazero/experimental"
)

// memoryImage is what a module's data segments put in its memory at
// instantiation, held once in a sealed memfd: every instance of the module
// maps it copy-on-write, so starting one copies nothing, pages cost only
// when touched, and no instance can change what the next one starts from.
type memoryImage struct {
	fd   int
	size int // the image's length, rounded up to whole pages
}

// newMemoryImage makes the image of size bytes, zeros but for segs. Only
// the segments' pages take memory: the rest of a memfd is a hole.
func newMemoryImage(size uint64, segs []segment) (*memoryImage, error) {
	fd, err := unix.MemfdCreate("kmcp-wasm-memory", unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd: %w", err)
	}
	page := uint64(unix.Getpagesize())
	img := &memoryImage{fd: fd, size: int((size + page - 1) / page * page)}
	if err := img.fill(segs); err != nil {
		img.Close()
		return nil, err
	}
	return img, nil
}

func (img *memoryImage) fill(segs []segment) error {
	if err := unix.Ftruncate(img.fd, int64(img.size)); err != nil {
		return fmt.Errorf("memfd: %w", err)
	}
	for _, s := range segs {
		for off := 0; off < len(s.init); {
			n, err := unix.Pwrite(img.fd, s.init[off:], int64(s.offset)+int64(off))
			if err != nil {
				return fmt.Errorf("memfd: %w", err)
			}
			off += n
		}
	}
	// Sealed: nothing, not even this process, can change it any more.
	_, err := unix.FcntlInt(uintptr(img.fd), unix.F_ADD_SEALS, unix.F_SEAL_SHRINK|unix.F_SEAL_GROW|unix.F_SEAL_WRITE|unix.F_SEAL_SEAL)
	if err != nil {
		return fmt.Errorf("seal memfd: %w", err)
	}
	return nil
}

// Close releases the image; instances mapping it keep their pages.
func (img *memoryImage) Close() error {
	if img == nil {
		return nil
	}
	return unix.Close(img.fd)
}

// mappedMemory backs a guest's linear memory with an anonymous mapping of
// its largest size, reserved but not committed, with the module's image
// mapped copy-on-write at its start: pages cost only once touched, the rest
// arrive zeroed, never move when the guest grows its memory, and are
// returned to the kernel at once when the guest ends. Go's heap would copy
// on every growth and keep the pages for its collector to find.
type mappedMemory struct {
	buf    []byte
	onFree func([]byte) // tests read what a guest left in memory
}

// mappedAllocator allocates mappedMemory, at most limit bytes of it,
// starting from image (nil for all zeros).
func mappedAllocator(limit uint64, image *memoryImage, onFree func([]byte)) experimental.MemoryAllocator {
	return experimental.MemoryAllocatorFunc(func(_, maxBytes uint64) experimental.LinearMemory {
		maxBytes = max(min(maxBytes, limit), uint64(image.sizeOrZero()))
		buf, err := unix.Mmap(-1, 0, int(maxBytes), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
		if err != nil {
			return newHeapMemory(maxBytes, image)
		}
		if image != nil && image.size > 0 {
			_, err := unix.MmapPtr(image.fd, 0, unsafe.Pointer(&buf[0]), uintptr(image.size),
				unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_FIXED)
			if err != nil {
				// Copy instead: slower, the same memory.
				image.readInto(buf)
			}
		}
		return &mappedMemory{buf: buf, onFree: onFree}
	})
}

func (img *memoryImage) sizeOrZero() int {
	if img == nil {
		return 0
	}
	return img.size
}

// readInto copies the image to the start of buf.
func (img *memoryImage) readInto(buf []byte) {
	if img == nil {
		return
	}
	for off := 0; off < img.size && off < len(buf); {
		n, err := unix.Pread(img.fd, buf[off:min(img.size, len(buf))], int64(off))
		if err != nil || n == 0 {
			return
		}
		off += n
	}
}

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

// heapMemory is the fallback when the kernel refuses the mapping: Go's
// heap, copied on growth.
type heapMemory struct {
	buf   []byte
	limit uint64
}

func newHeapMemory(limit uint64, image *memoryImage) *heapMemory {
	m := &heapMemory{limit: limit}
	if n := image.sizeOrZero(); n > 0 {
		m.buf = make([]byte, n)
		image.readInto(m.buf)
		m.buf = m.buf[:0]
	}
	return m
}

func (m *heapMemory) Reallocate(size uint64) []byte {
	if size > m.limit {
		return nil
	}
	if size > uint64(cap(m.buf)) {
		grown := make([]byte, size, min(max(size, 2*uint64(cap(m.buf))), m.limit))
		copy(grown, m.buf[:cap(m.buf)])
		m.buf = grown
	}
	m.buf = m.buf[:size]
	return m.buf
}

func (m *heapMemory) Free() { m.buf = nil }
