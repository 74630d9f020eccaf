package wasm_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm"
)

// A tiny WebAssembly assembler: enough to hand-make the modules below,
// which stand in for modules of other toolchains (Rust, TinyGo, C) and for
// broken ones.

const (
	i32     = 0x7f
	opEnd   = 0x0b
	opCall  = 0x10
	opDrop  = 0x1a
	opConst = 0x41 // i32.const
)

func uleb(n uint64) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n != 0 {
			c |= 0x80
		}
		b = append(b, c)
		if n == 0 {
			return b
		}
	}
}

func sleb(n int64) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		done := n == 0 && c&0x40 == 0 || n == -1 && c&0x40 != 0
		if !done {
			c |= 0x80
		}
		b = append(b, c)
		if done {
			return b
		}
	}
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// vec is a WebAssembly vector: a count, then the items.
func vec(items ...[]byte) []byte { return cat(uleb(uint64(len(items))), cat(items...)) }

func name(s string) []byte { return cat(uleb(uint64(len(s))), []byte(s)) }

func section(id byte, items ...[]byte) []byte {
	body := vec(items...)
	return cat([]byte{id}, uleb(uint64(len(body))), body)
}

func funcType(params, results []byte) []byte {
	return cat([]byte{0x60}, uleb(uint64(len(params))), params, uleb(uint64(len(results))), results)
}

func importFunc(mod, fn string, typ int) []byte {
	return cat(name(mod), name(fn), []byte{0x00}, uleb(uint64(typ)))
}

func exportFunc(n string, idx int) []byte { return cat(name(n), []byte{0x00}, uleb(uint64(idx))) }

// code is one function body: no locals, then instrs, then end.
func code(instrs ...byte) []byte {
	body := cat([]byte{0x00}, instrs, []byte{opEnd})
	return cat(uleb(uint64(len(body))), body)
}

func i32Const(n int64) []byte { return cat([]byte{opConst}, sleb(n)) }

// data is an active data segment of memory 0 at offset.
func data(offset int64, b []byte) []byte {
	return cat([]byte{0x00}, i32Const(offset), []byte{opEnd}, uleb(uint64(len(b))), b)
}

func module(sections ...[]byte) []byte {
	return cat([]byte("\x00asm"), []byte{1, 0, 0, 0}, cat(sections...))
}

const (
	secType, secImport, secFunction, secMemory, secExport, secCode, secData = 1, 2, 3, 5, 7, 10, 11
)

// wasiHello is a minimal WASI command, not made by Go: _start writes msg
// to stdout with fd_write and exits with code by proc_exit.
func wasiHello(msg string, code_ int64) []byte {
	const iov, nwritten, text = 0, 8, 16
	start := cat(
		i32Const(1), i32Const(iov), i32Const(1), i32Const(nwritten), []byte{opCall, 0, opDrop},
		i32Const(code_), []byte{opCall, 1},
	)
	return module(
		section(secType,
			funcType([]byte{i32, i32, i32, i32}, []byte{i32}), // fd_write
			funcType([]byte{i32}, nil),                        // proc_exit
			funcType(nil, nil),                                // _start
		),
		section(secImport,
			importFunc(wasm.Wasi, "fd_write", 0),
			importFunc(wasm.Wasi, "proc_exit", 1),
		),
		section(secFunction, uleb(2)),
		section(secMemory, []byte{0x00, 0x01}), // min 1 page, no max
		section(secExport, cat(name("memory"), []byte{0x02, 0x00}), exportFunc("_start", 2)),
		section(secCode, code(start...)),
		section(secData,
			data(iov, cat(le32(text), le32(uint32(len(msg))))),
			data(text, []byte(msg)),
		),
	)
}

func le32(n uint32) []byte { return []byte{byte(n), byte(n >> 8), byte(n >> 16), byte(n >> 24)} }

// startOnly is a module with one function, exported as _start, of body.
func startOnly(body ...byte) []byte {
	return module(
		section(secType, funcType(nil, nil)),
		section(secFunction, uleb(0)),
		section(secExport, exportFunc("_start", 0)),
		section(secCode, code(body...)),
	)
}

