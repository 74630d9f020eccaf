package wasm

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tetratelabs/wazero"
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
	if !bytes.Equal(initialMemory(t, module), initialMemory(t, merged)) {
		t.Fatal("the coalesced module's memory differs from the original's")
	}
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

// initialMemory is the memory of module once instantiated, before _start.
func initialMemory(t *testing.T, module []byte) []byte {
	t.Helper()
	ctx := context.Background()
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
