package health

import (
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// MetricsSource supplies the counters behind /metrics. Metrics is called
// once per scrape, from the HTTP handler's goroutine, possibly concurrently
// with itself; it must be quick (no network) and return a snapshot the
// caller may keep.
type MetricsSource interface {
	Metrics() Metrics
}

// Metrics is a snapshot of the gateway's counters. Maps are label value →
// value; a nil map exports no series. Counters count since the start.
type Metrics struct {
	// Node and Region name this gateway (anyguard_node_info), so that
	// dashboards can group any series by region.
	Node, Region string
	// Peers counts the client device's live peers (clients are added when
	// they connect and removed when idle) by state: "active" (a session
	// younger than WireGuard's 180 s reject-after time), "stale" (an older
	// one) and "never" (no handshake yet).
	Peers map[string]int
	// ClientsConfigured is the size of the configured client set.
	ClientsConfigured int
	// PeersAdded counts clients added to the device as they connected;
	// PeersRemoved counts removals by reason ("idle", "reload", "moved").
	PeersAdded   uint64
	PeersRemoved map[string]uint64
	// Initiations counts handshake initiations by what the gateway did
	// with them ("accepted", "unknown_key", "not_authentic", "replay",
	// "unreadable", "overload", "cookie_sent", "rate_limited", "stale").
	Initiations map[string]uint64
	// HandshakeMessages counts WireGuard handshake messages received on
	// the client socket by type ("initiation", "response", "cookie_reply").
	HandshakeMessages map[string]uint64
	// JunkDatagrams counts datagrams on the client socket that are no
	// WireGuard message.
	JunkDatagrams uint64
	// Paths are packet and byte counters per path ("client", "backbone",
	// "egress") and direction ("rx": into the router, "tx": out of it).
	Paths []PathCounters
	// Drops counts dropped packets by stage ("router", "egress", ...) and
	// reason.
	Drops []DropCounter
	// OwnedClients is how many clients this gateway owns now.
	OwnedClients int
	// OwnershipChanges counts ownership changes by reason.
	OwnershipChanges map[string]uint64
	// Claims counts this gateway's claims by stage: "confirmed" (written
	// after the client's own handshake, once its first packet decrypted),
	// "unconfirmed" (a handshake answered whose session never carried a
	// packet: a lost client, or a replayed initiation), "takeover_started",
	// "takeover_retried" (the moved client's packets asked again while its
	// takeover's handshake was under way) and "takeover_claimed" (fast
	// recovery). Nil when not clustered.
	Claims map[string]uint64
	// Relayed counts the drain relay's client datagrams by event:
	// "to_owner" and "to_client" (relayed by this gateway for a moved
	// client, each way), "injected" and "diverted" (as the gateway with
	// the session: received through a relaying gateway, and sent back
	// through it), "endpoints_started", and the drops "drop_rate_endpoint",
	// "drop_rate_total" (the flood bounds), "drop_not_relaying" (a datagram
	// for a client endpoint not relayed to its sender), "drop_inject" (the
	// device was behind) and "drop_send". Nil when not clustered or off.
	Relayed map[string]uint64
	// Members counts gossip members by state ("alive", "dead",
	// "left").
	Members map[string]int
	// Gossip counts ownership gossip by event: "received", "bad"
	// (malformed or refused, never applied), "applied", "relayed", "sent"
	// (own claims and releases), "send_error", "repair_sent" (records sent
	// to a member whose digest differed), "push_pull", "catch_up" (digest
	// exchanges begun with a member just learned of), "decrypt_error"
	// (packets with a wrong key or none), "refused_clock",
	// "refused_version", "refused_unknown_client" (records refused by the
	// ownership bounds), "reconnect_try" (rounds of joins to missing
	// members), "reconnected" (members back after missing), "heal" (heals
	// logged), "left_released" (records of a gateway that left, released),
	// "forgotten" (records of clients removed from the configuration). Nil
	// when not clustered.
	Gossip map[string]uint64
	// PrefixRefusals counts prefix announcements refused (not routed) by
	// reason, each when its refusal began; RefusedPrefixes is how many
	// are refused now. Nil and zero when not clustered.
	PrefixRefusals  map[string]uint64
	RefusedPrefixes int
	// ClockRefused counts, by member, the ownership records refused
	// because that member's clock ran too far ahead.
	ClockRefused map[string]uint64
	// ConfigDigest is the digest of this gateway's client set;
	// ConfigDigestMismatch is how many members serve a different one.
	ConfigDigest         string
	ConfigDigestMismatch int
	// ConfigReloads counts reloads (SIGHUP) by result: "success", or
	// "failure" (the new configuration was refused and the running one
	// kept).
	ConfigReloads map[string]uint64
	// Convergence is the histogram of ownership convergence times.
	Convergence HistogramSnapshot
	// Probe is the data-path probe's record.
	Probe ProbeCounters
	// Clients are per-client counters, exported only when per-client
	// metrics are enabled, sorted by name and capped.
	Clients []ClientCounters
}

// PathCounters counts what one path carried in one direction.
type PathCounters struct {
	Path, Direction string
	Packets, Bytes  uint64
}

// DropCounter counts packets dropped at one stage for one reason.
type DropCounter struct {
	Stage, Reason string
	Packets       uint64
}

// ProbeCounters describe the data-path probe.
type ProbeCounters struct {
	Successes, Failures uint64
	LastRTT             time.Duration // of the last success
	LastSuccess         time.Time     // zero: never
}

// ClientCounters are one client's traffic, named by the client's configured
// name (never its key).
type ClientCounters struct {
	Name           string
	RxBytes        uint64 // received from the client
	TxBytes        uint64 // sent to the client
	LastHandshake  time.Time
	HasSession     bool
	AllowedIPCount int
}

// ConvergenceBuckets are the upper bounds, in seconds, of the convergence
// histogram: from a LAN round trip to a failure-detection timeout.
var ConvergenceBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Histogram is a lock-free histogram over ConvergenceBuckets that a
// MetricsSource can own and snapshot. The zero value is ready to use.
type Histogram struct {
	counts [16]atomic.Uint64 // len(ConvergenceBuckets)+1 (overflow)
	count  atomic.Uint64
	sumNs  atomic.Uint64
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	s := d.Seconds()
	i, _ := slices.BinarySearch(ConvergenceBuckets, s)
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sumNs.Add(uint64(d))
}

// HistogramSnapshot is a histogram's state: Buckets maps each upper bound
// to the cumulative count at or below it.
type HistogramSnapshot struct {
	Count   uint64
	Sum     float64 // seconds
	Buckets map[float64]uint64
}

// Snapshot returns the cumulative counts.
func (h *Histogram) Snapshot() HistogramSnapshot {
	s := HistogramSnapshot{Buckets: make(map[float64]uint64, len(ConvergenceBuckets))}
	var cum uint64
	for i, b := range ConvergenceBuckets {
		cum += h.counts[i].Load()
		s.Buckets[b] = cum
	}
	s.Count = cum + h.counts[len(ConvergenceBuckets)].Load()
	s.Sum = time.Duration(h.sumNs.Load()).Seconds()
	return s
}

// Quantile estimates the q-quantile (0..1) by linear interpolation within
// buckets, as Prometheus' histogram_quantile does; NaN without data.
func (s HistogramSnapshot) Quantile(q float64) float64 {
	if s.Count == 0 {
		return math.NaN()
	}
	rank := q * float64(s.Count)
	prevBound, prevCount := 0.0, uint64(0)
	for _, b := range ConvergenceBuckets {
		c := s.Buckets[b]
		if float64(c) >= rank {
			if c == prevCount {
				return b
			}
			return prevBound + (b-prevBound)*(rank-float64(prevCount))/float64(c-prevCount)
		}
		prevBound, prevCount = b, c
	}
	return ConvergenceBuckets[len(ConvergenceBuckets)-1]
}

// metric descriptors; see docs/health.md "Metrics" for the meaning of each.
var (
	descBuildInfo   = gaugeDesc("anyguard_build_info", "Build of this gateway; always 1.", "version", "revision", "goversion")
	descNodeInfo    = gaugeDesc("anyguard_node_info", "This gateway's node name and region; always 1.", "node", "region")
	descReady       = gaugeDesc("anyguard_ready", "1 when /readyz answers 200: every check passes and the gateway is not draining.")
	descDraining    = gaugeDesc("anyguard_draining", "1 while the gateway drains after SIGTERM.")
	descCheck       = gaugeDesc("anyguard_check_ok", "1 when the named readiness check passes.", "check")
	descPeers       = gaugeDesc("anyguard_peers", "Live client peers on the client device by session state (active, stale, never).", "state")
	descConfigured  = gaugeDesc("anyguard_clients_configured", "Clients in the configured client set.")
	descPeersAdded  = counterDesc("anyguard_peers_added_total", "Clients added to the client device when they connected.")
	descPeersRemove = counterDesc("anyguard_peers_removed_total", "Client peers removed from the client device, by reason (idle, reload, moved).", "reason")
	descInitiations = counterDesc("anyguard_initiations_total", "Handshake initiations on the client socket by outcome (accepted, unknown_key, not_authentic, replay, unreadable, overload, cookie_sent, rate_limited, stale).", "result")
	descHandshakes  = counterDesc("anyguard_handshake_messages_received_total", "WireGuard handshake messages received on the client socket, by type.", "type")
	descJunk        = counterDesc("anyguard_junk_datagrams_total", "Datagrams on the client socket that are no WireGuard message; dropped.")
	descPackets     = counterDesc("anyguard_packets_total", "IP packets by path (client, backbone, egress) and direction (rx into the router, tx out of it).", "path", "direction")
	descBytes       = counterDesc("anyguard_bytes_total", "IP bytes by path and direction, as anyguard_packets_total.", "path", "direction")
	descDrops       = counterDesc("anyguard_dropped_packets_total", "Packets dropped, by stage and reason.", "stage", "reason")
	descOwned       = gaugeDesc("anyguard_owned_clients", "Clients this gateway owns (holds the session of).")
	descOwnChanges  = counterDesc("anyguard_ownership_changes_total", "Client ownership changes seen, by reason.", "reason")
	descRelayed     = counterDesc("anyguard_relayed_datagrams_total", "The drain relay's client datagrams by event (to_owner, to_client, injected, diverted, endpoints_started, drop_*).", "event")
	descClaims      = counterDesc("anyguard_claims_total", "This gateway's client claims by stage (confirmed, unconfirmed, takeover_started, takeover_retried, takeover_claimed).", "stage")
	descMembers     = gaugeDesc("anyguard_gossip_members", "Cluster members by state, this gateway included.", "state")
	descGossip      = counterDesc("anyguard_gossip_events_total", "Ownership gossip by event (received, bad, applied, relayed, sent, send_error, repair_sent, push_pull, catch_up, decrypt_error, refused_clock, refused_version, refused_unknown_client, reconnect_try, reconnected, heal, left_released, forgotten).", "event")
	descRefusals    = counterDesc("anyguard_prefix_refusals_total", "Prefix announcements of cluster members refused and not routed, by reason (invalid, default_route, reserved, client_network, client, region_overlap); counted when a refusal begins.", "reason")
	descRefused     = gaugeDesc("anyguard_refused_prefixes", "Prefix announcements refused now (listed in /status refused_prefixes).")
	descClockRef    = counterDesc("anyguard_gossip_clock_refused_total", "Ownership records refused because the member that wrote them has a clock too far ahead, by member.", "node")
	descConvergence = histogramDesc("anyguard_convergence_seconds", "Time from a client's move to every gateway agreeing on its owner.")
	descConfigInfo  = gaugeDesc("anyguard_config_info", "Digest of this gateway's client set; always 1.", "digest")
	descReloads     = counterDesc("anyguard_config_reloads_total", "Configuration reloads (SIGHUP) by result: success, or failure (the running configuration kept).", "result")
	descMismatch    = gaugeDesc("anyguard_config_digest_mismatch", "Cluster members whose client-set digest differs from this gateway's.")
	descProbes      = counterDesc("anyguard_probes_total", "Data-path probes (echo through the client socket, device, router and egress), by result.", "result")
	descProbeRTT    = gaugeDesc("anyguard_probe_rtt_seconds", "Round trip of the last successful data-path probe.")
	descProbeLast   = gaugeDesc("anyguard_probe_last_success_timestamp_seconds", "Unix time of the last successful data-path probe; 0 if none.")
	descClientRx    = counterDesc("anyguard_client_receive_bytes_total", "Bytes received from the client (per-client metrics enabled).", "client")
	descClientTx    = counterDesc("anyguard_client_transmit_bytes_total", "Bytes sent to the client (per-client metrics enabled).", "client")
	descClientHS    = gaugeDesc("anyguard_client_last_handshake_timestamp_seconds", "Unix time of the client's last handshake; 0 if none (per-client metrics enabled).", "client")
	descClientOmit  = gaugeDesc("anyguard_client_series_omitted", "Clients left out of per-client series by health.per_client_limit.")
)

// collector turns a Metrics snapshot and the State into Prometheus metrics
// at scrape time.
type collector struct {
	src       MetricsSource
	state     *State
	version   string
	revision  string
	goVersion string
	perClient bool
	limit     int
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// collect adds the gateway's series to e.
func (c *collector) collect(e *exposition) {
	gauge, counter := e.gauge, e.counter
	gauge(descBuildInfo, 1, c.version, c.revision, c.goVersion)
	if c.state != nil {
		gauge(descReady, boolGauge(c.state.Ready()))
		gauge(descDraining, boolGauge(c.state.Draining()))
		for _, r := range c.state.Results() {
			gauge(descCheck, boolGauge(r.OK), r.Name)
		}
	}
	if c.src == nil {
		return
	}
	m := c.src.Metrics()
	if m.Node != "" || m.Region != "" {
		gauge(descNodeInfo, 1, m.Node, m.Region)
	}
	for _, k := range sortedKeys(m.Peers) {
		gauge(descPeers, float64(m.Peers[k]), k)
	}
	gauge(descConfigured, float64(m.ClientsConfigured))
	counter(descPeersAdded, m.PeersAdded)
	for _, k := range sortedKeys(m.PeersRemoved) {
		counter(descPeersRemove, m.PeersRemoved[k], k)
	}
	for _, k := range sortedKeys(m.Initiations) {
		counter(descInitiations, m.Initiations[k], k)
	}
	for _, k := range sortedKeys(m.HandshakeMessages) {
		counter(descHandshakes, m.HandshakeMessages[k], k)
	}
	counter(descJunk, m.JunkDatagrams)
	for _, p := range m.Paths {
		counter(descPackets, p.Packets, p.Path, p.Direction)
		counter(descBytes, p.Bytes, p.Path, p.Direction)
	}
	for _, d := range m.Drops {
		counter(descDrops, d.Packets, d.Stage, d.Reason)
	}
	gauge(descOwned, float64(m.OwnedClients))
	for _, k := range sortedKeys(m.OwnershipChanges) {
		counter(descOwnChanges, m.OwnershipChanges[k], k)
	}
	for _, k := range sortedKeys(m.Claims) {
		counter(descClaims, m.Claims[k], k)
	}
	for _, k := range sortedKeys(m.Relayed) {
		counter(descRelayed, m.Relayed[k], k)
	}
	for _, k := range sortedKeys(m.Members) {
		gauge(descMembers, float64(m.Members[k]), k)
	}
	for _, k := range sortedKeys(m.ClockRefused) {
		counter(descClockRef, m.ClockRefused[k], k)
	}
	for _, k := range sortedKeys(m.Gossip) {
		counter(descGossip, m.Gossip[k], k)
	}
	for _, k := range sortedKeys(m.PrefixRefusals) {
		counter(descRefusals, m.PrefixRefusals[k], k)
	}
	if m.PrefixRefusals != nil {
		gauge(descRefused, float64(m.RefusedPrefixes))
	}
	e.histogram(descConvergence, m.Convergence)
	if m.ConfigDigest != "" {
		gauge(descConfigInfo, 1, m.ConfigDigest)
	}
	gauge(descMismatch, float64(m.ConfigDigestMismatch))
	for _, k := range sortedKeys(m.ConfigReloads) {
		counter(descReloads, m.ConfigReloads[k], k)
	}
	counter(descProbes, m.Probe.Successes, "success")
	counter(descProbes, m.Probe.Failures, "failure")
	gauge(descProbeRTT, m.Probe.LastRTT.Seconds())
	gauge(descProbeLast, unixSeconds(m.Probe.LastSuccess))
	if !c.perClient {
		return
	}
	clients := slices.Clone(m.Clients)
	slices.SortFunc(clients, func(a, b ClientCounters) int { return strings.Compare(a.Name, b.Name) })
	omitted := 0
	if len(clients) > c.limit {
		omitted = len(clients) - c.limit
		clients = clients[:c.limit]
	}
	for _, cl := range clients {
		counter(descClientRx, cl.RxBytes, cl.Name)
		counter(descClientTx, cl.TxBytes, cl.Name)
		gauge(descClientHS, unixSeconds(cl.LastHandshake), cl.Name)
	}
	gauge(descClientOmit, float64(omitted))
}

func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