func writeModule(t *testing.T, dir, file string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, file)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestModules runs modules of every kind but Go's: each must run, or be
// refused with a clear error by both Prepare and Run, never a panic.
func TestModules(t *testing.T) {
	t.Parallel()
	const hello = "hello from a hand-made module\n"
	hostile, err := os.ReadFile(hostileGuest(t))
	if err != nil {
		t.Fatal(err)
	}
	importsFoo := module(
		section(secType, funcType(nil, nil)),
		section(secImport, importFunc("env", "foo", 0)),
		section(secFunction, uleb(0)),
		section(secExport, exportFunc("_start", 1)),
		section(secCode, code()),
	)
	importsMemory := module(
		section(secType, funcType(nil, nil)),
		section(secImport, cat(name("env"), name("memory"), []byte{0x02, 0x00, 0x01})),
		section(secFunction, uleb(0)),
		section(secExport, exportFunc("_start", 0)),
		section(secCode, code()),
	)
	noStart := module(
		section(secType, funcType(nil, nil)),
		section(secFunction, uleb(0)),
		section(secExport, exportFunc("main", 0)),
		section(secCode, code()),
	)
	dir := t.TempDir()
	b := newBackend(t, wasm.Config{})
	for _, tc := range []struct {
		name    string
		module  []byte
		errWant string // in the errors of Prepare and Run
		exit    int
		stdout  string
		signal  string
	}{
		{"a WASI command of another toolchain", wasiHello(hello, 7), "", 7, hello, ""},
		{"exit 0", wasiHello("", 0), "", 0, "", ""},
		{"an import the host does not offer", importsFoo, "env.foo", 0, "", ""},
		{"an imported memory", importsMemory, "env.memory (a memory)", 0, "", ""},
		{"no _start", noStart, "exports no _start function", 0, "", ""},
		{"an empty module", module(), "exports no _start function", 0, "", ""},
		{"a trap", startOnly(0x00), "", -1, "", "a WebAssembly trap"}, // unreachable
		{"garbage", []byte("#!/bin/sh\necho not wasm\n"), "compile kubectl-garbage.wasm", 0, "", ""},
		{"an empty file", nil, "compile kubectl-an-empty-file.wasm", 0, "", ""},
		{"a truncated module", hostile[:len(hostile)/2], "compile kubectl-a-truncated-module.wasm", 0, "", ""},
		{"a wasm version 2", append([]byte("\x00asm\x02\x00\x00\x00"), hostile[8:64]...), "compile", 0, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			file := "kubectl-" + strings.ReplaceAll(tc.name, " ", "-") + ".wasm"
			if tc.name == "garbage" {
				file = "kubectl-garbage.wasm"
			}
			plugin := writeModule(t, dir, file, tc.module)
			perr := b.Prepare(context.Background(), plugin)
			r := runGuest(t, b, plugin, sandbox.Spec{Args: []string{"x"}})
			if tc.errWant != "" {
				for what, err := range map[string]error{"Prepare": perr, "Run": r.err} {
					if err == nil || !strings.Contains(err.Error(), tc.errWant) {
						t.Errorf("%s: want an error naming %q, got %v", what, tc.errWant, err)
					}
				}
				if r.res.ExitCode != -1 {
					t.Errorf("a run that could not start has exit code %d, want -1", r.res.ExitCode)
				}
				t.Logf("%v", perr)
				return
			}
			if perr != nil {
				t.Fatalf("Prepare: %v", perr)
			}
			mustExit(t, r, tc.exit)
			if r.stdout != tc.stdout || r.res.Signal != tc.signal {
				t.Fatalf("want stdout %q and signal %q: %s", tc.stdout, tc.signal, r)
			}
			if tc.signal != "" && !strings.Contains(r.stderr, "the plugin trapped") {
				t.Fatalf("a trap is not told on stderr: %s", r)
			}
		})
	}
	if _, err := b.Run(context.Background(), sandbox.Spec{Plugin: filepath.Join(dir, "kubectl-missing.wasm")}); err == nil {
		t.Error("a run of a missing file did not fail")
	}
	assertServes(t, b)
}

// TestHandMadeLoop: a busy loop that is not Go's, ended by RunTimeout.
func TestHandMadeLoop(t *testing.T) {
	t.Parallel()
	b := newBackend(t, wasm.Config{})
	plugin := writeModule(t, t.TempDir(), "kubectl-loop.wasm", startOnly(0x03, 0x40, 0x0c, 0x00, opEnd)) // loop br 0 end
	r := runCtx(t, context.Background(), b, plugin, sandbox.Spec{RunTimeout: 500 * time.Millisecond}, 5*time.Second)
	if r.err != nil || !r.res.Stopped || r.res.ExitCode != -1 {
		t.Fatalf("want Stopped: %s", r)
	}
}

// A module file over MaxModuleBytes is refused before it is read.
func TestHugeModuleIsRefused(t *testing.T) {
	t.Parallel()
	plugin := filepath.Join(t.TempDir(), "kubectl-huge.wasm")
	f, err := os.Create(plugin)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("\x00asm\x01\x00\x00\x00"))
	if err := f.Truncate(wasm.MaxModuleBytes + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	b := newBackend(t, wasm.Config{})
	if err := b.Prepare(context.Background(), plugin); err == nil || !strings.Contains(err.Error(), "over the 256 MiB") {
		t.Errorf("Prepare: %v", err)
	}
}
