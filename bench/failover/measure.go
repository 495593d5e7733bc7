package failover

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"time"
)

// Result is one scenario in one mode.
type Result struct {
	Scenario     string `json:"scenario"`
	Mode         string `json:"mode"`
	FastRecovery bool   `json:"fast_recovery"`
	Clients      int    `json:"clients"`
	// Error says why the scenario could not be measured (the deployment
	// did not start, a restarted gateway never turned healthy).
	Error string `json:"error,omitempty"`
	// StartS: deploying until every client had traffic answered both ways.
	StartS              float64 `json:"start_s"`
	GoroutinesPerClient float64 `json:"goroutines_per_client"`
	KBPerClient         float64 `json:"rss_kb_per_client"`

	// DetectionMs: per failed or drained gateway, from the failure (or
	// the start of the drain) until the load balancer marked it unhealthy;
	// absent where it never did.
	DetectionMs []float64 `json:"detection_ms,omitempty"`
	Moved       int       `json:"clients_moved"` // clients whose flow moved at least once
	Moves       int       `json:"moves"`         // flow moves (a rolling restart moves some flows twice)
	// MovesBy counts the moves by reason and targets ("unhealthy 0→2").
	MovesBy map[string]int `json:"moves_by"`
	// Per direction (up: the client's echo answered by the service; down:
	// the private pinger's request answered by the client), per move:
	// from the moment the flow moved until the first answer to a request
	// sent after it.
	Up   Outage `json:"up"`
	Down Outage `json:"down"`
	// UnmovedRTT: round trips of the clients whose flow did not move,
	// over the whole recorded time: the floor under any outage, since a
	// moved flow needs several sequential trips through the same queues
	// (on a saturated process, mostly queueing in the harness).
	UnmovedRTT RTT `json:"unmoved_rtt_ms"`
	// NotBack: clients with a move after which a direction had no answer
	// within the limit.
	NotBack int `json:"not_back"`
	// Round trips sent and lost over the whole recorded time (settle,
	// event, recovery), per direction; LostMoved: of those, by clients
	// whose flow moved; LostMovedInDrain: by clients whose every move
	// happened inside a drain window (drain and rolling restart).
	SentUp           int `json:"sent_up"`
	SentDown         int `json:"sent_down"`
	LostUp           int `json:"lost_up"`
	LostDown         int `json:"lost_down"`
	LostMoved        int `json:"lost_by_moved_clients"`
	LostMovedInDrain int `json:"lost_moved_in_drain_window"`
	UnmovedGaps      int `json:"unmoved_clients_with_gap_over_1s"`
	// Misdelivered: packets that reached a client, or the private side,
	// naming another client (must be 0). Foreign: packets a client got
	// that are not the harness's traffic. HarnessDrops: the harness's
	// own queues overflowed (the generator outran a client).
	Misdelivered uint64 `json:"misdelivered"`
	Foreign      uint64 `json:"foreign_packets"`
	HarnessDrops uint64 `json:"harness_queue_drops"`
	// Handshake responses through the load balancer to and from the
	// gateways that did not fail (all of them in a rolling restart), from
	// the event on: total, busiest second, and per second.
	HandshakesTotal int   `json:"survivor_handshakes"`
	HandshakesPeak  int   `json:"survivor_handshakes_peak_per_s"`
	HandshakesPerS  []int `json:"survivor_handshakes_per_s"`
	// CPU cores used by the whole process (gateways, clients, load
	// balancer, private side) before the event, from the event to the
	// end of recovery, and in its busiest second.
	CPUBaseline float64 `json:"cpu_cores_before"`
	CPURecovery float64 `json:"cpu_cores_recovery"`
	CPUPeak     float64 `json:"cpu_cores_peak"`
	// Readiness of gateways that were neither failed nor draining,
	// sampled every 100 ms: samples, samples not ready, and the gateways
	// that were ever not ready.
	ReadySamples    int      `json:"ready_samples"`
	NotReadySamples int      `json:"not_ready_samples"`
	LostReadiness   []string `json:"lost_readiness"`
	// FailingChecks counts, over samples not ready, the checks that
	// failed; LBCheckFailures the load balancer's failed checks of
	// gateways still running at the end that it was not meant to lose.
	FailingChecks   map[string]int `json:"failing_checks,omitempty"`
	LBCheckFailures int            `json:"lb_check_failures"`
	// SurvivorCounters sums, over the gateways running at the end, how
	// their client sockets handled handshakes since they started:
	// admission's initiations by result ("init_" + result), the device's
	// own cookie replies and handshake responses sent, initiations the
	// device's queue refused, and the probe's rounds. They say why
	// clients waited (a cookie or a drop costs a 5 s retry).
	SurvivorCounters map[string]uint64 `json:"survivor_counters,omitempty"`
	// RecoveredS: per moved client, seconds from the event until both
	// directions were answered after its last move (sorted; the
	// timeline). OutagesMs: per move, the worse direction (sorted; the
	// CDF).
	RecoveredS []float64 `json:"recovered_s"`
	OutagesMs  []float64 `json:"outages_ms"`
}

