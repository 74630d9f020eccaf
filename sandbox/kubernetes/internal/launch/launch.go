// Package launch is how the kubernetes backend hands a call to the pod's
// first program, kmcp-pod: a header, then the plugin's bytes, then the
// plugin's stdin, all on the stdin of one exec into the pod. No shell
// reads any of it, and the argv travels as a list.
package launch

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Paths inside every sandbox pod.
const (
	// Program is the pod's first program (kmcp-pod), from the sandbox image.
	Program = "/usr/local/libexec/kmcp-pod"
	// PluginDir is a memory-backed volume the plugin file is written to.
	PluginDir = "/plugin"
	// KubeconfigDir holds the call's kubeconfig, KubeconfigPath.
	KubeconfigDir  = "/run/kube"
	KubeconfigPath = KubeconfigDir + "/config"
)

// The modes of Program, its first argument.
const (
	// ModeWait is the container's own process: it waits, reaping what the
	// calls leave, until the pod is deleted.
	ModeWait = "wait"
	// ModeRun reads a Header (and the plugin's bytes, when Size is set)
	// from stdin, checks the plugin's sha256, and execs it; the rest of
	// stdin is the plugin's.
	ModeRun = "run"
	// ModeLoad writes and checks the plugin's bytes ahead of its call (a
	// warm pod's), then exits 0.
	ModeLoad = "load"
)

// Header is what one exec of Program reads first.
type Header struct {
	// Argv is the plugin's argv; Argv[0] is its file in PluginDir.
	Argv []string `json:"argv"`
	// Env is the plugin's whole environment.
	Env []string `json:"env"`
	// Kubeconfig, when set, is written to KubeconfigPath before the plugin
	// runs: it names the call's gateway and holds only the call's
	// capability.
	Kubeconfig []byte `json:"kubeconfig,omitempty"`
	// SHA256 is the hex digest the plugin file must have: the one
	// discovery verified on the server.
	SHA256 string `json:"sha256"`
	// Size is how many bytes of the plugin file follow the header; 0 when
	// ModeLoad wrote it before.
	Size int64 `json:"size"`
	// NoFile, when set, is the plugin's open-file limit (RLIMIT_NOFILE,
	// soft and hard): a Pod cannot set rlimits, but a process may lower
	// its own before it execs.
	NoFile uint64 `json:"nofile,omitempty"`
	// DenySyscalls are system calls the plugin may not make, on top of the
	// runtime's seccomp profile: kmcp-pod installs a filter that fails
	// them with EPERM, and refuses to run the plugin if it cannot.
	DenySyscalls []string `json:"deny_syscalls,omitempty"`
}

// MaxHeader bounds a header: argv, environment and a kubeconfig.
const MaxHeader = 4 << 20

// Write writes h: its length as 4 bytes, big-endian, then its JSON.
func Write(w io.Writer, h Header) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	if len(data) > MaxHeader {
		return fmt.Errorf("launch header of %d bytes is over %d", len(data), MaxHeader)
	}
	buf := binary.BigEndian.AppendUint32(make([]byte, 0, 4+len(data)), uint32(len(data)))
	_, err = w.Write(append(buf, data...))
	return err
}

// Read reads a header written by Write, and not one byte more: what
// follows is the plugin's.
func Read(r io.Reader) (Header, error) {
	var h Header
	var size [4]byte
	if _, err := io.ReadFull(r, size[:]); err != nil {
		return h, fmt.Errorf("read launch header: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n > MaxHeader {
		return h, fmt.Errorf("launch header of %d bytes is over %d", n, MaxHeader)
	}
	data := make([]byte, n)
	if _, err := io.ReadFull(r, data); err != nil {
		return h, fmt.Errorf("read launch header: %w", err)
	}
	if err := json.Unmarshal(data, &h); err != nil {
		return h, fmt.Errorf("read launch header: %w", err)
	}
	if len(h.Argv) == 0 {
		return h, errors.New("launch header has no argv")
	}
	return h, nil
}
