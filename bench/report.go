package bench

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// WriteJSON writes v, indented, to path.
func WriteJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

var testNames = map[string]string{
	TestTCP1:     "TCP, 1 stream",
	TestTCP4:     "TCP, 4 streams",
	TestTCP4Down: "TCP, 4 streams, download",
	TestUDP:      "UDP, 1380 B datagrams",
}

var modeNames = map[string]string{
	ModeStock:     "stock wireguard-go",
	ModeTUN:       "anyguard, tun egress",
	ModeNetstack:  "anyguard, netstack egress",
	ModeInterface: "anyguard interface (no router)",
}

func nameOr(m map[string]string, k string) string {
	if v, ok := m[k]; ok {
		return v
	}
	return k
}

// Markdown renders the report as a table with its context.
func (r *ThroughputReport) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Throughput through one gateway (`anyguard bench throughput`), %s, %s, %d cores, kernel %s, %s.\n",
		m.Date[:10], m.CPU, m.Cores, m.Kernel, m.GoVersion)
	fmt.Fprintf(&b, "iperf3 from a client namespace through the gateway namespace to a server namespace; client and baseline: %s\n", r.Stock)
	fmt.Fprintf(&b, "built from the module proxy. Medians of %d interleaved repetitions of %s each", r.Reps, r.Duration)
	if r.MaxReps > r.Reps {
		fmt.Fprintf(&b, ", and up to %d for a ratio still too wide to call", r.MaxReps)
	}
	b.WriteString(".\n\n")
	b.WriteString("| gateway | test | Gbit/s | × stock | packets/s | gateway CPU s/GB | × stock | all CPU s/GB | range Gbit/s | pairs |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---|---:|\n")
	for _, x := range r.Results {
		pairs := "—"
		if x.Mode != ModeStock {
			pairs = fmt.Sprint(x.Pairs)
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f | %s | %s | %.2f | %s | %.2f | %.2f–%.2f | %s |\n",
			nameOr(modeNames, x.Mode), nameOr(testNames, x.Test), x.Gbps, called(x.Ratio, x.RatioCI, x.Verdict), si(x.PPS),
			x.GatewayCPUPGB, called(x.CPURatio, x.CPURatioCI, x.CPUVerdict), x.TotalCPUPGB, x.MinGbps, x.MaxGbps, pairs)
	}
	c := r.Ceilings
	fmt.Fprintf(&b, "\nCeilings: raw veth TCP %.1f Gbit/s (1 stream), %.1f Gbit/s (4 streams); chacha20poly1305 Seal on one core %.2f GB/s at 1420 B, %.2f GB/s at 64 KiB.\n",
		c.VethTCP1Gbps, c.VethTCP4Gbps, c.Seal1420GBps, c.Seal65536GBps)
	fmt.Fprintf(&b, "× stock: median over repetitions of the ratio to stock wireguard-go in the same repetition (a pair); in brackets the\n"+
		"interval that holds the true median with %.0f %% confidence whatever the ratios' distribution (it needs ≥ 5 pairs), and\n"+
		"\"too wide\" where that interval spans both 1 and more than ±%.0f %% around it: such a ratio is no result.\n", RatioConfidence*100, parityBand*100)
	b.WriteString("Packets/s: UDP datagrams received; for TCP, payload ÷ 1380 B (the tunnel's MSS). CPU s/GB: CPU seconds per 10⁹ bytes received,\n")
	b.WriteString("of the gateway process alone and of every process of the benchmark (iperf3 client and server, WireGuard client,\n")
	b.WriteString("gateway) with the kernel work done on their behalf.\n")
	return b.String()
}

// called formats a ratio with its confidence interval, marked when the
// interval is too wide to call.
func called(r float64, ci [2]float64, verdict string) string {
	s := times(r)
	if r <= 0 || ci == [2]float64{} {
		return s
	}
	s += fmt.Sprintf(" [%.2f–%.2f]", ci[0], ci[1])
	if verdict == VerdictTooWide {
		s += " too wide"
	}
	return s
}

func times(r float64) string {
	if r <= 0 {
		return "—"
	}
	return fmt.Sprintf("%.2f×", r)
}

// si formats n with a k/M suffix.
func si(n float64) string {
	switch {
	case n >= 1e6:
		return fmt.Sprintf("%.2f M", n/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0f k", n/1e3)
	}
	return fmt.Sprintf("%.0f", n)
}

// Splice replaces the text between the lines <!-- bench:NAME:begin --> and
// <!-- bench:NAME:end --> in the file at path with content; the markers
// must already be there.
func Splice(path, name, content string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	out, err := splice(b, name, content)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return os.WriteFile(path, out, 0o644)
}

// ErrNoMarkers is returned by Splice when the file lacks the markers.
var ErrNoMarkers = errors.New("benchmark markers not found")

func splice(b []byte, name, content string) ([]byte, error) {
	begin := []byte("<!-- bench:" + name + ":begin -->\n")
	end := []byte("<!-- bench:" + name + ":end -->")
	i := bytes.Index(b, begin)
	if i < 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoMarkers, begin[:len(begin)-1])
	}
	j := bytes.Index(b[i:], end)
	if j < 0 {
		return nil, fmt.Errorf("%w: %s", ErrNoMarkers, end)
	}
	j += i
	var out bytes.Buffer
	out.Write(b[:i+len(begin)])
	out.WriteString(strings.TrimRight(content, "\n") + "\n")
	out.Write(b[j:])
	return out.Bytes(), nil
}
