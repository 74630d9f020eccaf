package testenv

import (
	"fmt"
	"os"
	"sort"
	"strings"
	"syscall"
)

// ProcessAlive reports whether a process runs. A zombie does not: it is
// dead and only waits to be reaped, which a PID 1 that never reaps won't do.
func ProcessAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	fields := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
	return len(fields) > 0 && fields[0] != "Z"
}

// MaxOverlap reads lines "start <ns>" and "end <ns>", which fixture plugins
// append to a log, and returns how many runs overlapped at most, and how
// many runs there were.
func MaxOverlap(log string) (most, runs int, err error) {
	type event struct {
		at    int64
		delta int
	}
	var events []event
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var kind string
		var at int64
		if _, err := fmt.Sscanf(line, "%s %d", &kind, &at); err != nil || (kind != "start" && kind != "end") {
			return 0, 0, fmt.Errorf("bad log line %q", line)
		}
		delta := 1
		if kind == "end" {
			delta = -1
		} else {
			runs++
		}
		events = append(events, event{at, delta})
	}
	// At equal times an end comes first: the two runs did not overlap.
	sort.Slice(events, func(i, j int) bool {
		return events[i].at < events[j].at || events[i].at == events[j].at && events[i].delta < events[j].delta
	})
	running := 0
	for _, e := range events {
		running += e.delta
		most = max(most, running)
	}
	return most, runs, nil
}
