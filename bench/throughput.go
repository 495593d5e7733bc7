package bench

import (
	"io"
	"math"
	"slices"
	"time"
)

// Gateway modes the throughput benchmark compares.
const (
	ModeStock    = "stock"    // stock wireguard-go as the server: the baseline
	ModeTUN      = "tun"      // anyguard run, tun egress (multi-queue TUN)
	ModeNetstack = "netstack" // anyguard run, netstack egress
	// ModeInterface is anyguard interface (a plain WireGuard interface on
	// our multi-queue TUN, no router) configured exactly like stock.
	ModeInterface = "interface"
)

// Tests each mode runs.
const (
	TestTCP1 = "tcp1" // iperf3 TCP, 1 stream, client to server
	TestTCP4 = "tcp4" // iperf3 TCP, 4 streams
	TestUDP  = "udp"  // iperf3 UDP, unlimited rate, 1380-byte datagrams
	// TestTCP4Down is TCP, 4 streams, server to client (iperf3 -R): the
	// direction in which the gateway reads the kernel's TUN and encrypts.
	TestTCP4Down = "tcp4down"
)

// AllModes and AllTests are the defaults, in the order they run.
var (
	AllModes = []string{ModeStock, ModeTUN, ModeNetstack, ModeInterface}
	AllTests = []string{TestTCP1, TestTCP4, TestTCP4Down, TestUDP}
)

// udpPayload fits one datagram in the tunnel MTU of 1420 (20 IP + 8 UDP).
const udpPayload = 1380

// tcpMSS estimates packets per second for TCP: 1420 MTU - 40.
const tcpMSS = 1380

// nsPrefix names the harness's namespaces (see netns.Name).
const nsPrefix = "agb-"

// ThroughputOptions configure RunThroughput.
type ThroughputOptions struct {
	Anyguard    string   // the anyguard binary run as the gateway (default: this executable)
	WireguardGo string   // stock wireguard-go, the baseline and the client (required)
	Modes       []string // default AllModes
	Tests       []string // default AllTests
	Duration    time.Duration
	Reps        int // repetitions of every mode and test
	// MaxReps bounds further repetitions, run only for the tests whose
	// ratio to stock is still too wide to call after Reps (with stock
	// and the undecided modes); ≤ Reps: none.
	MaxReps  int
	Queues   int       // TUN queues for tun mode; 0: one per CPU
	Progress io.Writer // one line per measurement; nil: none
	Dir      string    // logs; "" a temporary directory
	PerfDir  string    // record the gateway with perf(1) here during each test; "" none
}

// Run is one measurement.
type Run struct {
	Mode        string  `json:"mode"`
	Test        string  `json:"test"`
	Rep         int     `json:"rep"`
	Seconds     float64 `json:"seconds"`
	Bytes       int64   `json:"bytes"`
	Gbps        float64 `json:"gbit_per_s"`
	PPS         float64 `json:"packets_per_s"`
	Retransmits int64   `json:"retransmits,omitempty"`
	LostPercent float64 `json:"lost_percent,omitempty"`
	GatewayCPU  float64 `json:"gateway_cpu_s"`
	TotalCPU    float64 `json:"total_cpu_s"`
}

// Result is the median of a mode's repetitions of one test.
type Result struct {
	Mode          string  `json:"mode"`
	Test          string  `json:"test"`
	Reps          int     `json:"reps"`
	Gbps          float64 `json:"gbit_per_s"`
	PPS           float64 `json:"packets_per_s"`
	GatewayCPUPGB float64 `json:"gateway_cpu_s_per_gb"`
	TotalCPUPGB   float64 `json:"total_cpu_s_per_gb"`
	// Ratio is the median over repetitions of this mode's Gbit/s divided
	// by stock's in the same repetition (run next to each other, so the
	// pair saw the same machine); 0: no stock figure.
	Ratio    float64 `json:"ratio_to_stock,omitempty"`
	CPURatio float64 `json:"gateway_cpu_ratio_to_stock,omitempty"` // the same for gateway CPU s/GB
	// Pairs is how many repetitions the ratios rest on. RatioCI and
	// CPURatioCI hold the true median ratio with RatioConfidence, and
	// Verdict and CPUVerdict call each ratio from its interval.
	Pairs      int        `json:"pairs,omitempty"`
	RatioCI    [2]float64 `json:"ratio_ci,omitzero"`
	CPURatioCI [2]float64 `json:"gateway_cpu_ratio_ci,omitzero"`
	Verdict    string     `json:"verdict,omitempty"`
	CPUVerdict string     `json:"gateway_cpu_verdict,omitempty"`
	MinGbps    float64    `json:"min_gbit_per_s"`
	MaxGbps    float64    `json:"max_gbit_per_s"`
}

// Ceilings bound what any gateway can reach on this machine.
type Ceilings struct {
	VethTCP1Gbps       float64 `json:"veth_tcp1_gbit_per_s"`
	VethTCP4Gbps       float64 `json:"veth_tcp4_gbit_per_s"`
	Seal1420GBps       float64 `json:"chacha20poly1305_seal_1420_gbyte_per_s"`
	Seal65536GBps      float64 `json:"chacha20poly1305_seal_65536_gbyte_per_s"`
	vethTCP1, vethTCP4 []float64
}

