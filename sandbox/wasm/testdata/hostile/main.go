// Command hostile is a WebAssembly guest for the wasm sandbox's tests: each
// first argument is one thing a plugin might try. It prints what happened
// and exits 0 when the sandbox held, 3 when it did not.
package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/wasmguest"
)

//go:wasmimport kubernetes_mcp_server_http_v1 round_trip
func roundTrip(reqPtr, reqLen, respPtr, respCap, respLenPtr uint32) uint32

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: hostile CASE [ARGS]")
		os.Exit(2)
	}
	arg := func(i int) string {
		if len(os.Args) > i+1 {
			return os.Args[i+1]
		}
		return ""
	}
	switch os.Args[1] {
	case "--help":
		fmt.Println("Usage:\n  kubectl hostile CASE [flags]\n\nFlags:\n  -v, --verbose   say more")
	case "hello":
		fmt.Printf("argv=%q\n", os.Args)
		fmt.Printf("env=%q\n", os.Environ())
		wd, _ := os.Getwd()
		fmt.Printf("wd=%s\n", wd)
	case "exit":
		n, _ := strconv.Atoi(arg(1))
		os.Exit(n)
	case "stdin":
		b, _ := io.ReadAll(os.Stdin)
		fmt.Printf("read %d bytes: %s", len(b), strings.ToUpper(string(b)))
	case "read": // read PATH: must fail
		b, err := os.ReadFile(arg(1))
		if err == nil {
			fmt.Printf("READ %d bytes of %s\n", len(b), arg(1))
			os.Exit(3)
		}
		fmt.Printf("could not read %s: %v\n", arg(1), err)
	case "list": // list DIR
		entries, err := os.ReadDir(arg(1))
		for _, e := range entries {
			fmt.Println(e.Name())
		}
		if err != nil {
			fmt.Println("error:", err)
		}
	case "write": // write PATH: must fail
		if err := os.WriteFile(arg(1), []byte("x"), 0o644); err == nil {
			fmt.Printf("WROTE %s\n", arg(1))
			os.Exit(3)
		} else {
			fmt.Printf("could not write %s: %v\n", arg(1), err)
		}
	case "tmp": // write and read back in /tmp: must work
		if err := os.WriteFile("/tmp/note", []byte("kept"), 0o644); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		b, err := os.ReadFile("/tmp/note")
		fmt.Printf("read back %q %v\n", b, err)
	case "link": // link TARGET: make a symlink and a hard link in /tmp, read through them
		held := true
		if err := os.Symlink(arg(1), "/tmp/sym"); err == nil {
			if b, err := os.ReadFile("/tmp/sym"); err == nil {
				fmt.Printf("READ %d bytes through a symlink\n", len(b))
				held = false
			}
		} else {
			fmt.Println("symlink:", err)
		}
		_ = os.WriteFile("/tmp/f", []byte("x"), 0o644)
		if err := os.Link("/tmp/f", "/tmp/hard"); err == nil {
			fmt.Println("MADE a hard link")
			held = false
		} else {
			fmt.Println("link:", err)
		}
		if !held {
			os.Exit(3)
		}
	case "fill": // write to /tmp until refused
		f, err := os.Create("/tmp/fill")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		var n int64
		for {
			w, err := f.Write(chunk)
			n += int64(w)
			if err != nil {
				fmt.Printf("wrote %d MiB, then: %v\n", n>>20, err)
				break
			}
			if n > 1<<30 {
				fmt.Printf("WROTE %d MiB\n", n>>20)
				os.Exit(3)
			}
		}
	case "memory": // grow memory without end
		var keep [][]byte
		for i := 0; ; i++ {
			b := make([]byte, 16<<20)
			for j := range b {
				if j%4096 == 0 {
					b[j] = 1
				}
			}
			keep = append(keep, b)
			fmt.Fprintf(os.Stderr, "%d MiB\n", 16*(i+1))
		}
	case "loop":
		fmt.Println("looping")
		for i := 0; ; i++ {
			if i < 0 {
				break
			}
		}
	case "sleep":
		fmt.Println("sleeping")
		time.Sleep(time.Hour)
	case "flood":
		line := bytes.Repeat([]byte("y"), 4095)
		line = append(line, '\n')
		for {
			os.Stdout.Write(line)
		}
	case "badptr": // call the host function with pointers outside memory
		bad := uint32(0xfffffff0)
		var n uint32
		np := uint32(uintptr(unsafe.Pointer(&n)))
		buf := make([]byte, 16)
		bp := uint32(uintptr(unsafe.Pointer(&buf[0])))
		fmt.Println("req outside memory:", roundTrip(bad, 64, bp, 16, np))
		fmt.Println("resp outside memory:", roundTrip(bp, 16, bad, 64, np))
		fmt.Println("len outside memory:", roundTrip(bp, 16, bp, 16, bad))
		fmt.Println("huge req:", roundTrip(bp, 0xffffffff, bp, 16, np))
		fmt.Println("garbage req:", roundTrip(bp, 16, bp, 16, np))
		fmt.Println("no pending:", roundTrip(0, 0, bp, 16, np))
	case "get": // get PATH [METHOD]: one request through the gateway
		method := arg(2)
		if method == "" {
			method = http.MethodGet
		}
		req, _ := http.NewRequest(method, "https://gateway"+arg(1), nil)
		req.Header.Set("Accept", "application/json")
		if arg(3) == "upgrade" {
			req.Header.Set("Connection", "Upgrade")
			req.Header.Set("Upgrade", "websocket")
		}
		printResponse(req)
	case "big": // a request over the limit
		body := bytes.Repeat([]byte("z"), 11<<20)
		req, _ := http.NewRequest(http.MethodPost, "https://gateway/api/v1/namespaces/default/configmaps", bytes.NewReader(body))
		_, err := wasmguest.Transport{}.RoundTrip(req)
		fmt.Println("error:", err)
		if err == nil {
			os.Exit(3)
		}
	case "cat": // cat PATH: must work
		b, err := os.ReadFile(arg(1))
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
	case "put": // put PATH TEXT: must work
		if err := os.WriteFile(arg(1), []byte(arg(2)), 0o644); err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		fmt.Println("wrote", arg(1))
	case "rename": // rename FROM TO: must fail
		if err := os.Rename(arg(1), arg(2)); err == nil {
			fmt.Printf("RENAMED %s to %s\n", arg(1), arg(2))
			os.Exit(3)
		} else {
			fmt.Println("could not rename:", err)
		}
	case "rawopen": // rawopen PATH [PREOPEN]: path_open relative to a pre-opened folder, past Go's own path cleaning
		rawOpen(arg(1), arg(2))
	case "rewrite": // rewrite MIB: write MIB MiB to /tmp over and over, truncating or removing: the quota must give space back
		n, _ := strconv.Atoi(arg(1))
		data := bytes.Repeat([]byte("r"), n<<20)
		for i := 0; i < 8; i++ {
			if err := os.WriteFile("/tmp/r", data, 0o644); err != nil {
				fmt.Printf("round %d, truncate: %v\n", i, err)
				os.Exit(1)
			}
		}
		for i := 0; i < 8; i++ {
			name := fmt.Sprintf("/tmp/r%d", i)
			if err := os.WriteFile(name, data, 0o644); err != nil {
				fmt.Printf("round %d, remove: %v\n", i, err)
				os.Exit(1)
			}
			os.Remove(name)
		}
		fmt.Println("rewrote fine")
	case "grow": // grow a file in /tmp past the quota without writing it
		f, err := os.Create("/tmp/sparse")
		if err != nil {
			fmt.Println("error:", err)
			os.Exit(1)
		}
		held := true
		if err := f.Truncate(1 << 30); err == nil {
			fmt.Println("TRUNCATED to 1 GiB")
			held = false
		} else {
			fmt.Println("truncate:", err)
		}
		if _, err := f.WriteAt([]byte("x"), 1<<30); err == nil {
			fmt.Println("WROTE at 1 GiB")
			held = false
		} else {
			fmt.Println("pwrite:", err)
		}
		if !held {
			os.Exit(3)
		}
	case "unlinkfill": // unlinkfill MIB: fill /tmp, remove the file but keep it open, again: at most MIB MiB may be held
		limit, _ := strconv.Atoi(arg(1))
		chunk := bytes.Repeat([]byte("u"), 256<<10)
		var held int64
		var open []*os.File
		for i := 0; i < 32; i++ {
			name := fmt.Sprintf("/tmp/u%d", i)
			f, err := os.Create(name)
			if err != nil {
				fmt.Println("create:", err)
				break
			}
			open = append(open, f)
			var n int64
			for {
				w, err := f.Write(chunk)
				n += int64(w)
				if err != nil || w == 0 {
					break
				}
			}
			held += n
			if err := os.Remove(name); err != nil {
				fmt.Println("remove:", err)
			}
			if n == 0 {
				break
			}
			if held > int64(limit)<<20 {
				fmt.Printf("HOLD %d MiB on the host's disk, in %d removed files still open\n", held>>20, len(open))
				os.Exit(3)
			}
		}
		fmt.Printf("held %d KiB at most\n", held>>10)
	case "send": // send METHOD PATH BODY: one request with a body
		req, _ := http.NewRequest(arg(1), "https://gateway"+arg(2), strings.NewReader(arg(3)))
		req.Header.Set("Content-Type", "application/json")
		printResponse(req)
	case "openmany": // open files in /tmp and the kubeconfig folder until refused; print how many
		os.WriteFile("/tmp/f", nil, 0o600)
		var held []*os.File
		for len(held) < 100_000 {
			name := "/tmp/f"
			if len(held)%2 == 1 && os.Getenv("KUBECONFIG") != "" {
				name = os.Getenv("KUBECONFIG")
			}
			f, err := os.Open(name)
			if err != nil {
				fmt.Printf("opened %d: %v\n", len(held), err)
				break
			}
			held = append(held, f)
		}
		for _, f := range held[:len(held)/2] {
			f.Close()
		}
		_, err := os.Open("/tmp/f")
		fmt.Printf("after closing half: %v\n", err)
	case "dial": // no sockets
		_, err := http.Get("http://127.0.0.1:80/")
		fmt.Println("error:", err)
		if err == nil {
			os.Exit(3)
		}
	default:
		fmt.Println("unknown case", os.Args[1])
		os.Exit(2)
	}
}

