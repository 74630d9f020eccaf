// Command kmcp-launch is the first program of every plugin container: runc
// creates the container with it, ahead of the call when the container
// waits in the warm pool, and when the call starts the container it
// replaces itself with the plugin, with the argv and environment the
// backend wrote into the call's launch folder (read-only at /run/launch).
// It runs under the container's whole profile, so it can do nothing the
// plugin could not. The sandbox image carries it at
// /usr/local/libexec/kmcp-launch (hack/build-image.sh builds it).
package main

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
)

// The launch folder's files, each a list of NUL-terminated strings; the
// backend writes them (see sandbox/container's writeLaunch).
const (
	argvFile = "/run/launch/argv"
	envFile  = "/run/launch/env"
)

// exitLaunchFailed is the exit code when the plugin could not be started,
// as a shell's for a command it cannot run.
const exitLaunchFailed = 127

func main() {
	argv, err := readList(argvFile)
	if err == nil && len(argv) == 0 {
		err = fmt.Errorf("%s is empty", argvFile)
	}
	var env []string
	if err == nil {
		env, err = readList(envFile)
	}
	if err == nil {
		err = syscall.Exec(argv[0], argv, env)
		err = fmt.Errorf("exec %s: %w", argv[0], err)
	}
	fmt.Fprintf(os.Stderr, "kmcp-launch: %v\n", err)
	os.Exit(exitLaunchFailed)
}

// readList reads a file of NUL-terminated strings.
func readList(path string) ([]string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(data) > 0 && data[len(data)-1] != 0 {
		return nil, fmt.Errorf("%s: last entry not NUL-terminated", path)
	}
	var list []string
	for len(data) > 0 {
		i := bytes.IndexByte(data, 0)
		list = append(list, string(data[:i]))
		data = data[i+1:]
	}
	return list, nil
}
