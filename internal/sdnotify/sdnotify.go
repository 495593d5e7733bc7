// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)): newline-separated VAR=VALUE assignments in one datagram
// to the AF_UNIX socket named by $NOTIFY_SOCKET, a path or, starting with
// '@', an abstract socket name. It is what a Type=notify unit needs
// (READY=1, RELOADING=1, STOPPING=1, WATCHDOG=1) and nothing more.
//
// Without $NOTIFY_SOCKET (not started by systemd, or by a unit of another
// type) a Notifier is a no-op, so callers need not ask.
package sdnotify

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// The states a gateway reports.
const (
	Ready     = "READY=1"
	Stopping  = "STOPPING=1"
	Reloading = "RELOADING=1"
	Watchdog  = "WATCHDOG=1"
)

// Notifier sends notifications to systemd. The zero value and a nil
// *Notifier are no-ops. Its methods are safe for concurrent use.
type Notifier struct {
	addr     *net.UnixAddr // nil: no-op
	watchdog time.Duration // 0: no watchdog requested
}

// FromEnv reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID through
// getenv (os.Getenv in production). pid is this process's id: a watchdog
// meant for another process (WATCHDOG_PID set and different) is ignored,
// as sd_watchdog_enabled(3) does. A malformed value is an error.
func FromEnv(getenv func(string) string, pid int) (*Notifier, error) {
	n := &Notifier{}
	switch sock := getenv("NOTIFY_SOCKET"); {
	case sock == "":
		return n, nil
	case sock[0] != '/' && sock[0] != '@', len(sock) < 2:
		return nil, fmt.Errorf("NOTIFY_SOCKET %q: want an absolute path or an abstract name starting with @", sock)
	default:
		// Go's net package turns a leading '@' into the NUL byte of an
		// abstract address.
		n.addr = &net.UnixAddr{Name: sock, Net: "unixgram"}
	}
	usec := getenv("WATCHDOG_USEC")
	if usec == "" {
		return n, nil
	}
	if p := getenv("WATCHDOG_PID"); p != "" {
		wpid, err := strconv.Atoi(p)
		if err != nil || wpid <= 0 {
			return nil, fmt.Errorf("WATCHDOG_PID %q: not a process id", p)
		}
		if wpid != pid {
			return n, nil
		}
	}
	us, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || us == 0 || us > uint64(24*time.Hour/time.Microsecond) {
		return nil, fmt.Errorf("WATCHDOG_USEC %q: want a positive number of microseconds up to a day", usec)
	}
	n.watchdog = time.Duration(us) * time.Microsecond
	return n, nil
}

// Enabled reports whether notifications go anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// WatchdogTimeout is the unit's WatchdogSec, or 0 when systemd expects no
// WATCHDOG=1 from this process. Send one at least every half of it.
func (n *Notifier) WatchdogTimeout() time.Duration {
	if n == nil {
		return 0
	}
	return n.watchdog
}

// Notify sends the assignments (such as Ready, or "STATUS=text") in one
// datagram. It is a no-op when the Notifier is not Enabled.
func (n *Notifier) Notify(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	if len(assignments) == 0 {
		return errors.New("sd_notify: nothing to send")
	}
	for _, a := range assignments {
		if !strings.Contains(a, "=") || strings.Contains(a, "\n") {
			return fmt.Errorf("sd_notify: %q is not one VAR=VALUE assignment", a)
		}
	}
	c, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer c.Close()
	if _, err := c.Write([]byte(strings.Join(assignments, "\n") + "\n")); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// NotifyReloading sends RELOADING=1 with MONOTONIC_USEC, the
// CLOCK_MONOTONIC time that systemd 253 and later want with it (older
// versions ignore it). Send Ready when the reload is over.
func (n *Notifier) NotifyReloading() error {
	if us, ok := monotonicUsec(); ok {
		return n.Notify(Reloading, "MONOTONIC_USEC="+strconv.FormatUint(us, 10))
	}
	return n.Notify(Reloading)
}
