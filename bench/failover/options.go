package failover

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"
)

// Scenario names.
const (
	ScenarioRebalance = "rebalance" // the load balancer moves a fraction of the flows
	ScenarioCrash     = "crash"     // one gateway of a region of two crashes
	ScenarioRegion    = "region"    // every gateway of a region crashes
	ScenarioDrain     = "drain"     // one gateway drains while the load balancer takes it out
	ScenarioRolling   = "rolling"   // every gateway in turn: drain, stop, start again
)

// Scenarios lists every scenario, in the order they run.
var Scenarios = []string{ScenarioRebalance, ScenarioCrash, ScenarioRegion, ScenarioDrain, ScenarioRolling}

// Options shape a run. Zero fields take the defaults in brackets.
type Options struct {
	Clients   int    // real wireguard-go clients [1000], 1…60000
	Regions   int    // regions [3], 2…5
	PerRegion int    // gateways per region [2], 2…4
	Params    Params // the load balancer [Presets["fast"]]
	Scenarios []string
	// Interval: each client's echo and the pinger's request to each
	// client are sent once per Interval [100ms].
	Interval time.Duration
	// Settle is recorded before each scenario's event [3s].
	Settle time.Duration
	// Limit: a client not answered this long after its flow moved is
	// "not back" [60s]; the scenario ends when every moved client is back
	// or Limit after the last move.
	Limit time.Duration
	// DrainWindow is the gateways' health.drain_timeout [the load
	// balancer's worst-case detection, Interval × UnhealthyThreshold +
	// Timeout, plus 2 s].
	DrainWindow time.Duration
	// ConnectTimeout bounds the start of each deployment: every client's
	// traffic answered both ways [60s + 10 ms per client].
	ConnectTimeout time.Duration
	// OnlyFast and OnlyStock run one mode only (neither: both).
	OnlyFast, OnlyStock bool
	// RebalanceFraction of the flows the rebalance moves [0.1].
	RebalanceFraction float64
	Logger            *slog.Logger // the gateways' logs; nil: discarded
	Progress          io.Writer    // a line per step; nil: none
}

// ErrOptions wraps every error of Options.Validate.
var ErrOptions = errors.New("failover options")

func (o *Options) defaults() {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&o.Clients, 1000)
	def(&o.Regions, 3)
	def(&o.PerRegion, 2)
	if o.Params == (Params{}) {
		o.Params = Presets[PresetFast]
	}
	if o.Scenarios == nil {
		o.Scenarios = Scenarios
	}
	dur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	dur(&o.Interval, 100*time.Millisecond)
	dur(&o.Settle, 3*time.Second)
	dur(&o.Limit, 60*time.Second)
	dur(&o.DrainWindow, o.Params.Interval*time.Duration(o.Params.UnhealthyThreshold)+o.Params.Timeout+2*time.Second)
	dur(&o.ConnectTimeout, 60*time.Second+time.Duration(o.Clients)*10*time.Millisecond)
	if o.RebalanceFraction == 0 {
		o.RebalanceFraction = 0.1
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
}

// Validate reports the first option out of range (after defaults).
func (o *Options) Validate() error {
	if err := o.Params.Validate(); err != nil {
		return err
	}
	bad := func(field, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrOptions, field, fmt.Sprintf(format, args...))
	}
	switch {
	case o.Clients < 1 || o.Clients > 60000:
		return bad("clients", "%d is outside 1…60000", o.Clients)
	case o.Regions < 2 || o.Regions > 5:
		return bad("regions", "%d is outside 2…5", o.Regions)
	case o.PerRegion < 2 || o.PerRegion > 4:
		return bad("per-region", "%d is outside 2…4", o.PerRegion)
	case o.Interval < 10*time.Millisecond || o.Interval > 10*time.Second:
		return bad("interval", "%s is outside 10ms…10s", o.Interval)
	case o.Settle < 0 || o.Settle > 10*time.Minute:
		return bad("settle", "%s is outside 0…10m", o.Settle)
	case o.Limit < time.Second || o.Limit > time.Hour:
		return bad("limit", "%s is outside 1s…1h", o.Limit)
	case o.DrainWindow < 0 || o.DrainWindow > time.Hour:
		return bad("drain-window", "%s is outside 0…1h", o.DrainWindow)
	case o.ConnectTimeout < time.Second:
		return bad("connect-timeout", "%s is under 1s", o.ConnectTimeout)
	case o.RebalanceFraction <= 0 || o.RebalanceFraction > 1:
		return bad("rebalance-fraction", "%g is outside (0, 1]", o.RebalanceFraction)
	case len(o.Scenarios) == 0:
		return bad("scenarios", "none")
	}
	for _, s := range o.Scenarios {
		if !slices.Contains(Scenarios, s) {
			return bad("scenarios", "unknown %q, want some of %s", s, strings.Join(Scenarios, ","))
		}
	}
	return nil
}

// Check validates opts as given (zero is not "default" here: a command
// line passes every value), deriving only DrainWindow and ConnectTimeout
// when zero, without running anything.
func Check(opts Options) error {
	if err := opts.Params.Validate(); err != nil {
		return err
	}
	given := opts
	opts.defaults()
	opts.Clients, opts.Regions, opts.PerRegion = given.Clients, given.Regions, given.PerRegion
	opts.Interval, opts.Limit, opts.Scenarios = given.Interval, given.Limit, given.Scenarios
	return opts.Validate()
}
