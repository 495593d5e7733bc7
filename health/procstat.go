package health

import (
	"errors"
	"strconv"
	"strings"
)

// procStat is what the process series need from /proc/self/stat.
type procStat struct {
	cpuTicks   uint64 // utime + stime, in clock ticks
	startTicks uint64 // start time after boot, in clock ticks
	vsize      uint64 // bytes
	rssPages   uint64
}

var errProcStat = errors.New("health: unreadable /proc/self/stat")

// parseProcStat reads the fields of proc(5)'s /proc/PID/stat that
// procStat holds. The command name, in parentheses, may hold spaces and
// parentheses itself; the fields start after its last ')'.
func parseProcStat(s string) (procStat, error) {
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return procStat{}, errProcStat
	}
	// fields[0] is field 3 of proc(5), state.
	fields := strings.Fields(s[i+1:])
	if len(fields) < 22 {
		return procStat{}, errProcStat
	}
	var v [5]uint64
	for k, f := range []int{14, 15, 22, 23, 24} {
		n, err := strconv.ParseUint(fields[f-3], 10, 64)
		if err != nil {
			return procStat{}, errProcStat
		}
		v[k] = n
	}
	return procStat{cpuTicks: v[0] + v[1], startTicks: v[2], vsize: v[3], rssPages: v[4]}, nil
}

// parseBootTime returns btime (seconds since 1970) from /proc/stat.
func parseBootTime(s string) (uint64, error) {
	for line := range strings.Lines(s) {
		if rest, ok := strings.CutPrefix(line, "btime "); ok {
			return strconv.ParseUint(strings.TrimSpace(rest), 10, 64)
		}
	}
	return 0, errors.New("health: no btime in /proc/stat")
}
