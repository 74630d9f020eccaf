package wasm

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
	"github.com/tetratelabs/wazero/sys"
	"golang.org/x/sync/singleflight"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox"
	"github.com/kubernetes-mcp-server/kubernetes-mcp-server/sandbox/wasm/abi"
)

// Name is the backend's name in results and logs.
const Name = "wasm"

// Config is the wasm sandbox of one server.
type Config struct {
	// CacheDir keeps compiled modules across restarts (wazero's compilation
	// cache); "" keeps them in memory only.
	CacheDir string
	// StateDir holds each call's folder; "" is the system's temporary folder.
	StateDir string
	Limits   Limits
	Logger   hclog.Logger
}

// MaxModuleBytes bounds a module file: the server reads it whole to hash
// and compile it. The largest real plugin seen, client-go's typed
// clientset, is 57 MB.
const MaxModuleBytes = 256 << 20

// DefaultLimits are the limits of a Config that sets none.
var DefaultLimits = Limits{MemoryMiB: 512, TmpMiB: 64, OpenFiles: 1024}

// withDefaults fills in what cfg leaves unset.
func (cfg Config) withDefaults() Config {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	if cfg.Limits.MemoryMiB <= 0 {
		cfg.Limits.MemoryMiB = DefaultLimits.MemoryMiB
	}
	if cfg.Limits.TmpMiB <= 0 {
		cfg.Limits.TmpMiB = DefaultLimits.TmpMiB
	}
	if cfg.Limits.OpenFiles <= 0 {
		cfg.Limits.OpenFiles = DefaultLimits.OpenFiles
	}
	return cfg
}

// Backend runs WebAssembly plugins, each call in a fresh module instance.
type Backend struct {
	cfg     Config
	log     hclog.Logger
	runtime wazero.Runtime
	cache   wazero.CompilationCache
	offered map[string]map[string]bool // module -> functions a guest may import

	mu       sync.Mutex
	byHash   map[string]*module    // sha256 hex -> module
	byFile   map[string]fileModule // path -> what was compiled from it
	compiles singleflight.Group
	closed   bool
	running  sync.WaitGroup
	closing  context.Context // done once Close begins: running guests end
	close    context.CancelFunc

	stats Stats
	// inspectMemory, set by tests, sees each guest's memory as it ends.
	inspectMemory func([]byte)
}

// fileModule is the module a plugin file held when it was last read.
type fileModule struct {
	identity fileIdentity
	sha256   string
}

// fileIdentity changes whenever the file's content may have: a rename over
// it, a write, or a touch.
type fileIdentity struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

func identityOf(fi os.FileInfo) (fileIdentity, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fileIdentity{}, false
	}
	return fileIdentity{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}, true
}

// Stats count the backend's compilations, for tests and figures.
type Stats struct {
	// Compiles is how many modules were compiled (from the disk cache or not).
	Compiles atomic.Int64
	// Hits is how many runs found their module compiled in memory.
	Hits atomic.Int64
	// Held is how many compiled modules are kept: one per content some
	// plugin file holds, or a run still uses.
	Held atomic.Int64
}

