package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// listen opens a real unixgram socket as systemd does and returns its
// name as NOTIFY_SOCKET gives it and a function that reads one datagram.
func listen(t *testing.T, abstract bool) (string, func() string) {
	t.Helper()
	name := filepath.Join(t.TempDir(), "notify")
	if abstract {
		name = fmt.Sprintf("@anyguard-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return name, func() string {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 4096)
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("reading the notification: %v", err)
		}
		return string(buf[:n])
	}
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestNotifyPathAndAbstract(t *testing.T) {
	for _, abstract := range []bool{false, true} {
		t.Run(fmt.Sprintf("abstract=%v", abstract), func(t *testing.T) {
			name, read := listen(t, abstract)
			n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": name}), 1)
			if err != nil {
				t.Fatal(err)
			}
			if !n.Enabled() {
				t.Fatal("Enabled() = false with NOTIFY_SOCKET set")
			}
			if err := n.Notify(Ready); err != nil {
				t.Fatal(err)
			}
			if got := read(); got != "READY=1\n" {
				t.Errorf("got %q, want READY=1", got)
			}
			if err := n.Notify(Stopping, "STATUS=draining for 30s"); err != nil {
				t.Fatal(err)
			}
			if got := read(); got != "STOPPING=1\nSTATUS=draining for 30s\n" {
				t.Errorf("got %q: want both assignments in one datagram", got)
			}
		})
	}
}

func TestNotifyReloadingCarriesMonotonicTime(t *testing.T) {
	name, read := listen(t, false)
	n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": name}), 1)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := monotonicUsec()
	if err := n.NotifyReloading(); err != nil {
		t.Fatal(err)
	}
	after, _ := monotonicUsec()
	got := read()
	lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
	if len(lines) != 2 || lines[0] != Reloading {
		t.Fatalf("got %q, want RELOADING=1 then MONOTONIC_USEC", got)
	}
	us, err := strconv.ParseUint(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("second line %q: want MONOTONIC_USEC=<microseconds>", lines[1])
	}
	if us < before || us > after {
		t.Errorf("MONOTONIC_USEC=%d, want between %d and %d (CLOCK_MONOTONIC)", us, before, after)
	}
}

// Without NOTIFY_SOCKET everything is a no-op, including on a nil
// Notifier.
func TestNoSocketIsNoOp(t *testing.T) {
	n, err := FromEnv(env(nil), 1)
	if err != nil {
		t.Fatal(err)
	}
	var nilN *Notifier
	for _, n := range []*Notifier{n, nilN, {}} {
		if n.Enabled() {
			t.Error("Enabled() = true without NOTIFY_SOCKET")
		}
		if err := n.Notify(Ready); err != nil {
			t.Errorf("Notify without a socket: %v", err)
		}
		if err := n.NotifyReloading(); err != nil {
			t.Errorf("NotifyReloading without a socket: %v", err)
		}
		if d := n.WatchdogTimeout(); d != 0 {
			t.Errorf("WatchdogTimeout() = %v without a socket", d)
		}
	}
	// A watchdog without a socket to feed it is no watchdog.
	n, err = FromEnv(env(map[string]string{"WATCHDOG_USEC": "1000000"}), 1)
	if err != nil || n.WatchdogTimeout() != 0 {
		t.Errorf("WATCHDOG_USEC without NOTIFY_SOCKET: %v, %v; want no watchdog", n.WatchdogTimeout(), err)
	}
}

func TestWatchdog(t *testing.T) {
	const sock = "/run/systemd/notify"
	for _, tc := range []struct {
		usec, pid string
		want      time.Duration
	}{
		{"30000000", "", 30 * time.Second},
		{"30000000", "42", 30 * time.Second},
		{"30000000", "43", 0}, // meant for another process
		{"", "42", 0},
	} {
		n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": tc.usec, "WATCHDOG_PID": tc.pid}), 42)
		if err != nil {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v", tc.usec, tc.pid, err)
			continue
		}
		if got := n.WatchdogTimeout(); got != tc.want {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: WatchdogTimeout() = %v, want %v", tc.usec, tc.pid, got, tc.want)
		}
	}
}

// Bad environment values are errors that name the variable, never a
// panic or a silently wrong watchdog.
func TestFromEnvRejectsBadValues(t *testing.T) {
	for _, m := range []map[string]string{
		{"NOTIFY_SOCKET": "relative/path"},
		{"NOTIFY_SOCKET": "@"},
		{"NOTIFY_SOCKET": "/"},
		{"NOTIFY_SOCKET": "vsock:2:1234"},
		{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "0"},
		{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "-5"},
		{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "1e6"},
		{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "99999999999999999999"},
		{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "86400000001"},
		{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "x"},
		{"NOTIFY_SOCKET": "/run/n", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "-1"},
	} {
		n, err := FromEnv(env(m), 1)
		if err == nil {
			t.Errorf("%v: no error (notifier %+v)", m, n)
			continue
		}
		named := false
		for k := range m {
			named = named || strings.Contains(err.Error(), k)
		}
		if !named {
			t.Errorf("%v: error %q names none of the variables", m, err)
		}
	}
}

func TestNotifyRejectsBadAssignments(t *testing.T) {
	name, _ := listen(t, false)
	n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": name}), 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range [][]string{nil, {"READY"}, {"STATUS=a\nREADY=1"}} {
		if err := n.Notify(a...); err == nil {
			t.Errorf("Notify(%q): no error", a)
		}
	}
}

// A socket that is gone (systemd went away) is an error, not a hang.
func TestNotifySocketGone(t *testing.T) {
	n, err := FromEnv(env(map[string]string{"NOTIFY_SOCKET": filepath.Join(t.TempDir(), "gone")}), 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := n.Notify(Ready); err == nil {
		t.Error("Notify to a missing socket: no error")
	}
}
