package health

import "time"

// StatusSource supplies /status and the status page. Status is called per
// request from HTTP handler goroutines, possibly concurrently; it may cost
// time proportional to the number of clients but must not block on the
// network.
type StatusSource interface {
	Status() Status
}

// Status is the JSON document served at /status (schema version 1). Keys
// never appear in it: clients are named by their configured names.
type Status struct {
	Schema  int            `json:"schema"` // 1
	Node    NodeStatus     `json:"node"`
	Checks  []CheckResult  `json:"checks"` // filled by the server
	Probe   ProbeStatus    `json:"probe"`
	Members []MemberStatus `json:"members"`
	Regions []RegionStatus `json:"regions"`
	// RefusedPrefixes are prefixes members announce that no gateway
	// routes (see docs/security.md), this gateway's own included.
	RefusedPrefixes []RefusedPrefixStatus `json:"refused_prefixes"`
	// ClientsConfigured is the size of the configured client set and
	// PeersLive how many of them are peers of the client device now;
	// Clients lists those, and in a cluster also the clients with an
	// owner, not every configured one.
	ClientsConfigured int               `json:"clients_configured"`
	PeersLive         int               `json:"peers_live"`
	Clients           []ClientStatus    `json:"clients"`
	Convergence       ConvergenceStatus `json:"convergence"`
}

// NodeStatus describes this gateway.
type NodeStatus struct {
	Name         string    `json:"name"`
	Region       string    `json:"region"`
	Version      string    `json:"version"`
	Started      time.Time `json:"started"`
	Ready        bool      `json:"ready"`    // filled by the server
	Draining     bool      `json:"draining"` // filled by the server
	EgressMode   string    `json:"egress_mode"`
	ListenPort   int       `json:"listen_port"`
	ConfigDigest string    `json:"config_digest"` // of the client set
	Prefixes     []string  `json:"prefixes"`      // served prefixes
}

// ProbeStatus is the data-path probe's latest outcome.
type ProbeStatus struct {
	Target      string    `json:"target"` // what it echoes, e.g. "10.99.0.1 via tun ag0"
	OK          bool      `json:"ok"`
	Error       string    `json:"error,omitempty"`
	LastSuccess time.Time `json:"last_success"` // zero: never
	RTTSeconds  float64   `json:"rtt_seconds"`
	Successes   uint64    `json:"successes"`
	Failures    uint64    `json:"failures"`
}

// MemberStatus is one cluster member as this gateway sees it.
type MemberStatus struct {
	Name         string `json:"name"`
	Region       string `json:"region"`
	Address      string `json:"address"`
	State        string `json:"state"` // alive, dead, left (it drained first)
	Self         bool   `json:"self"`
	Ready        bool   `json:"ready"`
	ConfigDigest string `json:"config_digest"`
}

// RefusedPrefixStatus is one prefix a member announces and nobody routes.
type RefusedPrefixStatus struct {
	Member string    `json:"member"`
	Region string    `json:"region"`
	Prefix string    `json:"prefix"`
	Reason string    `json:"reason"` // label of anyguard_prefix_refusals_total
	Detail string    `json:"detail"` // what it overlaps
	Since  time.Time `json:"since"`
}

// RegionStatus is one region: its members and the prefixes it serves
// (those refused are listed in Status.RefusedPrefixes instead).
type RegionStatus struct {
	Name     string   `json:"name"`
	Members  int      `json:"members"`
	Prefixes []string `json:"prefixes"`
}

// ClientStatus is one configured client.
type ClientStatus struct {
	Name          string    `json:"name"`
	AllowedIPs    []string  `json:"allowed_ips"`
	Owner         string    `json:"owner"`    // gateway holding its session; "" if none
	Endpoint      string    `json:"endpoint"` // last UDP source seen; "" if none
	LastHandshake time.Time `json:"last_handshake"`
	RxBytes       uint64    `json:"rx_bytes"`
	TxBytes       uint64    `json:"tx_bytes"`
}

// ConvergenceStatus summarises how fast ownership converges.
type ConvergenceStatus struct {
	Observations uint64  `json:"observations"`
	P50Seconds   float64 `json:"p50_seconds"` // 0 without observations
	P99Seconds   float64 `json:"p99_seconds"`
}

// ConvergenceFrom summarises a histogram snapshot.
func ConvergenceFrom(s HistogramSnapshot) ConvergenceStatus {
	c := ConvergenceStatus{Observations: s.Count}
	if s.Count == 0 {
		return c
	}
	c.P50Seconds = s.Quantile(0.5)
	c.P99Seconds = s.Quantile(0.99)
	return c
}
