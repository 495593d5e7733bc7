package health

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// A Step is one action after the drain window, before the process exits:
// leaving the cluster gracefully, for example, so that other gateways take
// over this one's clients without waiting for failure detection.
type Step struct {
	Name string
	// Run is called once, with a context that ends after StepTimeout or
	// when the drain is aborted.
	Run func(ctx context.Context) error
}

// StepTimeout bounds each drain step.
const StepTimeout = 10 * time.Second

// ErrDrainAborted is returned by Drain when ctx ended before the drain
// finished (a second SIGTERM).
var ErrDrainAborted = errors.New("drain aborted")

// Drain runs the drain sequence and logs each step as one line:
//  1. the State turns unready at once (/readyz 503, TCP health port
//     closed) while traffic keeps flowing;
//  2. it waits for window, so load balancers notice and move new flows;
//  3. it runs steps in order; a failing step is logged and the next runs.
//
// If ctx ends first (a second signal), Drain returns ErrDrainAborted at
// once without running the remaining steps.
func Drain(ctx context.Context, st *State, window time.Duration, steps []Step, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	start := time.Now()
	st.StartDrain()
	log.Info("drain: started; /readyz answers 503 and the TCP health port is closed, traffic still flows", "drain_timeout", window)
	t := time.NewTimer(window)
	defer t.Stop()
	select {
	case <-ctx.Done():
		log.Warn("drain: aborted by a second signal, exiting now", "after", time.Since(start).Round(time.Millisecond))
		return ErrDrainAborted
	case <-t.C:
	}
	log.Info("drain: window over", "after", time.Since(start).Round(time.Millisecond))
	for _, s := range steps {
		if ctx.Err() != nil {
			log.Warn("drain: aborted by a second signal, exiting now", "step", s.Name)
			return ErrDrainAborted
		}
		sctx, cancel := context.WithTimeout(ctx, StepTimeout)
		t0 := time.Now()
		err := s.Run(sctx)
		cancel()
		if err != nil {
			log.Error("drain: step failed", "step", s.Name, "took", time.Since(t0).Round(time.Millisecond), "err", err)
			continue
		}
		log.Info("drain: step done", "step", s.Name, "took", time.Since(t0).Round(time.Millisecond))
	}
	log.Info("drain: done", "took", time.Since(start).Round(time.Millisecond))
	return nil
}
