// Command hostile is the escape suite's plugin: its first argument names
// one thing a hostile plugin tries, the rest say where. It prints one line
// per attempt:
//
//	BLOCKED: what: why it failed
//	BREACH: what: what it got
//	RESULT: key=value
//
// and the suite decides from those lines and from what it sees on the
// host. It is built for linux (static, for the container tiers) and for
// wasip1 (the WebAssembly tier); attempts that need a syscall WASI lacks
// are linux-only.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func blocked(what string, why any) { fmt.Printf("BLOCKED: %s: %v\n", what, why) }
func breach(what string, got any)  { fmt.Printf("BREACH: %s: %v\n", what, got) }
func result(key string, v any)     { fmt.Printf("RESULT: %s=%v\n", key, v) }

// attempt reports err as blocked and its absence as a breach.
func attempt(what string, err error) {
	if err != nil {
		blocked(what, err)
	} else {
		breach(what, "succeeded")
	}
}

type action func(args []string)

var actions = map[string]action{
	"--help":     func([]string) { fmt.Println("Usage:\n  kubectl hostile CASE [ARGS]") },
	"read":       readFiles,
	"read-link":  readThroughSymlink,
	"write":      writeFiles,
	"write-self": writeSelf,
	"find-token": findToken,
	"kubeconfig": kubeconfig,
	"env":        func([]string) { fmt.Println(strings.Join(os.Environ(), "\n")); blocked("environment", "printed") },
	"tmp-fill":   tmpFill,
	"flood":      flood,
	"sleep": func(args []string) {
		d, _ := time.ParseDuration(args[0])
		time.Sleep(d)
		blocked("sleep", "woke after "+args[0])
	},
	"spin": func([]string) {
		blocked("spin", "started")
		for n := 0; ; n++ { // busy, never ending
		}
	},
	"fd-exhaust":  fdExhaust,
	"memory-bomb": memoryBomb,
	"http":        httpRequest,
}

func main() {
	if len(os.Args) < 2 {
		fmt.Println("usage: kubectl-hostile CASE [ARGS]")
		os.Exit(2)
	}
	act, ok := actions[os.Args[1]]
	if !ok {
		act, ok = platformActions[os.Args[1]]
	}
	if !ok {
		fmt.Printf("NOTAPPLICABLE: %s\n", os.Args[1])
		os.Exit(2)
	}
	act(os.Args[2:])
}

func readFiles(paths []string) {
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			blocked("read "+p, err)
			continue
		}
		breach("read "+p, fmt.Sprintf("%d bytes: %q", len(b), first(b, 64)))
	}
}

func first(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

func readThroughSymlink(args []string) {
	link := filepath.Join(os.TempDir(), "link")
	if err := os.Symlink(args[0], link); err != nil {
		blocked("symlink to "+args[0], err)
		return
	}
	readFiles([]string{link})
}

func writeFiles(paths []string) {
	for _, p := range paths {
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err == nil {
			_, err = f.Write([]byte("x"))
			if cerr := f.Close(); err == nil {
				err = cerr
			}
		}
		attempt("write "+p, err)
	}
}

// findToken looks for a secret it knows only by its sha256 and length (so
// the suite never hands it the secret) in every readable file under the
// roots, as a run of hex digits.
func findToken(args []string) {
	want, n := args[0], 0
	length, _ := strconv.Atoi(args[1])
	files := 0
	for _, root := range args[2:] {
		_ = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() && (p == "/proc" || p == "/sys" || p == "/dev") && root != p {
				return filepath.SkipDir
			}
			if !d.Type().IsRegular() {
				return nil
			}
			// The image's large binaries (kubectl) are shared, read-only and
			// built without any secret; what a call adds is small.
			if fi, err := d.Info(); err != nil || fi.Size() > 16<<20 {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return nil
			}
			files++
			if at := hexRunHolding(b, want, length); at >= 0 {
				breach("find the token", fmt.Sprintf("in %s at %d", p, at))
				n++
			}
			return nil
		})
	}
	if at := hexRunHolding([]byte(strings.Join(os.Environ(), "\n")), want, length); at >= 0 {
		breach("find the token", "in the environment")
		n++
	}
	n += findTokenInProcesses(want, length)
	if n == 0 {
		blocked("find the token", fmt.Sprintf("not in %d readable files under %v, the environment or other processes", files, args[2:]))
	}
	result("files_searched", files)
}

// hexRunHolding returns where in b a run of length hex digits hashes to
// want, or -1.
func hexRunHolding(b []byte, want string, length int) int {
	isHex := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' }
	for i := 0; i+length <= len(b); {
		j := i
		for j < len(b) && isHex(b[j]) {
			j++
		}
		for k := i; k+length <= j; k++ {
			sum := sha256.Sum256(b[k : k+length])
			if hex.EncodeToString(sum[:]) == want {
				return k
			}
		}
		i = j + 1
	}
	return -1
}