// New starts the server's one wazero runtime, with WASI and the host module
// of package abi.
func New(ctx context.Context, cfg Config) (*Backend, error) {
	cfg = cfg.withDefaults()
	if cfg.Limits.MemoryMiB > 4096 {
		return nil, fmt.Errorf("wasm memory limit of %d MiB is over the 4096 MiB a 32-bit guest can address", cfg.Limits.MemoryMiB)
	}
	rc := wazero.NewRuntimeConfig(). // the compiler where wazero has one, else its interpreter

						WithCloseOnContextDone(true).
						WithMemoryLimitPages(uint32(cfg.Limits.MemoryMiB * 16)) // 64 KiB pages
	var cache wazero.CompilationCache
	if cfg.CacheDir != "" {
		if err := os.MkdirAll(cfg.CacheDir, 0o700); err != nil {
			return nil, fmt.Errorf("wasm compilation cache: %w", err)
		}
		var err error
		if cache, err = wazero.NewCompilationCacheWithDir(cfg.CacheDir); err != nil {
			return nil, fmt.Errorf("wasm compilation cache %s: %w", cfg.CacheDir, err)
		}
		rc = rc.WithCompilationCache(cache)
	}
	r := wazero.NewRuntimeWithConfig(ctx, rc)
	b := &Backend{
		cfg: cfg, log: cfg.Logger, runtime: r, cache: cache,
		byHash: map[string]*module{}, byFile: map[string]fileModule{},
	}
	b.closing, b.close = context.WithCancel(context.Background())
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		r.Close(ctx)
		return nil, fmt.Errorf("instantiate WASI: %w", err)
	}
	if err := instantiateHostModule(ctx, r); err != nil {
		r.Close(ctx)
		return nil, err
	}
	b.offered = map[string]map[string]bool{}
	for _, name := range []string{Wasi, abi.Module} {
		fns := map[string]bool{}
		for fn := range r.Module(name).ExportedFunctionDefinitions() {
			fns[fn] = true
		}
		b.offered[name] = fns
	}
	return b, nil
}

// Name implements sandbox.Backend.
func (b *Backend) Name() string { return Name }

// Config returns the configuration the backend runs with, limits filled in.
func (b *Backend) Config() Config { return b.cfg }

// Stats returns the backend's counters.
func (b *Backend) Stats() *Stats { return &b.stats }

// Prepare compiles a plugin's module ahead of its first run, and says why
// it cannot run when it cannot (not WebAssembly, an import the host does not
// offer, no _start).
func (b *Backend) Prepare(ctx context.Context, plugin string) error {
	m, err := b.module(ctx, plugin)
	if err == nil {
		b.release(m)
	}
	return err
}

// module is one compiled plugin: its code, and the image of its memory at
// instantiation when its data was taken out of the code (splitData).
type module struct {
	compiled wazero.CompiledModule
	image    *memoryImage
	hash     string

	// Guarded by Backend.mu: runs using it, and whether no plugin file
	// holds its content any more, so it goes once the last run ends.
	refs  int
	stale bool
}

func (m *module) close(ctx context.Context) {
	m.compiled.Close(ctx)
	m.image.Close()
}

