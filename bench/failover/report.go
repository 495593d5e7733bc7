package failover

import (
	"fmt"
	"strings"

	"github.com/anyguard/anyguard/bench"
)

// Report is a whole run.
type Report struct {
	Machine      bench.Machine `json:"machine"`
	Params       Params        `json:"load_balancer"`
	Clients      int           `json:"clients"`
	Regions      int           `json:"regions"`
	PerRegion    int           `json:"gateways_per_region"`
	IntervalMs   float64       `json:"interval_ms"`
	DrainWindowS float64       `json:"drain_window_s"`
	LimitS       float64       `json:"limit_s"`
	Results      []Result      `json:"results"`
	Failed       int           `json:"failed"` // results with an Error
}

var scenarioNames = map[string]string{
	ScenarioRebalance: "LB moves 10 % of flows",
	ScenarioCrash:     "gateway crash",
	ScenarioRegion:    "region failure",
	ScenarioDrain:     "drain",
	ScenarioRolling:   "rolling restart",
}

// line is the one-line progress summary of a result.
func (r *Result) line() string {
	if r.Error != "" {
		return fmt.Sprintf("%s, %s: FAILED: %s", r.Scenario, r.Mode, r.Error)
	}
	return fmt.Sprintf("%s, %s: %d moved, up p50/p99/max %s/%s/%s, down %s/%s/%s, unmoved round trip up p50/p99 %s/%s down %s/%s, not back %d, lost %d+%d, misdelivered %d, handshakes peak %d/s, not ready %d/%d, moves %v",
		r.Scenario, r.Mode, r.Moved, sec(r.Up.P50Ms), sec(r.Up.P99Ms), sec(r.Up.MaxMs), sec(r.Down.P50Ms), sec(r.Down.P99Ms), sec(r.Down.MaxMs),
		sec(r.UnmovedRTT.UpP50), sec(r.UnmovedRTT.UpP99), sec(r.UnmovedRTT.DownP50), sec(r.UnmovedRTT.DownP99),
		r.NotBack, r.LostUp, r.LostDown, r.Misdelivered, r.HandshakesPeak, r.NotReadySamples, r.ReadySamples, r.MovesBy)
}

// sec formats milliseconds as seconds.
func sec(msv float64) string {
	if msv >= 10000 {
		return fmt.Sprintf("%.0f s", msv/1000)
	}
	return fmt.Sprintf("%.2f s", msv/1000)
}

// Markdown renders the report as a table with its context.
func (rep *Report) Markdown() string {
	var b strings.Builder
	m, p := rep.Machine, rep.Params
	date := m.Date
	if len(date) >= 10 {
		date = date[:10]
	}
	fmt.Fprintf(&b, "Failover (`anyguard bench failover`), %s, %s, %d cores, kernel %s, %s.\n", date, m.CPU, m.Cores, m.Kernel, m.GoVersion)
	fmt.Fprintf(&b, "%d real wireguard-go clients, %d regions × %d gateways in one process, each client an echo every %.0f ms and the private\n",
		rep.Clients, rep.Regions, rep.PerRegion, rep.IntervalMs)
	fmt.Fprintf(&b, "side a request to each client as often. Load balancer preset `%s`: %s health check every %s (timeout %s, unhealthy after %d,\n",
		p.Name, strings.ToUpper(p.HealthProtocol), p.Interval, p.Timeout, p.UnhealthyThreshold)
	fmt.Fprintf(&b, "healthy after %d), flows of unhealthy targets: %s, deregistration delay %s; drain window %.0f s. Each row is a fresh deployment.\n\n",
		p.HealthyThreshold, p.UnhealthyFlows, p.DeregistrationDelay, rep.DrainWindowS)
	b.WriteString("| scenario | gateways | LB detection | moved | outage up p50 / p99 / max | outage down p50 / p99 / max | not back in 60 s | round trips lost | wrong client | survivors' handshakes peak/s | CPU cores | readiness lost |\n")
	b.WriteString("|---|---|---:|---:|---|---|---:|---:|---:|---:|---:|---|\n")
	for _, r := range rep.Results {
		if r.Error != "" {
			fmt.Fprintf(&b, "| %s | %s | failed: %s |||||||||||\n", nameOr(scenarioNames, r.Scenario), r.Mode, strings.ReplaceAll(r.Error, "|", "/"))
			continue
		}
		ready := "none"
		if len(r.LostReadiness) > 0 {
			ready = strings.Join(r.LostReadiness, ", ")
		}
		lost := fmt.Sprintf("%d of %d", r.LostUp+r.LostDown, r.SentUp+r.SentDown)
		if r.Scenario == ScenarioDrain || r.Scenario == ScenarioRolling {
			lost += fmt.Sprintf(" (%d moved in drain)", r.LostMovedInDrain)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %d | %s / %s / %s | %s / %s / %s | %d | %s | %d | %d | %.2f → %.2f | %s |\n",
			nameOr(scenarioNames, r.Scenario), r.Mode, detection(r.DetectionMs), r.Moved,
			sec(r.Up.P50Ms), sec(r.Up.P99Ms), sec(r.Up.MaxMs), sec(r.Down.P50Ms), sec(r.Down.P99Ms), sec(r.Down.MaxMs),
			r.NotBack, lost, r.Misdelivered, r.HandshakesPeak, r.CPUBaseline, r.CPURecovery, ready)
	}
	b.WriteString("\nOutage: per flow move, from the moment the load balancer moved the flow to the first answer to a request sent after it\n")
	b.WriteString("(up: the client's echo answered by the private service; down: the private side's request answered by the client); it includes\n")
	b.WriteString("up to one traffic interval of waiting for the next request. LB detection: from the failure (or the start of the drain) until\n")
	b.WriteString("the load balancer marked the gateway unhealthy, mean (max). Round trips lost: over the whole recorded time, both directions.\n")
	b.WriteString("Handshakes: responses through the load balancer to or from gateways that did not fail. CPU: the whole process (clients,\n")
	b.WriteString("gateways, load balancer), before the event → until recovery. Readiness: survivors' /readyz state sampled every 100 ms.\n")
	return b.String()
}

func detection(ds []float64) string {
	if len(ds) == 0 {
		return "—"
	}
	sum, mx := 0.0, 0.0
	for _, d := range ds {
		sum += d
		mx = max(mx, d)
	}
	return fmt.Sprintf("%s (%s)", sec(sum/float64(len(ds))), sec(mx))
}

func nameOr(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return k
}
