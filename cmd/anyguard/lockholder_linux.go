package main

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// checkLockHolder checks that process pid holds the flock of f, as
// /proc/locks tells: a pid file that names another process (written by
// whoever could write the state directory) must not make `client add`
// signal that process. SIGHUP ends a process that does not handle it.
func checkLockHolder(f *os.File, pid int) error {
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	dev := fmt.Sprintf("%02x:%02x:%d", (st.Dev>>8)&0xfff|(st.Dev>>32)&^0xfff, st.Dev&0xff|(st.Dev>>12)&^0xff, st.Ino)
	locks, err := os.Open("/proc/locks")
	if err != nil {
		return err
	}
	defer locks.Close()
	sc := bufio.NewScanner(locks)
	for sc.Scan() {
		// 1: FLOCK  ADVISORY  WRITE 1234 00:2e:56789 0 EOF
		f := strings.Fields(sc.Text())
		if len(f) < 6 || f[1] != "FLOCK" {
			continue
		}
		if p, err := strconv.Atoi(f[4]); err == nil && p == pid && f[5] == dev {
			return nil
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("pid %d does not hold the pid file's lock: not signalling it", pid)
}