// module returns the compiled module of plugin's current content.
func (b *Backend) module(ctx context.Context, plugin string) (*module, error) {
	f, err := os.Open(plugin)
	if err != nil {
		return nil, fmt.Errorf("open plugin: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("stat plugin: %w", err)
	}
	id, ok := identityOf(fi)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, errors.New("the wasm sandbox is closed")
	}
	if known, found := b.byFile[plugin]; ok && found && known.identity == id {
		if m := b.byHash[known.sha256]; m != nil {
			m.refs++
			b.mu.Unlock()
			b.stats.Hits.Add(1)
			return m, nil
		}
	}
	b.mu.Unlock()

	if fi.Size() > MaxModuleBytes {
		return nil, fmt.Errorf("plugin %s is %d MiB, over the %d MiB a module may have", filepath.Base(plugin), fi.Size()>>20, MaxModuleBytes>>20)
	}
	code, err := io.ReadAll(io.LimitReader(f, MaxModuleBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read plugin: %w", err)
	}
	if len(code) > MaxModuleBytes {
		return nil, fmt.Errorf("plugin %s grew over the %d MiB a module may have while it was read", filepath.Base(plugin), MaxModuleBytes>>20)
	}
	// The content read is the content identified only if nothing changed
	// while it was read.
	if after, err := f.Stat(); err == nil {
		if id2, ok2 := identityOf(after); ok && ok2 && id2 != id {
			return nil, fmt.Errorf("plugin %s changed while it was read; try again", plugin)
		}
	}
	sum := sha256.Sum256(code)
	hash := hex.EncodeToString(sum[:])
	v, err, _ := b.compiles.Do(hash, func() (any, error) {
		b.mu.Lock()
		m := b.byHash[hash]
		b.mu.Unlock()
		if m != nil {
			return m, nil
		}
		m, err := b.compile(ctx, filepath.Base(plugin), code)
		if err != nil {
			return nil, err
		}
		m.hash = hash
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.closed {
			m.close(context.Background())
			return nil, errors.New("the wasm sandbox is closed")
		}
		b.byHash[hash] = m
		b.stats.Held.Add(1)
		return m, nil
	})
	if err != nil {
		return nil, err
	}
	m := v.(*module)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.byHash[hash] != m {
		return nil, fmt.Errorf("plugin %s changed while it was prepared; try again", plugin)
	}
	m.refs++
	m.stale = false
	if ok {
		b.fileChanged(plugin, fileModule{identity: id, sha256: hash})
	}
	return m, nil
}

// fileChanged records what plugin holds now, and lets go of the module it
// held before when no other file holds that content. b.mu is held.
func (b *Backend) fileChanged(plugin string, now fileModule) {
	before := b.byFile[plugin]
	b.byFile[plugin] = now
	if before.sha256 != now.sha256 {
		b.letGo(before.sha256)
	}
}

// Forget implements sandbox.Preparer: discovery no longer lists plugin, so
// its module goes once no other file holds its content and no run uses it.
func (b *Backend) Forget(plugin string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if before, ok := b.byFile[plugin]; ok {
		delete(b.byFile, plugin)
		b.letGo(before.sha256)
	}
}

// letGo marks the module of a content stale when no file holds it any
// more, and drops it if no run uses it. b.mu is held.
func (b *Backend) letGo(hash string) {
	if hash == "" {
		return
	}
	for _, f := range b.byFile {
		if f.sha256 == hash {
			return
		}
	}
	if old := b.byHash[hash]; old != nil {
		old.stale = true
		b.dropIfUnused(old)
	}
}

// release ends a run's use of m.
func (b *Backend) release(m *module) {
	b.mu.Lock()
	defer b.mu.Unlock()
	m.refs--
	b.dropIfUnused(m)
}

// dropIfUnused closes a stale module no run uses. b.mu is held.
func (b *Backend) dropIfUnused(m *module) {
	if m.stale && m.refs == 0 && b.byHash[m.hash] == m && !b.closed {
		delete(b.byHash, m.hash)
		b.stats.Held.Add(-1)
		m.close(context.Background())
	}
}

// compile compiles code and checks it is a WASI command that imports only
// what this host offers. Its data segments are merged, and taken out into
// a memory image where that keeps the module's meaning (datasegments.go).
func (b *Backend) compile(ctx context.Context, name string, code []byte) (*module, error) {
	b.stats.Compiles.Add(1)
	start := time.Now()
	m := &module{}
	code = coalesceData(code)
	if stripped, segs, size, ok := splitData(code, uint64(b.cfg.Limits.MemoryMiB)<<20); ok {
		img, err := newMemoryImage(size, segs)
		if err == nil {
			code, m.image = stripped, img
		} else {
			b.log.Debug("module data stays in the module", "plugin", name, "error", err)
		}
	}
	compiled, err := b.runtime.CompileModule(ctx, code)
	if err != nil {
		m.image.Close()
		return nil, fmt.Errorf("compile %s: %w", name, err)
	}
	m.compiled = compiled
	if err := b.checkImports(name, compiled); err != nil {
		m.close(ctx)
		return nil, err
	}
	if _, ok := compiled.ExportedFunctions()["_start"]; !ok {
		m.close(ctx)
		return nil, fmt.Errorf("%s is not a WASI command: it exports no _start function (build with GOOS=wasip1, or for wasm32-wasip1, as a program, not a library)", name)
	}
	b.log.Debug("compiled", "plugin", name, "bytes", len(code), "memory_image", m.image.sizeOrZero(), "took", time.Since(start))
	return m, nil
}

// checkImports names every import of m the host does not offer.
func (b *Backend) checkImports(name string, m wazero.CompiledModule) error {
	var missing []string
	for _, fn := range m.ImportedFunctions() {
		mod, fnName, _ := fn.Import()
		if !b.offered[mod][fnName] {
			missing = append(missing, mod+"."+fnName)
		}
	}
	for _, mem := range m.ImportedMemories() {
		mod, memName, _ := mem.Import()
		missing = append(missing, mod+"."+memName+" (a memory)")
	}
	if len(missing) == 0 {
		return nil
	}
	sort.Strings(missing)
	missing = slices.Compact(missing)
	return fmt.Errorf("%s imports %s, which this sandbox does not offer (it offers %s and %s)",
		name, strings.Join(missing, ", "), Wasi, abi.Module)
}

// Run implements sandbox.Backend: one fresh instance of the plugin's
// module, from the module's initial memory, with the call's profile and
// nothing more.
func (b *Backend) Run(ctx context.Context, spec sandbox.Spec) (sandbox.Result, error) {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return sandbox.Result{ExitCode: -1}, errors.New("the wasm sandbox is closed")
	}
	b.running.Add(1)
	b.mu.Unlock()
	defer b.running.Done()

	m, err := b.module(ctx, spec.Plugin)
	if err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("prepare wasm sandbox for %s: %w", filepath.Base(spec.Plugin), err)
	}
	defer b.release(m)
	if spec.Cluster != nil && spec.Cluster.Handler == nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("prepare wasm sandbox for %s: the cluster access has no in-process gateway", filepath.Base(spec.Plugin))
	}
	id := spec.ID
	if id == "" {
		id = "run"
	}
	call := b.cfg.CallFor(id, spec.Plugin, spec.Args, spec.Env, spec.Cluster != nil)
	call.Timeout = spec.RunTimeout
	settings := Spec(call)

	dir, err := os.MkdirTemp(b.cfg.StateDir, "kmcp-wasm-"+sanitize(id)+"-")
	if err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("prepare wasm sandbox for %s: %w", filepath.Base(spec.Plugin), err)
	}
	defer func() {
		if err := os.RemoveAll(dir); err != nil {
			b.log.Warn("could not remove a call's folder", "dir", dir, "error", err)
		}
	}()
	mc, err := b.moduleConfig(settings, spec, dir)
	if err != nil {
		return sandbox.Result{ExitCode: -1}, fmt.Errorf("prepare wasm sandbox for %s: %w", filepath.Base(spec.Plugin), err)
	}

	if spec.RunTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, spec.RunTimeout)
		defer cancel()
	}
	// Close ends the guests still running.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(b.closing, cancel)
	defer stop()
	mc = mc.WithNanosleep(sleepUntilDone(ctx))
	guest := &guestCluster{log: b.log}
	if spec.Cluster != nil {
		guest.handler = spec.Cluster.Handler
	}
	runCtx := withGuestCluster(ctx, guest)
	runCtx = experimental.WithMemoryAllocator(runCtx, mappedAllocator(uint64(settings.MemoryLimitMiB)<<20, m.image, b.inspectMemory))

	start := time.Now()
	mod, err := b.runtime.InstantiateModule(runCtx, m.compiled, mc)
	res := sandbox.Result{Duration: time.Since(start)}
	if mod != nil {
		mod.Close(context.Background())
	}
	return b.result(ctx, res, err, spec)
}