// RTT summarises round-trip times per direction (ms).
type RTT struct {
	UpP50   float64 `json:"up_p50"`
	UpP99   float64 `json:"up_p99"`
	DownP50 float64 `json:"down_p50"`
	DownP99 float64 `json:"down_p99"`
}

// Outage summarises per-move outages of one direction.
type Outage struct {
	N      int     `json:"n"`
	P50Ms  float64 `json:"p50_ms"`
	P99Ms  float64 `json:"p99_ms"`
	MaxMs  float64 `json:"max_ms"`
	GapP99 float64 `json:"gap_p99_ms"` // last answer before the move to first after
}

// measure fills res from the recorders, the load balancer's log and the
// samplers.
func (h *harness) measure(res *Result, ev event, t0, cutoff, end int64, s *samplers) {
	victims := map[int]bool{}
	for _, v := range ev.victims {
		if v.detection > 0 {
			res.DetectionMs = append(res.DetectionMs, float64(v.detection-v.at)/1e6)
		}
		victims[v.target] = true
	}
	limit := int64(h.opts.Limit)
	var up, down, upGap, downGap, rttUp, rttDown []float64
	for i, c := range h.clients {
		nUp, aUp := c.echoes.snapshot()
		nDown, aDown := c.pings.snapshot()
		lost := max(0, nUp-len(aUp)) + max(0, nDown-len(aDown))
		res.SentUp += nUp
		res.SentDown += nDown
		res.LostUp += max(0, nUp-len(aUp))
		res.LostDown += max(0, nDown-len(aDown))
		var moves []move
		for _, m := range h.lb.movesOf(i) {
			if m.at >= ev.at && m.to >= 0 {
				moves = append(moves, m)
			}
		}
		if len(moves) == 0 {
			if maxGap(aUp) > int64(time.Second) || maxGap(aDown) > int64(time.Second) {
				res.UnmovedGaps++
			}
			rttUp, rttDown = appendRTTs(rttUp, aUp), appendRTTs(rttDown, aDown)
			continue
		}
		res.Moved++
		res.Moves += len(moves)
		res.LostMoved += lost
		inDrain := true
		back := true
		var last int64
		for _, m := range moves {
			inDrain = inDrain && inWindows(m.at, ev.windows)
			du, gu, okU := recovery(aUp, m.at, limit)
			dd, gd, okD := recovery(aDown, m.at, limit)
			if okU {
				up = append(up, du)
				upGap = append(upGap, gu)
			}
			if okD {
				down = append(down, dd)
				downGap = append(downGap, gd)
			}
			if !okU || !okD {
				back = false
				continue
			}
			res.OutagesMs = append(res.OutagesMs, max(du, dd))
			last = m.at + int64(max(du, dd)*1e6)
		}
		if inDrain && len(ev.windows) > 0 {
			res.LostMovedInDrain += lost
		}
		if !back {
			res.NotBack++
		} else {
			res.RecoveredS = append(res.RecoveredS, float64(last-ev.at)/1e9)
		}
	}
	res.UnmovedRTT = RTT{UpP50: pct(rttUp, 50), UpP99: pct(rttUp, 99), DownP50: pct(rttDown, 50), DownP99: pct(rttDown, 99)}
	res.Up = summarise(up, upGap)
	res.Down = summarise(down, downGap)
	slices.Sort(res.RecoveredS)
	slices.Sort(res.OutagesMs)
	res.Misdelivered = h.misdelivered.Load()
	res.Foreign = h.foreign.Load()
	res.HarnessDrops = h.dropsQueue.Load()

	keep := func(t int) bool { return !victims[t] || res.Scenario == ScenarioRolling }
	res.HandshakesPerS = h.lb.handshakes.between(ev.at, end, keep)
	for _, n := range res.HandshakesPerS {
		res.HandshakesTotal += n
		res.HandshakesPeak = max(res.HandshakesPeak, n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	res.CPUBaseline = cores(s.cpu, t0, ev.at)
	res.CPURecovery = cores(s.cpu, ev.at, cutoff)
	for i := 1; i < len(s.cpu); i++ {
		if s.cpu[i].at > ev.at {
			res.CPUPeak = max(res.CPUPeak, float64(s.cpu[i].cpu-s.cpu[i-1].cpu)/float64(s.cpu[i].at-s.cpu[i-1].at))
		}
	}
	for name, r := range s.ready {
		res.ReadySamples += r[0]
		res.NotReadySamples += r[1]
		if r[1] > 0 {
			res.LostReadiness = append(res.LostReadiness, fmt.Sprintf("%s (%d of %d samples)", name, r[1], r[0]))
		}
	}
	slices.Sort(res.LostReadiness)
	if len(s.failing) > 0 {
		res.FailingChecks = maps.Clone(s.failing)
	}
	for _, t := range *h.lb.targets.Load() {
		if !victims[t.id] && !t.dead.Load() {
			res.LBCheckFailures += int(t.failed.Load())
		}
	}
	res.SurvivorCounters = h.survivorCounters()
}

// survivorCounters: see Result.SurvivorCounters.
func (h *harness) survivorCounters() map[string]uint64 {
	out := map[string]uint64{}
	for _, g := range h.running() {
		st := g.g.PeerStats()
		for k, v := range st.Initiations {
			out["init_"+k] += v
		}
		out["init_accepted_unread"] += st.AcceptedUnread
		out["worker_device_load_waits"] += st.DeviceLoadWaits
		b := g.g.Clients().BindStats()
		out["device_cookie_replies_sent"] += b.SentCookieReplies
		out["device_responses_sent"] += b.SentResponses
		out["device_release_drops"] += b.ReleaseDrops
		out["responses_received"] += b.Responses
		ok, failed := g.g.ProbeCounts()
		out["probe_ok"] += ok
		out["probe_failed"] += failed
	}
	return out
}

// recovery returns, for a flow that moved at t, the time from t until the
// first answer to a request sent at or after t, and the gap from the last
// answer received before t; ok is false if there was none within limit.
func recovery(as []answer, t, limit int64) (since, gap float64, ok bool) {
	first, prev := int64(math.MaxInt64), int64(-1)
	for _, a := range as {
		if a.sent >= t && a.recv < first {
			first = a.recv
		}
		if a.recv < t && a.recv > prev {
			prev = a.recv
		}
	}
	if first == math.MaxInt64 || first-t > limit {
		return 0, 0, false
	}
	since = float64(first-t) / 1e6
	if prev >= 0 {
		gap = float64(first-prev) / 1e6
	}
	return since, gap, true
}

// appendRTTs appends the round trips of as (ms) to to.
func appendRTTs(to []float64, as []answer) []float64 {
	for _, a := range as {
		to = append(to, float64(a.recv-a.sent)/1e6)
	}
	return to
}

// maxGap is the longest time between two answers received in a row.
func maxGap(as []answer) int64 {
	recv := make([]int64, len(as))
	for i, a := range as {
		recv[i] = a.recv
	}
	slices.Sort(recv)
	var g int64
	for i := 1; i < len(recv); i++ {
		g = max(g, recv[i]-recv[i-1])
	}
	return g
}

func inWindows(t int64, ws [][2]int64) bool {
	for _, w := range ws {
		if t >= w[0] && t <= w[1] {
			return true
		}
	}
	return false
}

func summarise(since, gap []float64) Outage {
	return Outage{N: len(since), P50Ms: pct(since, 50), P99Ms: pct(since, 99), MaxMs: pct(since, 100), GapP99: pct(gap, 99)}
}

// pct is the p-th percentile (nearest rank) of xs; 0 for none.
func pct(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	k := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[min(max(k, 0), len(s)-1)]
}

// cores is the CPU cores the process used on average between from and to.
func cores(cs []cpuSample, from, to int64) float64 {
	var a, b *cpuSample
	for i := range cs {
		if cs[i].at <= from || a == nil {
			a = &cs[i]
		}
		if cs[i].at <= to {
			b = &cs[i]
		}
	}
	if a == nil || b == nil || b.at <= a.at {
		return 0
	}
	return float64(b.cpu-a.cpu) / float64(b.at-a.at)
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }
