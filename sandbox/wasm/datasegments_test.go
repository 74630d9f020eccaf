package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// Coalescing a Go guest's data segments leaves its memory, once
// instantiated, byte for byte what the original segments make, with far
// fewer segments.
func TestCoalescedDataGivesTheSameMemory(t *testing.T) {
	module := buildGuest(t, "./testdata/small")
	merged := coalesceData(module)
	before, after := countSegments(t, module), countSegments(t, merged)
	if after*100 > before || after == 0 {
		t.Fatalf("%d data segments became %d", before, after)
	}
	want := initialMemory(t, module, nil)
	if !bytes.Equal(want, initialMemory(t, merged, nil)) {
		t.Fatal("the coalesced module's memory differs from the original's")
	}
	// Taken out into an image and mapped under the instance, the data
	// makes the same memory too, and the module has none left.
	stripped, segs, size, ok := splitData(merged, 1<<30)
	if !ok || countSegments(t, stripped) != 0 {
		t.Fatalf("splitData: ok=%v, %d segments left", ok, countSegments(t, stripped))
	}
	img, err := newMemoryImage(size, segs)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	ctx := experimental.WithMemoryAllocator(context.Background(), mappedAllocator(1<<30, img, nil))
	for range 2 { // the second instance starts from the image, not from the first's writes
		if got := initialMemory(t, stripped, ctx); !bytes.Equal(want, got) {
			t.Fatal("the memory mapped from the image differs from the original's")
		}
	}
}

// A guest's writes to memory mapped from its module's image reach neither
// the image nor the next instance.
func TestMemoryImageIsCopyOnWrite(t *testing.T) {
	img, err := newMemoryImage(8, []segment{{offset: 0, init: []byte("pristine")}})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	alloc := mappedAllocator(1<<20, img, nil)
	first := alloc.Allocate(0, 1<<20)
	buf := first.Reallocate(65536)
	copy(buf, "written!")
	second := alloc.Allocate(0, 1<<20).Reallocate(65536)
	if string(second[:8]) != "pristine" || string(buf[:8]) != "written!" {
		t.Errorf("first %q, second %q", buf[:8], second[:8])
	}
	if n, err := unix.Pwrite(img.fd, []byte("x"), 0); err == nil {
		t.Errorf("the sealed image took a write of %d bytes", n)
	}
	first.Free()
}

// Modules whose segments cannot be merged safely are left as they are.
func TestCoalesceLeavesWhatItCannotTell(t *testing.T) {
	for name, module := range map[string][]byte{
		"not wasm":  []byte("#!/bin/sh\n"),
		"truncated": []byte("\x00asm\x01\x00\x00\x00\x0b\x05\x01"),
		// Two active segments that overlap: the later one wins byte 1.
		"overlap": append([]byte("\x00asm\x01\x00\x00\x00"), 0x0b, 14, 2, 0, 0x41, 0, 0x0b, 2, 'a', 'b', 0, 0x41, 1, 0x0b, 1, 'c'),
		// A data count section: segment indexes may be used.
		"data count": append([]byte("\x00asm\x01\x00\x00\x00"), 0x0c, 1, 2, 0x0b, 13, 2, 0, 0x41, 0, 0x0b, 1, 'a', 0, 0x41, 4, 0x0b, 1, 'b'),
	} {
		if got := coalesceData(module); !bytes.Equal(got, module) {
			t.Errorf("%s: rewritten", name)
		}
	}
}

func buildGuest(t *testing.T, pkg string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "guest.wasm")
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", pkg, err, msg)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func countSegments(t *testing.T, module []byte) int {
	t.Helper()
	for p := 8; p < len(module); {
		size, n := binary.Uvarint(module[p+1:])
		if module[p] == sectionData {
			segs, err := parseSegments(module[p+1+n : p+1+n+int(size)])
			if err != nil {
				t.Fatal(err)
			}
			return len(segs)
		}
		p += 1 + n + int(size)
	}
	return 0
}