// sleepUntilDone is a guest's sleep (poll_oneoff with a clock), cut short
// when ctx ends: wazero's own sleeps the whole time, out of reach of ctx.
func sleepUntilDone(ctx context.Context) sys.Nanosleep {
	return func(ns int64) {
		t := time.NewTimer(time.Duration(ns))
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
		}
	}
}

// result reads how a guest ended.
func (b *Backend) result(ctx context.Context, res sandbox.Result, err error, spec sandbox.Spec) (sandbox.Result, error) {
	var exit *sys.ExitError
	switch {
	case ctx.Err() != nil:
		// Ended after its time or cancellation, even if it returned by
		// itself in the meantime (say, from a round_trip the deadline cut
		// short): the call did not finish in time.
		res.ExitCode, res.Stopped = -1, true
	case err == nil:
		res.ExitCode = 0
	case errors.As(err, &exit):
		res.ExitCode = int(exit.ExitCode())
	default:
		// A trap: unreachable, an access out of bounds, a stack overflow.
		// The guest is gone; say why where its errors go.
		res.ExitCode, res.Signal = -1, "a WebAssembly trap"
		if spec.Stderr != nil {
			fmt.Fprintf(spec.Stderr, "\nwasm sandbox: the plugin trapped: %v\n", err)
		}
	}
	return res, nil
}