// ThroughputReport is everything one run of the benchmark measured.
type ThroughputReport struct {
	Machine  Machine  `json:"machine"`
	Duration string   `json:"duration"`
	Reps     int      `json:"reps"`     // of every mode and test
	MaxReps  int      `json:"max_reps"` // of what was still too wide to call
	Stock    string   `json:"stock_wireguard_go"`
	Ceilings Ceilings `json:"ceilings"`
	Results  []Result `json:"results"`
	Runs     []Run    `json:"runs"`
}

// summarize takes the median of each mode's repetitions of each test and
// its ratio to the stock median.
func summarize(runs []Run, modes, tests []string) []Result {
	var out []Result
	for _, mode := range modes {
		for _, test := range tests {
			var gbps, pps, gwc, totc []float64
			for _, r := range runs {
				if r.Mode == mode && r.Test == test {
					gbps = append(gbps, r.Gbps)
					pps = append(pps, r.PPS)
					gwc = append(gwc, perGB(r.GatewayCPU, r.Bytes))
					totc = append(totc, perGB(r.TotalCPU, r.Bytes))
				}
			}
			if len(gbps) == 0 {
				continue
			}
			res := Result{
				Mode: mode, Test: test, Reps: len(gbps),
				Gbps: median(gbps), PPS: median(pps),
				GatewayCPUPGB: median(gwc), TotalCPUPGB: median(totc),
				MinGbps: slices.Min(gbps), MaxGbps: slices.Max(gbps),
			}
			out = append(out, res)
		}
	}
	type key struct {
		test string
		rep  int
	}
	base := map[key]Run{}
	for _, r := range runs {
		if r.Mode == ModeStock {
			base[key{r.Test, r.Rep}] = r
		}
	}
	for i := range out {
		if out[i].Mode == ModeStock {
			continue
		}
		var ratios, cpu []float64
		for _, r := range runs {
			b, ok := base[key{r.Test, r.Rep}]
			if r.Mode != out[i].Mode || r.Test != out[i].Test || !ok || b.Gbps <= 0 {
				continue
			}
			ratios = append(ratios, r.Gbps/b.Gbps)
			if c := perGB(b.GatewayCPU, b.Bytes); c > 0 {
				cpu = append(cpu, perGB(r.GatewayCPU, r.Bytes)/c)
			}
		}
		x := &out[i]
		x.Ratio, x.CPURatio, x.Pairs = median(ratios), median(cpu), len(ratios)
		x.RatioCI, x.Verdict = callRatio(ratios)
		x.CPURatioCI, x.CPUVerdict = callRatio(cpu)
	}
	return out
}

// RatioConfidence is the probability with which a Result's interval holds
// the true median ratio to stock.
const RatioConfidence = 0.90

// parityBand is how far from 1 an interval may reach on either side and
// still be called parity.
const parityBand = 0.05

// Verdicts on a ratio to stock, from its confidence interval.
const (
	VerdictAbove   = "above"            // the whole interval is above 1
	VerdictBelow   = "below"            // the whole interval is below 1
	VerdictParity  = "parity"           // the interval is within 1 ± parityBand
	VerdictTooWide = "too wide to call" // none of these: more pairs needed
	VerdictTooFew  = "too few pairs"    // fewer pairs than any interval at RatioConfidence needs (5)
)

// callRatio returns the interval of v's median at RatioConfidence and what
// it says about the ratio against 1.
func callRatio(v []float64) ([2]float64, string) {
	lo, hi, ok := medianCI(v, RatioConfidence)
	switch {
	case len(v) == 0:
		return [2]float64{}, ""
	case !ok:
		return [2]float64{}, VerdictTooFew
	case lo > 1:
		return [2]float64{lo, hi}, VerdictAbove
	case hi < 1:
		return [2]float64{lo, hi}, VerdictBelow
	case lo >= 1-parityBand && hi <= 1+parityBand:
		return [2]float64{lo, hi}, VerdictParity
	}
	return [2]float64{lo, hi}, VerdictTooWide
}

// medianCI is the distribution-free confidence interval of the median of
// the population v was drawn from: with v sorted, [v(k), v(n+1−k)] for
// the largest k with P(Binomial(n, ½) < k) ≤ (1−conf)/2, which holds the
// median with probability ≥ conf whatever the distribution (paired
// ratios of noisy runs are anything but normal). ok is false when no k
// qualifies (n < 5 at 90 %).
func medianCI(v []float64, conf float64) (lo, hi float64, ok bool) {
	n := len(v)
	s := slices.Clone(v)
	slices.Sort(s)
	k, tail, term := 0, 0.0, math.Pow(0.5, float64(n)) // term: P(B = i)
	for i := 0; i < n/2; i++ {
		tail += term // P(B ≤ i)
		if tail > (1-conf)/2 {
			break
		}
		k = i + 1
		term = term * float64(n-i) / float64(i+1)
	}
	if k == 0 {
		return 0, 0, false
	}
	return s[k-1], s[n-k], true
}

// undecided is the tests whose ratio of any mode is still too wide to
// call, each with the modes to repeat (stock first, for the pairs).
func undecided(results []Result) map[string][]string {
	out := map[string][]string{}
	for _, x := range results {
		if x.Verdict != VerdictTooWide && x.CPUVerdict != VerdictTooWide {
			continue
		}
		if out[x.Test] == nil {
			out[x.Test] = []string{ModeStock}
		}
		out[x.Test] = append(out[x.Test], x.Mode)
	}
	return out
}

// perGB is CPU seconds per gigabyte (1e9 bytes) carried.
func perGB(cpuSeconds float64, bytes int64) float64 {
	if bytes <= 0 {
		return 0
	}
	return cpuSeconds / (float64(bytes) / 1e9)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
