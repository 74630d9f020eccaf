package wasm

import (
	"io/fs"
	"sync"
	"sync/atomic"

	experimentalsys "github.com/tetratelabs/wazero/experimental/sys"
	"github.com/tetratelabs/wazero/experimental/sysfs"
)

// callFS is the guest's writable folder: a host folder of the call's own,
// with a bound on what the guest may write to it and no links at all.
//
// wazero resolves guest paths under the folder by name, but the host kernel
// would follow a symbolic link the guest made there to anywhere on the host,
// so making links is refused (ENOTSUP), as is a hard link (a way to grow a
// file the quota has counted once). Growth of files counts against the
// quota; removing a file gives its size back once no one holds it open
// (until then its bytes are still on the host's disk).
type callFS struct {
	experimentalsys.FS
	left *atomic.Int64 // bytes the guest may still write

	mu   sync.Mutex
	open map[uint64]int  // inode -> files open on it
	gone map[uint64]bool // removed while open: given back on the last close
}

func newCallFS(dir string, limitBytes int64) *callFS {
	left := &atomic.Int64{}
	left.Store(limitBytes)
	return &callFS{FS: sysfs.DirFS(dir), left: left, open: map[uint64]int{}, gone: map[uint64]bool{}}
}

func (f *callFS) Symlink(string, string) experimentalsys.Errno { return experimentalsys.ENOTSUP }

func (f *callFS) Link(string, string) experimentalsys.Errno { return experimentalsys.ENOTSUP }

func (f *callFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	var before int64
	if flag&experimentalsys.O_TRUNC != 0 {
		if st, errno := f.FS.Stat(path); errno == 0 && st.Mode.IsRegular() {
			before = st.Size
		}
	}
	file, errno := f.FS.OpenFile(path, flag, perm)
	if errno != 0 {
		return nil, errno
	}
	st, errno := file.Stat()
	if errno != 0 {
		file.Close()
		return nil, errno
	}
	f.left.Add(before) // truncated away
	f.mu.Lock()
	f.open[st.Ino]++
	f.mu.Unlock()
	return &callFile{File: file, left: f.left, fs: f, ino: st.Ino}, 0
}

func (f *callFS) Unlink(path string) experimentalsys.Errno {
	st, statErr := f.FS.Lstat(path)
	errno := f.FS.Unlink(path)
	if errno == 0 && statErr == 0 && st.Mode.IsRegular() && st.Nlink <= 1 {
		f.mu.Lock()
		if f.open[st.Ino] > 0 {
			f.gone[st.Ino] = true
		} else {
			f.left.Add(st.Size)
		}
		f.mu.Unlock()
	}
	return errno
}

// callFile counts a file's growth against its folder's quota.
type callFile struct {
	experimentalsys.File
	left *atomic.Int64
	fs   *callFS
	ino  uint64
}

// Close gives a removed file's space back when it was the last one open.
func (f *callFile) Close() experimentalsys.Errno {
	st, statErr := f.File.Stat()
	errno := f.File.Close()
	f.fs.mu.Lock()
	defer f.fs.mu.Unlock()
	if f.fs.open[f.ino]--; f.fs.open[f.ino] > 0 {
		return errno
	}
	delete(f.fs.open, f.ino)
	if f.fs.gone[f.ino] {
		delete(f.fs.gone, f.ino)
		if statErr == 0 {
			f.left.Add(st.Size)
		}
	}
	return errno
}

// grow takes the bytes a write of n at off would add, or fails with EIO.
func (f *callFile) grow(off, n int64) experimentalsys.Errno {
	st, errno := f.File.Stat()
	if errno != 0 {
		return errno
	}
	if off < 0 { // an append
		off = st.Size
	}
	add := off + n - st.Size
	if add <= 0 {
		return 0
	}
	if f.left.Add(-add) < 0 {
		f.left.Add(add)
		return experimentalsys.EIO // wazero has no ENOSPC; the guest sees an I/O error
	}
	return 0
}

func (f *callFile) Write(buf []byte) (int, experimentalsys.Errno) {
	off := int64(-1)
	if !f.File.IsAppend() {
		pos, errno := f.File.Seek(0, 1) // io.SeekCurrent
		if errno != 0 {
			return 0, errno
		}
		off = pos
	}
	if errno := f.grow(off, int64(len(buf))); errno != 0 {
		return 0, errno
	}
	return f.File.Write(buf)
}

func (f *callFile) Pwrite(buf []byte, off int64) (int, experimentalsys.Errno) {
	if errno := f.grow(off, int64(len(buf))); errno != 0 {
		return 0, errno
	}
	return f.File.Pwrite(buf, off)
}

func (f *callFile) Truncate(size int64) experimentalsys.Errno {
	st, errno := f.File.Stat()
	if errno != 0 {
		return errno
	}
	if size > st.Size {
		if errno := f.grow(st.Size, size-st.Size); errno != 0 {
			return errno
		}
	} else {
		defer f.left.Add(st.Size - size)
	}
	return f.File.Truncate(size)
}

// openFiles counts the files one guest holds open, in all its folders:
// each is a file descriptor of the server's process.
type openFiles struct {
	held atomic.Int64
	max  int64
}

func newOpenFiles(max int64) *openFiles { return &openFiles{max: max} }

// limit makes fs count its opens against the guest's bound.
func (o *openFiles) limit(fs experimentalsys.FS) experimentalsys.FS {
	return &limitedFS{FS: fs, open: o}
}

type limitedFS struct {
	experimentalsys.FS
	open *openFiles
}

func (f *limitedFS) OpenFile(path string, flag experimentalsys.Oflag, perm fs.FileMode) (experimentalsys.File, experimentalsys.Errno) {
	if f.open.held.Add(1) > f.open.max {
		f.open.held.Add(-1)
		return nil, experimentalsys.EAGAIN // wazero's errnos have no EMFILE
	}
	file, errno := f.FS.OpenFile(path, flag, perm)
	if errno != 0 {
		f.open.held.Add(-1)
		return nil, errno
	}
	return &countedFile{File: file, open: f.open}, 0
}

// countedFile gives its place back when closed, once.
type countedFile struct {
	experimentalsys.File
	open   *openFiles
	closed atomic.Bool
}

func (f *countedFile) Close() experimentalsys.Errno {
	if !f.closed.Swap(true) {
		defer f.open.held.Add(-1)
	}
	return f.File.Close()
}