// moduleConfig turns settings into wazero's configuration of one instance:
// the one place where a guest is given anything.
func (b *Backend) moduleConfig(s *Settings, spec sandbox.Spec, dir string) (wazero.ModuleConfig, error) {
	mc := wazero.NewModuleConfig().
		WithName(""). // anonymous: many instances of one module run at once
		WithArgs(s.Args...).
		WithSysWalltime().WithSysNanotime(). // sleep: Run's sleepUntilDone
		WithRandSource(rand.Reader).
		WithStdin(orEmpty(spec.Stdin)).
		WithStdout(orDiscard(spec.Stdout)).
		WithStderr(orDiscard(spec.Stderr))
	for _, kv := range s.Env {
		k, v, _ := strings.Cut(kv, "=")
		mc = mc.WithEnv(k, v)
	}
	fsc := wazero.NewFSConfig()
	mount := func(fs experimentalsys.FS, guest string) { fsc = fsc.(sysfs.FSConfig).WithSysFSMount(fs, guest) }
	open := newOpenFiles(s.OpenFiles)
	for _, m := range s.Mounts {
		host := filepath.Join(dir, strings.TrimPrefix(m.Guest, "/"))
		if err := os.MkdirAll(host, 0o700); err != nil {
			return nil, err
		}
		switch {
		case m.Guest == KubeconfigDir:
			if err := writeKubeconfig(spec.Cluster, filepath.Join(host, "config")); err != nil {
				return nil, err
			}
			mount(open.limit(&sysfs.ReadFS{FS: sysfs.DirFS(host)}), m.Guest)
		case m.ReadOnly:
			mount(open.limit(&sysfs.ReadFS{FS: sysfs.DirFS(host)}), m.Guest)
		default:
			mount(open.limit(newCallFS(host, m.LimitMiB<<20)), m.Guest)
		}
	}
	return mc.WithFSConfig(fsc), nil
}

// writeKubeconfig writes the call's kubeconfig for the guest: the gateway
// at abi.GatewayURL, no credential.
func writeKubeconfig(access *sandbox.ClusterAccess, path string) error {
	if access == nil || access.Kubeconfig == nil {
		return errors.New("the call has a cluster but no kubeconfig for it")
	}
	data, err := clientcmd.Write(*access.Kubeconfig(abi.GatewayURL))
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	return os.WriteFile(path, data, 0o400)
}

// CallFor is the profile input of one call: the same for a run and for
// `profile show`.
func (cfg Config) CallFor(id, plugin string, args, env []string, withCluster bool) Call {
	return Call{ID: id, Plugin: plugin, Args: args, Env: env, Cluster: withCluster, Limits: cfg.Limits}
}

// Close ends the runs in flight, waits for them, and releases the runtime
// and every module.
func (b *Backend) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.close()
	b.running.Wait()
	ctx := context.Background()
	b.mu.Lock()
	for _, m := range b.byHash {
		m.image.Close()
	}
	b.mu.Unlock()
	err := b.runtime.Close(ctx)
	if b.cache != nil {
		err = errors.Join(err, b.cache.Close(ctx))
	}
	return err
}

func orEmpty(r io.Reader) io.Reader {
	if r == nil {
		return strings.NewReader("")
	}
	return r
}

func orDiscard(w io.Writer) io.Writer {
	if w == nil {
		return io.Discard
	}
	return w
}

// sanitize keeps a call id fit for a folder name.
func sanitize(id string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' {
			return r
		}
		return '_'
	}, id)
}
