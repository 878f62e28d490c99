package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// clockTick is the unit of the CPU times in /proc/PID/stat (USER_HZ, 100
// on Linux).
const clockTick = 10 * time.Millisecond

// procTimes is one line of /proc/PID/stat, the fields that matter here.
type procTimes struct {
	ppid int
	// own is utime+stime (all threads); reaped is cutime+cstime, the time
	// of children that exited and were waited for.
	own, reaped time.Duration
}

func readProcStat(pid int) (procTimes, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procTimes{}, err
	}
	// The command name, in parentheses, may hold spaces: fields start after
	// the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procTimes{}, fmt.Errorf("/proc/%d/stat: no ')'", pid)
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state): ppid is field 4, utime..cstime 14..17.
	if len(f) < 15 {
		return procTimes{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	n := func(k int) int64 { v, _ := strconv.ParseInt(string(f[k-3]), 10, 64); return v }
	return procTimes{
		ppid:   int(n(4)),
		own:    time.Duration(n(14)+n(15)) * clockTick,
		reaped: time.Duration(n(16)+n(17)) * clockTick,
	}, nil
}

// treeCPU is the CPU time used so far by process pid and its descendants:
// their own times, plus the times of descendants that exited and were
// reaped (PostgreSQL's backends, children of the postmaster). A child that
// exited between two samples but is not reaped yet is missed, so runs keep
// their connections open across the measurement.
func treeCPU(pid int) (time.Duration, error) {
	root, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	all := map[int]procTimes{pid: root}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	for _, d := range dirs {
		p, err := strconv.Atoi(filepath.Base(d))
		if err != nil || p == pid {
			continue
		}
		if t, err := readProcStat(p); err == nil {
			all[p] = t
		}
	}
	in := func(p int) bool { // p descends from pid
		for range 64 {
			if p == pid {
				return true
			}
			t, ok := all[p]
			if !ok || t.ppid <= 1 {
				return false
			}
			p = t.ppid
		}
		return false
	}
	var sum time.Duration
	for p, t := range all {
		if in(p) {
			sum += t.own + t.reaped
		}
	}
	return sum, nil
}

// selfCPU is this process's CPU time so far (user + system).
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
