package bench

import (
	"errors"
	"strings"
	"testing"
)

func TestSplice(t *testing.T) {
	in := "# x\n\nbefore\n<!-- bench:throughput:begin -->\nold\ntable\n<!-- bench:throughput:end -->\nafter\n"
	out, err := splice([]byte(in), "throughput", "new\n\n")
	if err != nil {
		t.Fatal(err)
	}
	want := "# x\n\nbefore\n<!-- bench:throughput:begin -->\nnew\n<!-- bench:throughput:end -->\nafter\n"
	if string(out) != want {
		t.Errorf("got\n%s\nwant\n%s", out, want)
	}
	again, err := splice(out, "throughput", "new")
	if err != nil || string(again) != want {
		t.Errorf("splicing the same content twice changed the file: %v\n%s", err, again)
	}
	if _, err := splice([]byte(in), "scale", "x"); !errors.Is(err, ErrNoMarkers) {
		t.Errorf("missing markers: got %v, want ErrNoMarkers", err)
	}
}

func TestSummarize(t *testing.T) {
	runs := []Run{
		{Mode: ModeStock, Test: TestTCP4, Rep: 1, Gbps: 2, Bytes: 1e9, GatewayCPU: 4},
		{Mode: ModeStock, Test: TestTCP4, Rep: 2, Gbps: 3, Bytes: 1e9, GatewayCPU: 5},
		{Mode: ModeStock, Test: TestTCP4, Rep: 3, Gbps: 10, Bytes: 1e9, GatewayCPU: 6},
		{Mode: ModeTUN, Test: TestTCP4, Rep: 2, Gbps: 3.3, Bytes: 2e9, GatewayCPU: 4},
	}
	res := summarize(runs, []string{ModeStock, ModeTUN}, []string{TestTCP4, TestUDP})
	if len(res) != 2 {
		t.Fatalf("got %d results, want 2: %+v", len(res), res)
	}
	if s := res[0]; s.Gbps != 3 || s.Reps != 3 || s.MinGbps != 2 || s.MaxGbps != 10 || s.GatewayCPUPGB != 5 {
		t.Errorf("stock: %+v", s)
	}
	if tun := res[1]; tun.Ratio < 1.099 || tun.Ratio > 1.101 || tun.GatewayCPUPGB != 2 || tun.CPURatio != 0.4 ||
		tun.Pairs != 1 || tun.Verdict != VerdictTooFew {
		t.Errorf("tun: %+v, want ratio 1.1 (paired with repetition 2), 2 CPU s/GB, CPU ratio 0.4, 1 pair, too few to call", tun)
	}
	if got := median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 4 values = %v, want 2.5", got)
	}
	md := (&ThroughputReport{Machine: DescribeMachine(), Results: res, Reps: 3, Duration: "10s"}).Markdown()
	if !strings.Contains(md, "| anyguard, tun egress | TCP, 4 streams | 3.30 | 1.10× | 0 | 2.00 | 0.40× | 0.00 | 3.30–3.30 | 1 |") {
		t.Errorf("markdown lacks the tun row:\n%s", md)
	}
	// Five pairs: the ratio's interval, and "too wide" where it cannot be
	// called.
	for rep, g := range []float64{0.84, 0.9, 1.04, 1.1, 1.2} {
		runs = append(runs, Run{Mode: ModeStock, Test: TestUDP, Rep: rep + 1, Gbps: 1, Bytes: 1e9, GatewayCPU: 1},
			Run{Mode: ModeTUN, Test: TestUDP, Rep: rep + 1, Gbps: g, Bytes: 1e9, GatewayCPU: 1})
	}
	res = summarize(runs, []string{ModeStock, ModeTUN}, []string{TestUDP})
	md = (&ThroughputReport{Machine: DescribeMachine(), Results: res, Reps: 5, MaxReps: 11, Duration: "10s"}).Markdown()
	for _, want := range []string{"| 1.04× [0.84–1.20] too wide |", "| 1.00× [1.00–1.00] |", "up to 11 for a ratio still too wide"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestSealRate(t *testing.T) {
	if r := SealRate(1420, 20e6); r <= 0 {
		t.Errorf("SealRate = %v", r)
	}
}
