package netns

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcessCPU returns the user plus system CPU time of process pid.
func ProcessCPU(pid int) (time.Duration, error) {
	return StatCPU("/proc/" + strconv.Itoa(pid) + "/stat")
}

// StatCPU returns the user plus system CPU time recorded in a
// /proc/…/stat file (a process's, or /proc/thread-self/stat for the
// calling thread). Linux only: elsewhere the file does not exist and the
// error says so. Unlike the rest of the package it needs no root.
func StatCPU(path string) (time.Duration, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	// The command name may contain spaces; fields start after ") ".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("%s: malformed", path)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("%s: malformed", path)
	}
	// utime and stime are fields 14 and 15 of the line, in clock ticks
	// (USER_HZ, 100 on Linux).
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("%s: malformed times", path)
	}
	return time.Duration(ut+st) * (time.Second / 100), nil
}
