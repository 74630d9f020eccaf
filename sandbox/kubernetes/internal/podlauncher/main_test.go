package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"unsafe"

	"golang.org/x/sys/unix"
)

// A system call the filter does not know fails the launch: a filter short
// of what the header asked for never runs a plugin.
func TestAnUnknownSystemCallFailsTheFilter(t *testing.T) {
	if err := denySyscalls([]string{"io_uring_setup", "no_such_call"}); err == nil || !strings.Contains(err.Error(), "no_such_call") {
		t.Fatalf("denySyscalls with an unknown name: %v", err)
	}
}

// The filter, installed in a child process (it cannot be removed), fails
// io_uring_setup with EPERM and lets other calls through, in every thread
// and after an exec.
func TestTheFilterRefusesIOURingAndNothingElse(t *testing.T) {
	if os.Getenv("KMCP_FILTER_CHILD") == "1" {
		if err := denySyscalls([]string{"io_uring_setup", "io_uring_enter", "io_uring_register"}); err != nil {
			t.Fatal(err)
		}
		params := make([]byte, 120) // struct io_uring_params
		if _, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, 1, uintptr(unsafe.Pointer(&params[0])), 0); errno != unix.EPERM {
			t.Fatalf("io_uring_setup: %v, want EPERM", errno)
		}
		if out, err := exec.Command("/bin/true").CombinedOutput(); err != nil {
			t.Fatalf("a program run after the filter: %v %s", err, out)
		}
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run", "^TestTheFilterRefusesIOURingAndNothingElse$", "-test.v")
	cmd.Env = append(os.Environ(), "KMCP_FILTER_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("the filtered child: %v\n%s", err, out)
	}
}
