//go:build linux

package netns

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"time"
)

// IperfResult is the part of iperf3 --json output the harness reads.
type IperfResult struct {
	Error string `json:"error"`
	End   struct {
		SumSent     IperfSum `json:"sum_sent"`
		SumReceived IperfSum `json:"sum_received"`
		// Sum is where UDP tests report the receiver's view.
		Sum IperfSum `json:"sum"`
	} `json:"end"`
	// CPU is the user plus system time the iperf3 client process used.
	CPU time.Duration `json:"-"`
}

// IperfSum is one summary of an iperf3 run.
type IperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int64   `json:"retransmits"`
	JitterMs      float64 `json:"jitter_ms"`
	LostPackets   int64   `json:"lost_packets"`
	Packets       int64   `json:"packets"`
	LostPercent   float64 `json:"lost_percent"`
}

// Iperf runs an iperf3 client in ns against server:IperfPort for the given
// duration with extra arguments (-P 4, -u -b 0, -R, ...).
func Iperf(ctx context.Context, ns *NS, server string, duration time.Duration, extra ...string) (IperfResult, error) {
	secs := max(1, int(duration.Round(time.Second)/time.Second))
	args := append([]string{"iperf3", "-c", server, "-p", strconv.Itoa(IperfPort),
		"-t", strconv.Itoa(secs), "--connect-timeout", "5000", "--json"}, extra...)
	ctx, cancel := context.WithTimeout(ctx, duration+30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", ns.Command(args...)[1:]...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var r IperfResult
	if cmd.ProcessState != nil {
		// ip netns exec execs iperf3 in the same process.
		r.CPU = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
	}
	if jerr := json.Unmarshal(out, &r); jerr != nil {
		return r, fmt.Errorf("iperf3 %v: %v, output not JSON (%v):\n%s%s", extra, err, jerr, out, stderr.Bytes())
	}
	if err != nil || r.Error != "" {
		return r, fmt.Errorf("iperf3 %v: %v: %s", extra, err, r.Error)
	}
	return r, nil
}
