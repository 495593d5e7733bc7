package health

import (
	"os"
	"syscall"
)

// userHZ is the unit of /proc's clock ticks: USER_HZ, 100 on every Linux
// architecture Go supports.
const userHZ = 100

// collectProcess adds the process's series from /proc/self; a file that
// cannot be read leaves its series out.
func collectProcess(e *exposition) {
	if b, err := os.ReadFile("/proc/self/stat"); err == nil {
		if st, err := parseProcStat(string(b)); err == nil {
			e.add(descProcCPU, float64(st.cpuTicks)/userHZ)
			e.gauge(descProcVSZ, float64(st.vsize))
			e.gauge(descProcRSS, float64(st.rssPages)*float64(os.Getpagesize()))
			if b, err := os.ReadFile("/proc/stat"); err == nil {
				if boot, err := parseBootTime(string(b)); err == nil {
					e.gauge(descProcStart, float64(boot)+float64(st.startTicks)/userHZ)
				}
			}
		}
	}
	if d, err := os.Open("/proc/self/fd"); err == nil {
		names, err := d.Readdirnames(-1)
		d.Close()
		if err == nil {
			e.gauge(descProcFDs, float64(len(names)-1)) // less the one reading it
		}
	}
	var lim syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim) == nil {
		e.gauge(descProcMaxFD, float64(lim.Cur))
	}
}
