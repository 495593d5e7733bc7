package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/sdnotify"

	"github.com/anyguard/anyguard/internal/keys"
)

// notifySocket is a real unixgram socket standing in for systemd's
// $NOTIFY_SOCKET; every datagram it receives goes to msgs.
type notifySocket struct {
	path string
	msgs chan string
}

func newNotifySocket(t *testing.T) *notifySocket {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	ns := &notifySocket{path: path, msgs: make(chan string, 1024)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			ns.msgs <- string(buf[:n])
		}
	}()
	t.Cleanup(func() { c.Close(); <-done })
	return ns
}

// next returns the next datagram that is not a WATCHDOG=1 ping.
func (ns *notifySocket) next(t *testing.T, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case m := <-ns.msgs:
			if m != "WATCHDOG=1\n" {
				return m
			}
		case <-deadline:
			t.Fatalf("no notification within %v", within)
		}
	}
}

// countWatchdog counts WATCHDOG=1 pings over d, other messages failing t.
func (ns *notifySocket) countWatchdog(t *testing.T, d time.Duration) int {
	t.Helper()
	n := 0
	deadline := time.After(d)
	for {
		select {
		case m := <-ns.msgs:
			if m != "WATCHDOG=1\n" {
				t.Fatalf("unexpected notification %q", m)
			}
			n++
		case <-deadline:
			return n
		}
	}
}

