package bench

import (
	"io"
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
	Reps        int
	Queues      int       // TUN queues for tun mode; 0: one per CPU
	Progress    io.Writer // one line per measurement; nil: none
	Dir         string    // logs; "" a temporary directory
	PerfDir     string    // record the gateway with perf(1) here during each test; "" none
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
	MinGbps  float64 `json:"min_gbit_per_s"`
	MaxGbps  float64 `json:"max_gbit_per_s"`
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
	Reps     int      `json:"reps"`
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
		out[i].Ratio, out[i].CPURatio = median(ratios), median(cpu)
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