// initialMemory is the memory of module once instantiated, before _start,
// with ctx's memory allocator if it has one.
func initialMemory(t *testing.T, module []byte, ctx context.Context) []byte {
	t.Helper()
	if ctx == nil {
		ctx = context.Background()
	}
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	wasi_snapshot_preview1.MustInstantiate(ctx, r)
	compiled, err := r.CompileModule(ctx, module)
	if err != nil {
		t.Fatal(err)
	}
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithStartFunctions())
	if err != nil {
		t.Fatal(err)
	}
	mem, _ := mod.Memory().Read(0, mod.Memory().Size())
	return bytes.Clone(mem)
}

// dataModule is a module with one memory of minPages and the given active
// data segments, nothing else.
func dataModule(minPages uint64, segs []segment) []byte {
	m := []byte("\x00asm\x01\x00\x00\x00")
	mem := binary.AppendUvarint([]byte{1, 0}, minPages)
	m = append(m, sectionMemory)
	m = binary.AppendUvarint(m, uint64(len(mem)))
	m = append(m, mem...)
	sec := binary.AppendUvarint(nil, uint64(len(segs)))
	for _, s := range segs {
		sec = append(sec, 0, opI32Const)
		sec = appendSleb32(sec, int32(s.offset))
		sec = append(sec, opEnd)
		sec = binary.AppendUvarint(sec, uint64(len(s.init)))
		sec = append(sec, s.init...)
	}
	m = append(m, sectionData)
	m = binary.AppendUvarint(m, uint64(len(sec)))
	return append(m, sec...)
}

// A hostile module cannot make the server allocate much more than it holds:
// merging fills at most as many zeros as there is data, and a module whose
// memory is over the limit gets no image at all.
func TestHostileDataSegmentsStayBounded(t *testing.T) {
	var segs []segment
	for i := range 100_000 {
		segs = append(segs, segment{offset: uint32(i) * (maxGap + 1), init: []byte{1}})
	}
	module := dataModule(65536, segs)
	if merged := coalesceData(module); len(merged) > 3*len(module) {
		t.Errorf("a %d-byte module of tiny segments became %d bytes", len(module), len(merged))
	}
	far := dataModule(65536, []segment{{offset: 1 << 31, init: []byte("x")}})
	if _, _, _, ok := splitData(far, 512<<20); ok {
		t.Error("a module whose memory is over the limit was split into an image")
	}
	_, got, size, ok := splitData(dataModule(16, []segment{{offset: 65536*16 - 1, init: []byte("x")}}), 512<<20)
	if !ok || size != 65536*16 || len(got) != 1 {
		t.Errorf("a segment at the end of memory: ok=%v size=%d", ok, size)
	}
	img, err := newMemoryImage(size, got)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	var st unix.Stat_t
	if err := unix.Fstat(img.fd, &st); err != nil || st.Blocks*512 > 64<<10 {
		t.Errorf("a 1 MiB image with one byte of data takes %d bytes (%v)", st.Blocks*512, err)
	}
}

// Whatever bytes a plugin file holds, reading its data segments neither
// panics nor grows past its bounds.
func FuzzDataSegments(f *testing.F) {
	f.Add(dataModule(1, []segment{{0, []byte("ab")}, {8, []byte("c")}}))
	f.Add(dataModule(1, []segment{{8, []byte("c")}, {0, []byte("ab")}}))
	f.Add(dataModule(1, []segment{{0, []byte("ab")}, {1, []byte("c")}}))
	f.Add([]byte("\x00asm\x01\x00\x00\x00\x0b\x05\x01"))
	f.Fuzz(func(t *testing.T, module []byte) {
		merged := coalesceData(module)
		if len(merged) > 2*len(module)+2*maxGap+64 {
			t.Fatalf("%d bytes became %d", len(module), len(merged))
		}
		if _, segs, size, ok := splitData(merged, 1<<20); ok {
			for _, s := range segs {
				if uint64(s.offset)+uint64(len(s.init)) > size || size > 1<<20 {
					t.Fatalf("segment at %d (+%d) outside an image of %d", s.offset, len(s.init), size)
				}
			}
		}
	})
}