// TestSystemdNotify runs `anyguard run` as systemd would run a Type=notify
// unit with WatchdogSec=3s and checks each notification against what the
// gateway is doing at that moment.
func TestSystemdNotify(t *testing.T) {
	ns := newNotifySocket(t)
	// WatchdogSec=3s: the readiness checks (the probe's among them) run
	// every second, and a ping needs a result younger than WatchdogSec.
	p := startRunEnv(t, 2*time.Second, "NOTIFY_SOCKET="+ns.path, "WATCHDOG_USEC=3000000")

	if m := ns.next(t, 5*time.Second); m != "READY=1\nSTATUS=ready\n" {
		t.Fatalf("first notification %q, want READY=1", m)
	}
	// startRunEnv saw /readyz answer 200 already; READY=1 must not have
	// come before it could (checked the other way round below: a gateway
	// that never turns ready never sends it).
	if got := ns.countWatchdog(t, 3200*time.Millisecond); got < 2 {
		t.Errorf("%d WATCHDOG=1 in 3.2 s with WatchdogSec=3s, want at least 2 (every 1.5 s)", got)
	}

	p.cmd.Process.Signal(syscall.SIGHUP)
	if m := ns.next(t, 5*time.Second); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("on SIGHUP: %q, want RELOADING=1 with MONOTONIC_USEC", m)
	}
	if m := ns.next(t, 5*time.Second); m != "READY=1\nSTATUS=ready, configuration reloaded\n" {
		t.Errorf("after the reload: %q, want READY=1", m)
	}

	// A broken file: the reload fails, the gateway keeps running and says
	// so in its status.
	if err := os.WriteFile(p.config, []byte("clients: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.cmd.Process.Signal(syscall.SIGHUP)
	if m := ns.next(t, 5*time.Second); !strings.HasPrefix(m, "RELOADING=1\n") {
		t.Errorf("on SIGHUP: %q, want RELOADING=1", m)
	}
	if m := ns.next(t, 5*time.Second); !strings.HasPrefix(m, "READY=1\nSTATUS=ready; reload failed, running the previous configuration: ") ||
		strings.Count(m, "\n") != 2 {
		t.Errorf("after a failed reload: %q, want READY=1 and a one-line STATUS", m)
	}
	if p.readyz() != http.StatusOK {
		t.Error("not ready after a failed reload")
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if m := ns.next(t, 5*time.Second); m != "STOPPING=1\nSTATUS=draining\n" {
		t.Errorf("on SIGTERM: %q, want STOPPING=1", m)
	}
	if code := p.readyz(); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz %d after STOPPING=1, want 503", code)
	}
	if !p.exited(10 * time.Second) {
		t.Fatal("still running 10 s after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	// Watchdog pings may come until the end; nothing else may.
	for {
		select {
		case m := <-ns.msgs:
			if m != "WATCHDOG=1\n" {
				t.Errorf("after STOPPING=1: %q", m)
			}
			continue
		default:
		}
		break
	}
}

// TestSystemdNotifyFollowsChecks drives systemdNotify with a readiness
// check the test controls: no READY=1 while a check fails, READY=1 once
// all pass, and WATCHDOG=1 only while the dataplane check passes.
func TestSystemdNotifyFollowsChecks(t *testing.T) {
	ns := newNotifySocket(t)
	n, err := sdnotify.FromEnv(func(k string) string {
		return map[string]string{"NOTIFY_SOCKET": ns.path, "WATCHDOG_USEC": "200000"}[k]
	}, os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	var dataplane, cluster atomic.Bool
	dataplane.Store(true)
	fail := errors.New("failing")
	runs := make(chan struct{}, 1)
	state := health.NewState([]health.Check{
		{Name: "dataplane", Run: func(context.Context) error {
			if dataplane.Load() {
				return nil
			}
			return fail
		}},
		{Name: "cluster", Run: func(context.Context) error {
			select {
			case runs <- struct{}{}:
			default:
			}
			if cluster.Load() {
				return nil
			}
			return fail
		}},
	}, health.StateOptions{Interval: 10 * time.Millisecond})
	defer state.Close()
	sd := startSystemdNotify(n, state, slog.New(slog.DiscardHandler))
	defer sd.close()

	// Ten rounds of checks with one failing: nothing may be sent, not
	// even to the watchdog (systemd arms it only after READY=1).
	for range 10 {
		<-runs
	}
	<-runs // the tenth round is over
	select {
	case m := <-ns.msgs:
		t.Fatalf("sent %q while a check fails", m)
	default:
	}
	cluster.Store(true)
	if m := ns.next(t, 5*time.Second); m != "READY=1\nSTATUS=ready\n" {
		t.Fatalf("%q once every check passes, want READY=1", m)
	}
	if got := ns.countWatchdog(t, 500*time.Millisecond); got < 3 {
		t.Errorf("%d WATCHDOG=1 in 0.5 s with WatchdogSec=0.2s, want at least 3", got)
	}
	// The data path fails: the pings stop once the check has seen it.
	dataplane.Store(false)
	for dataplaneOK(state) {
		<-runs
	}
	// At most one ping sent just before the check recorded the failure.
	if got := ns.countWatchdog(t, 600*time.Millisecond); got > 1 {
		t.Errorf("%d WATCHDOG=1 in 0.6 s while the data-path probe fails, want none", got)
	}
	dataplane.Store(true)
	if got := ns.countWatchdog(t, 500*time.Millisecond); got == 0 {
		t.Error("no WATCHDOG=1 after the data path recovered")
	}
}

// A NOTIFY_SOCKET that systemd would never give is refused at start with
// an error naming it.
func TestRunRefusesBadNotifySocket(t *testing.T) {
	k, _ := keys.Generate()
	path := filepath.Join(t.TempDir(), "gw.yaml")
	cfg := fmt.Sprintf("clients:\n  private_key: %s\n  listen_port: 0\n  address: 10.99.0.1/16\n  uapi: false\negress:\n  mode: netstack\nhealth:\n  listen: %q\n  admin_listen: \"127.0.0.1:0\"\n  tcp_listen: \"off\"\n", k, freePort(t))
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, env := range [][2]string{{"NOTIFY_SOCKET", "run/notify"}, {"WATCHDOG_USEC", "soon"}} {
		t.Setenv("NOTIFY_SOCKET", "/run/systemd/notify")
		t.Setenv(env[0], env[1])
		code, _, errOut := runCLI(t, "", "run", "--config", path)
		if code != 1 || !strings.Contains(errOut, env[0]) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("%s=%s: exit %d, stderr %q; want 1 and one line naming %s", env[0], env[1], code, errOut, env[0])
		}
	}
}

func dataplaneOK(s *health.State) bool {
	for _, r := range s.Results() {
		if r.Name == "dataplane" {
			return r.OK
		}
	}
	return false
}