//go:wasmimport wasi_snapshot_preview1 fd_prestat_get
func fdPrestatGet(fd int32, buf unsafe.Pointer) uint32

//go:wasmimport wasi_snapshot_preview1 fd_prestat_dir_name
func fdPrestatDirName(fd int32, path unsafe.Pointer, pathLen uint32) uint32

//go:wasmimport wasi_snapshot_preview1 path_open
func pathOpen(fd int32, dirflags uint32, path unsafe.Pointer, pathLen uint32, oflags uint32, rightsBase, rightsInheriting uint64, fdflags uint32, newFD unsafe.Pointer) uint32

// rawOpen opens path relative to the pre-opened folder named preopen
// ("/tmp" when empty) with WASI's path_open itself, so that the host, not
// Go's syscall package, is what must refuse "..". Every path it is given
// leaves preopen: opening it at all exits 3.
func rawOpen(path, preopen string) {
	if preopen == "" {
		preopen = "/tmp"
	}
	dirFD := int32(-1)
	for fd := int32(3); fd < 32; fd++ {
		var prestat [8]byte
		if fdPrestatGet(fd, unsafe.Pointer(&prestat[0])) != 0 {
			continue
		}
		n := uint32(prestat[4]) | uint32(prestat[5])<<8 | uint32(prestat[6])<<16 | uint32(prestat[7])<<24
		name := make([]byte, n)
		if n > 0 && fdPrestatDirName(fd, unsafe.Pointer(&name[0]), n) != 0 {
			continue
		}
		if strings.TrimRight(string(name), "\x00") == preopen {
			dirFD = fd
			break
		}
	}
	if dirFD < 0 {
		fmt.Println("no pre-opened folder", preopen)
		os.Exit(1)
	}
	p := []byte(path)
	var newFD int32
	errno := pathOpen(dirFD, 0, unsafe.Pointer(&p[0]), uint32(len(p)), 0, ^uint64(0), ^uint64(0), 0, unsafe.Pointer(&newFD))
	if errno != 0 {
		fmt.Printf("could not open %s from %s: errno %d\n", path, preopen, errno)
		return
	}
	// Every test path escapes preopen: opening it at all is the escape.
	f := os.NewFile(uintptr(newFD), path)
	b, err := io.ReadAll(f)
	if err != nil {
		fmt.Printf("OPENED %s from %s (could not read it: %v)\n", path, preopen, err)
		os.Exit(3)
	}
	fmt.Printf("READ %d bytes of %s from %s: %q\n", len(b), path, preopen, b)
	os.Exit(3)
}

// printResponse sends req through the host function and prints the answer,
// or the error and exits 1.
func printResponse(req *http.Request) {
	resp, err := wasmguest.Transport{}.RoundTrip(req)
	if err != nil {
		fmt.Println("error:", err)
		os.Exit(1)
	}
	b, _ := io.ReadAll(resp.Body)
	fmt.Printf("status %d, %d bytes\n%s\n", resp.StatusCode, len(b), b)
}
