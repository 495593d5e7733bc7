package health

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// A Check is one named readiness condition.
type Check struct {
	// Name is short and stable: it labels metrics and /readyz?verbose lines
	// (e.g. "dataplane", "clients", "egress", "cluster").
	Name string
	// Run returns nil when the condition holds, or an error saying why not
	// (one line, no secrets). State calls it from its own goroutine, one
	// check at a time, every interval, with a context that ends after the
	// check timeout; it must not block beyond that.
	Run func(ctx context.Context) error
	// Advisory checks report a condition an operator should look at that
	// does not stop this gateway carrying traffic (another member's
	// clock, say): a failure is listed (/readyz?verbose as "[!]", /status,
	// anyguard_check_ok) but leaves readiness alone.
	Advisory bool
}

// CheckResult is the latest outcome of one check.
type CheckResult struct {
	Name     string    `json:"name"`
	OK       bool      `json:"ok"`
	Advisory bool      `json:"advisory,omitempty"` // a failure does not make the gateway unready
	Error    string    `json:"error,omitempty"`
	Since    time.Time `json:"since"`   // when OK last changed (or the first run)
	Checked  time.Time `json:"checked"` // when it last ran
}

// ErrDraining is the reason readiness gives while the gateway drains.
var ErrDraining = errors.New("draining: shutting down, load balancers should move traffic away")

// ErrNotChecked is the result of a check that has not run yet.
var ErrNotChecked = errors.New("not checked yet")

// StateOptions tune a State; zero values mean the defaults.
type StateOptions struct {
	Interval time.Duration // between rounds of checks; default 1 s
	Timeout  time.Duration // per check; default 2 s
	Logger   *slog.Logger  // readiness changes and drain steps; nil discards
}

// State is the gateway's readiness: the cached results of its checks and
// whether it is draining. Its methods are safe for concurrent use.
type State struct {
	checks   []Check
	interval time.Duration
	timeout  time.Duration
	log      *slog.Logger

	mu       sync.Mutex
	results  []CheckResult
	draining bool
	ready    bool
	changed  chan struct{} // closed (and replaced) when ready changes

	kick chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

// NewState starts running checks every interval until Close. The gateway
// is not ready until every check has passed once.
func NewState(checks []Check, opts StateOptions) *State {
	if opts.Interval <= 0 {
		opts.Interval = time.Second
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 2 * time.Second
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	s := &State{
		checks:   slices.Clone(checks),
		interval: opts.Interval,
		timeout:  opts.Timeout,
		log:      opts.Logger,
		changed:  make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	now := time.Now()
	for _, c := range s.checks {
		s.results = append(s.results, CheckResult{Name: c.Name, Advisory: c.Advisory, Error: ErrNotChecked.Error(), Since: now})
	}
	go s.loop()
	return s
}

func (s *State) loop() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		s.runChecks()
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
	}
}

func (s *State) runChecks() {
	for i, c := range s.checks {
		ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
		err := c.Run(ctx)
		cancel()
		now := time.Now()
		s.mu.Lock()
		r := &s.results[i]
		ok := err == nil
		if ok != r.OK || r.Checked.IsZero() {
			r.Since = now
		}
		r.OK, r.Checked, r.Error = ok, now, ""
		if err != nil {
			r.Error = oneLine(err.Error())
		}
		s.mu.Unlock()
	}
	s.update()
}

// oneLine keeps an error message on one bounded line.
func oneLine(s string) string {
	s = strings.ReplaceAll(s, "\n", " ")
	if len(s) > 300 {
		s = s[:300] + "…"
	}
	return s
}

// update recomputes readiness and announces a change.
func (s *State) update() {
	s.mu.Lock()
	ready := !s.draining
	var failing []string
	for _, r := range s.results {
		if !r.OK && !r.Advisory {
			ready = false
			failing = append(failing, r.Name+": "+r.Error)
		}
	}
	changed := ready != s.ready
	if changed {
		s.ready = ready
		close(s.changed)
		s.changed = make(chan struct{})
	}
	draining := s.draining
	s.mu.Unlock()
	if !changed {
		return
	}
	switch {
	case ready:
		s.log.Info("ready: every check passes")
	case draining:
		s.log.Info("not ready: draining")
	default:
		s.log.Warn("not ready", "failing", strings.Join(failing, "; "))
	}
}

// Ready reports whether the gateway can carry traffic now.
func (s *State) Ready() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ready
}

// Changed returns a channel that is closed the next time Ready changes.
func (s *State) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// Results returns the latest result of every check, in registration order.
func (s *State) Results() []CheckResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.results)
}

// Draining reports whether StartDrain was called.
func (s *State) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

// StartDrain makes the gateway unready at once, for good. It reports
// whether this call started the drain.
func (s *State) StartDrain() bool {
	s.mu.Lock()
	first := !s.draining
	s.draining = true
	s.mu.Unlock()
	if first {
		s.update()
	}
	return first
}

// CheckNow asks for a round of checks without waiting for the interval.
func (s *State) CheckNow() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Close stops the checks and waits for a round in progress to end.
func (s *State) Close() {
	s.once.Do(func() { close(s.stop) })
	<-s.done
}
