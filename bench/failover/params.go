package failover

import (
	"errors"
	"fmt"
	"time"
)

// Params are the load balancer's settings that decide how fast a flow
// moves after a gateway fails; docs/failover.md relates each to AWS's
// published behaviour. Use a preset and change fields.
type Params struct {
	Name string `json:"name"`
	// HealthProtocol is HealthHTTP (GET /readyz, 200 = healthy) or
	// HealthTCP (a connection to the gateway's TCP health port).
	HealthProtocol string `json:"health_protocol"`
	// Interval between two health checks of one target; Timeout for one
	// check (a check that takes longer fails).
	Interval time.Duration `json:"interval"`
	Timeout  time.Duration `json:"timeout"`
	// Consecutive checks that turn a target healthy / unhealthy.
	HealthyThreshold   int `json:"healthy_threshold"`
	UnhealthyThreshold int `json:"unhealthy_threshold"`
	// Stickiness: StickyFlow (5-tuple: a client's UDP flow stays on its
	// target) or StickySource (source IP). Every simulated client has its
	// own address and port, so both pin a client to one target; the
	// field is carried into the report.
	Stickiness string `json:"stickiness"`
	// UnhealthyFlows: FlowsReroute moves the existing flows of a target
	// that turns unhealthy to a healthy one (Global Accelerator; NLB with
	// connection termination on unhealthy targets, its default);
	// FlowsKeep leaves them on it until they go idle.
	UnhealthyFlows string `json:"unhealthy_flows"`
	// IdleTimeout forgets a flow without a packet for this long; its next
	// packet picks a target afresh.
	IdleTimeout time.Duration `json:"udp_idle_timeout"`
	// DeregistrationDelay: a deregistered (draining) target gets no new
	// flows, and its existing flows move after this delay (at once if it
	// turns unhealthy first and UnhealthyFlows is FlowsReroute).
	DeregistrationDelay time.Duration `json:"deregistration_delay"`
}

// Values of Params fields.
const (
	HealthHTTP   = "http"
	HealthTCP    = "tcp"
	StickyFlow   = "5-tuple"
	StickySource = "source-ip"
	FlowsReroute = "reroute"
	FlowsKeep    = "keep"
)

// Preset names.
const (
	PresetFast = "fast"
	PresetNLB  = "nlb"
)

// Presets are the named load balancer settings.
var Presets = map[string]Params{
	// Global Accelerator at its fastest detection: 10 s interval,
	// threshold 1; it reroutes flows of unhealthy endpoints; UDP idle
	// timeout 30 s.
	PresetFast: {
		Name: PresetFast, HealthProtocol: HealthHTTP,
		Interval: 10 * time.Second, Timeout: 5 * time.Second,
		HealthyThreshold: 1, UnhealthyThreshold: 1,
		Stickiness: StickyFlow, UnhealthyFlows: FlowsReroute,
		IdleTimeout: 30 * time.Second, DeregistrationDelay: 0,
	},
	// An NLB target group's defaults for a TCP health check: interval
	// 30 s, timeout 10 s, healthy 5, unhealthy 2; UDP idle timeout 120 s;
	// deregistration delay 300 s; connection termination on unhealthy
	// targets on.
	PresetNLB: {
		Name: PresetNLB, HealthProtocol: HealthTCP,
		Interval: 30 * time.Second, Timeout: 10 * time.Second,
		HealthyThreshold: 5, UnhealthyThreshold: 2,
		Stickiness: StickyFlow, UnhealthyFlows: FlowsReroute,
		IdleTimeout: 120 * time.Second, DeregistrationDelay: 300 * time.Second,
	},
}

// ErrParams wraps every error of Params.Validate.
var ErrParams = errors.New("load balancer parameters")

// Validate reports the first field with a value the model cannot run.
func (p Params) Validate() error {
	bad := func(field string, format string, args ...any) error {
		return fmt.Errorf("%w: %s: %s", ErrParams, field, fmt.Sprintf(format, args...))
	}
	switch {
	case p.HealthProtocol != HealthHTTP && p.HealthProtocol != HealthTCP:
		return bad("health_protocol", "%q is not %s or %s", p.HealthProtocol, HealthHTTP, HealthTCP)
	case p.Interval < 10*time.Millisecond || p.Interval > 10*time.Minute:
		return bad("interval", "%s is outside 10ms…10m", p.Interval)
	case p.Timeout <= 0 || p.Timeout > p.Interval:
		return bad("timeout", "%s must be > 0 and ≤ the interval %s", p.Timeout, p.Interval)
	case p.HealthyThreshold < 1 || p.HealthyThreshold > 10:
		return bad("healthy_threshold", "%d is outside 1…10", p.HealthyThreshold)
	case p.UnhealthyThreshold < 1 || p.UnhealthyThreshold > 10:
		return bad("unhealthy_threshold", "%d is outside 1…10", p.UnhealthyThreshold)
	case p.Stickiness != StickyFlow && p.Stickiness != StickySource:
		return bad("stickiness", "%q is not %s or %s", p.Stickiness, StickyFlow, StickySource)
	case p.UnhealthyFlows != FlowsReroute && p.UnhealthyFlows != FlowsKeep:
		return bad("unhealthy_flows", "%q is not %s or %s", p.UnhealthyFlows, FlowsReroute, FlowsKeep)
	case p.IdleTimeout < time.Second:
		return bad("udp_idle_timeout", "%s is under 1s", p.IdleTimeout)
	case p.DeregistrationDelay < 0 || p.DeregistrationDelay > time.Hour:
		return bad("deregistration_delay", "%s is outside 0…1h", p.DeregistrationDelay)
	}
	return nil
}
