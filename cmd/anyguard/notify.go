package main

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/sdnotify"
)

// dataplaneCheck is the readiness check of the data-path probe, which
// feeds systemd's watchdog.
const dataplaneCheck = "dataplane"

// systemdNotify tells systemd (a Type=notify unit) where `anyguard run`
// is in its life: READY=1 when /readyz first answers 200, RELOADING=1 and
// READY=1 around a SIGHUP reload, STOPPING=1 when the drain starts, and
// WATCHDOG=1 while the data-path probe succeeds. Without NOTIFY_SOCKET
// every method is a no-op. Failures to notify are logged, never fatal.
type systemdNotify struct {
	n      *sdnotify.Notifier
	state  *health.State
	logger *slog.Logger

	mu       sync.Mutex
	ready    bool // READY=1 sent
	stopping bool // STOPPING=1 sent

	stop chan struct{}
	wg   sync.WaitGroup
}

// startSystemdNotify starts the goroutine that sends READY=1 and feeds the
// watchdog; close stops it.
func startSystemdNotify(n *sdnotify.Notifier, state *health.State, logger *slog.Logger) *systemdNotify {
	s := &systemdNotify{n: n, state: state, logger: logger, stop: make(chan struct{})}
	if n.Enabled() {
		s.wg.Add(1)
		go s.run()
	}
	return s
}

func (s *systemdNotify) run() {
	defer s.wg.Done()
	for !s.state.Ready() {
		select {
		case <-s.stop:
			return
		case <-s.state.Changed():
		}
	}
	s.mu.Lock()
	if !s.stopping {
		s.ready = true
		s.send(sdnotify.Ready, "STATUS=ready")
	}
	s.mu.Unlock()
	wd := s.n.WatchdogTimeout()
	if wd <= 0 {
		return
	}
	// Twice per timeout, as sd_watchdog_enabled(3) advises, and only while
	// the probe's latest result, itself recent, is a success: a data path
	// that stays broken for a whole WatchdogSec gets the unit restarted.
	t := time.NewTicker(wd / 2)
	defer t.Stop()
	for {
		if s.dataplaneOK(wd) {
			s.send(sdnotify.Watchdog)
		}
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
	}
}

// dataplaneOK reports whether the data-path probe's check passed when it
// last ran, less than maxAge ago.
func (s *systemdNotify) dataplaneOK(maxAge time.Duration) bool {
	for _, r := range s.state.Results() {
		if r.Name == dataplaneCheck {
			return r.OK && time.Since(r.Checked) < maxAge
		}
	}
	return false
}

// reload runs do between RELOADING=1 and READY=1, once the gateway has
// reported ready and until it drains (systemd knows no reload of a
// service that is starting or stopping).
func (s *systemdNotify) reload(do func() error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	announce := s.ready && !s.stopping
	if announce {
		if err := s.n.NotifyReloading(); err != nil {
			s.logger.Warn("cannot notify systemd", "err", err)
		}
	}
	status := "STATUS=ready, configuration reloaded"
	if err := do(); err != nil {
		status = "STATUS=ready; reload failed, running the previous configuration: " + oneLine(err.Error())
	}
	if announce {
		s.send(sdnotify.Ready, status)
	}
}

// draining sends STOPPING=1, once.
func (s *systemdNotify) draining() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.stopping {
		s.stopping = true
		s.send(sdnotify.Stopping, "STATUS=draining")
	}
}

func (s *systemdNotify) send(assignments ...string) {
	if err := s.n.Notify(assignments...); err != nil {
		s.logger.Warn("cannot notify systemd", "err", err)
	}
}

// close stops the goroutine and waits for it.
func (s *systemdNotify) close() {
	close(s.stop)
	s.wg.Wait()
}

// oneLine keeps a message on one line for STATUS=.
func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