// kubeconfig looks for credentials in the kubeconfig. With "capability",
// a token is expected (a pod's call capability, which the case checks);
// nothing else may be there.
func kubeconfig(args []string) {
	path := os.Getenv("KUBECONFIG")
	b, err := os.ReadFile(path)
	if err != nil {
		blocked("read the kubeconfig", err)
		return
	}
	secrets := []string{"token", "password", "client-key", "exec:", "auth-provider"}
	if len(args) > 0 && args[0] == "capability" {
		secrets = secrets[1:]
		result("capability", gatewayToken())
	}
	found := false
	for _, secret := range secrets {
		if bytes.Contains(b, []byte(secret)) {
			breach("a credential in the kubeconfig", secret)
			found = true
		}
	}
	if !found {
		blocked("a credential in the kubeconfig", fmt.Sprintf("%s holds none (%d bytes)", path, len(b)))
	}
}

func tmpFill([]string) {
	f, err := os.Create(filepath.Join(os.TempDir(), "fill"))
	if err != nil {
		blocked("create a file in /tmp", err)
		return
	}
	chunk := make([]byte, 1<<20)
	var written int64
	for {
		n, err := f.Write(chunk)
		written += int64(n)
		if err != nil {
			blocked("fill /tmp", fmt.Sprintf("stopped after %d MiB: %v", written>>20, err))
			break
		}
		if written > 4<<30 {
			breach("fill /tmp", "wrote 4 GiB")
			break
		}
	}
	result("tmp_bytes", written)
}

func flood([]string) {
	line := []byte(strings.Repeat("flood ", 1000) + "\n")
	w := bufio.NewWriterSize(os.Stdout, 1<<16)
	for i := 0; i < 100_000; i++ { // about 600 MB
		if _, err := w.Write(line); err != nil {
			return
		}
	}
	w.Flush()
	breach("flood", "wrote 600 MB and was not stopped")
}

// memoryBomb touches memory until it is stopped.
func memoryBomb([]string) {
	var held [][]byte
	for mib := 1; mib <= 8192; mib++ {
		b := make([]byte, 1<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		held = append(held, b)
		if mib%32 == 0 {
			result("allocated_mib", mib)
		}
	}
	breach("memory bomb", fmt.Sprintf("held %d MiB", len(held)))
}

func fdExhaust([]string) {
	path := filepath.Join(os.TempDir(), "fd")
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		blocked("create a file", err)
		return
	}
	var files []*os.File
	for len(files) < 1_000_000 {
		f, err := os.Open(path)
		if err != nil {
			blocked("open files without end", fmt.Sprintf("stopped after %d: %v", len(files), err))
			result("open_files", len(files))
			return
		}
		files = append(files, f)
	}
	breach("open files without end", "opened a million")
}

// httpRequest sends one request to the call's gateway byte for byte as
// given (path spellings included): http METHOD PATH [Header: value]... [BODY=...]
// and prints the status and the body.
func httpRequest(args []string) {
	method, path := args[0], args[1]
	var raw bytes.Buffer
	host := gatewayHost()
	var headers []string
	body := ""
	for _, a := range args[2:] {
		if b, ok := strings.CutPrefix(a, "BODY="); ok {
			body = b
		} else if h, ok := strings.CutPrefix(a, "Host: "); ok {
			host = h // the one Host header, the plugin's choice
		} else {
			headers = append(headers, a)
		}
	}
	fmt.Fprintf(&raw, "%s %s HTTP/1.1\r\nHost: %s\r\n", method, path, host)
	ownToken := false
	for _, h := range headers {
		fmt.Fprintf(&raw, "%s\r\n", h)
		ownToken = ownToken || strings.HasPrefix(strings.ToLower(h), "authorization:")
	}
	// As kubectl does, send the kubeconfig's token, unless the case sends
	// one of its own.
	if tok := gatewayToken(); tok != "" && !ownToken {
		fmt.Fprintf(&raw, "Authorization: Bearer %s\r\n", tok)
	}
	if body != "" {
		fmt.Fprintf(&raw, "Content-Type: application/json\r\n")
	}
	fmt.Fprintf(&raw, "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len(body), body)
	resp, err := roundTrip(raw.Bytes())
	if err != nil {
		blocked(method+" "+path, err)
		return
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	result("status", resp.StatusCode)
	fmt.Printf("BODY: %s\n", b)
	if resp.StatusCode/100 == 2 {
		fmt.Printf("ANSWERED: %s %s: %d\n", method, path, resp.StatusCode)
	} else {
		blocked(method+" "+path, fmt.Sprintf("%d %s", resp.StatusCode, first(bytes.TrimSpace(b), 200)))
	}
}

func readResponse(r io.Reader) (*http.Response, error) {
	return http.ReadResponse(bufio.NewReader(r), nil)
}
