package bench

import (
	"math"
	mrand "math/rand/v2"
	"slices"
	"testing"
)

func TestMedianCI(t *testing.T) {
	if _, _, ok := medianCI([]float64{1, 2, 3, 4}, RatioConfidence); ok {
		t.Error("4 values gave an interval; at 90 % the first needs 5 (P(all on one side) = 1/16 > 5 %)")
	}
	if lo, hi, ok := medianCI([]float64{3, 1, 5, 2, 4}, RatioConfidence); !ok || lo != 1 || hi != 5 {
		t.Errorf("5 values: [%v, %v] %v, want [1, 5] (min and max)", lo, hi, ok)
	}
	// n = 10: P(B ≤ 1) = 11/1024 ≤ 5 % < P(B ≤ 2) = 56/1024, so k = 2:
	// the 2nd smallest and the 2nd largest.
	v := []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}
	if lo, hi, ok := medianCI(v, RatioConfidence); !ok || lo != 2 || hi != 9 {
		t.Errorf("10 values: [%v, %v] %v, want [2, 9]", lo, hi, ok)
	}
	if !slices.Equal(v, []float64{10, 1, 9, 2, 8, 3, 7, 4, 6, 5}) {
		t.Error("medianCI sorted its argument in place")
	}
}

// TestMedianCICoverage: the interval holds the true median at least as
// often as promised, for a skewed distribution (log-normal, median 1)
// whose mean is not its median, at the pair counts the benchmark uses.
func TestMedianCICoverage(t *testing.T) {
	rng := mrand.New(mrand.NewPCG(1, 2))
	for _, n := range []int{5, 7, 11, 20} {
		const trials = 4000
		held := 0
		for range trials {
			v := make([]float64, n)
			for i := range v {
				v[i] = math.Exp(rng.NormFloat64() * 0.3)
			}
			if lo, hi, ok := medianCI(v, RatioConfidence); ok && lo <= 1 && 1 <= hi {
				held++
			}
		}
		// The binomial standard error of the coverage at 4000 trials is
		// under 0.5 %: allow 1.5 % below the promise.
		if got := float64(held) / trials; got < RatioConfidence-0.015 {
			t.Errorf("n=%d: the interval held the median in %.1f %% of trials, want ≥ %.0f %%", n, got*100, RatioConfidence*100)
		}
	}
}

func TestCallRatio(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want string
	}{
		{nil, ""},
		{[]float64{1.2, 1.3}, VerdictTooFew},
		{[]float64{1.02, 1.1, 1.15, 1.2, 1.3}, VerdictAbove},
		{[]float64{0.7, 0.8, 0.85, 0.9, 0.99}, VerdictBelow},
		{[]float64{0.96, 0.98, 1.0, 1.01, 1.04}, VerdictParity},
		{[]float64{0.84, 0.9, 1.04, 1.1, 1.2}, VerdictTooWide},
	} {
		ci, got := callRatio(c.v)
		if got != c.want {
			t.Errorf("callRatio(%v) = %q (%v), want %q", c.v, got, ci, c.want)
		}
	}
}

// TestUndecided: further repetitions run only the tests with a ratio too
// wide to call, with stock (for the pairs) and only the undecided modes.
func TestUndecided(t *testing.T) {
	res := []Result{
		{Mode: ModeStock, Test: TestTCP4},
		{Mode: ModeTUN, Test: TestTCP4, Verdict: VerdictAbove, CPUVerdict: VerdictBelow},
		{Mode: ModeNetstack, Test: TestTCP4, Verdict: VerdictTooWide, CPUVerdict: VerdictAbove},
		{Mode: ModeTUN, Test: TestUDP, Verdict: VerdictParity, CPUVerdict: VerdictTooWide},
		{Mode: ModeNetstack, Test: TestUDP, Verdict: VerdictBelow, CPUVerdict: VerdictBelow},
		{Mode: ModeTUN, Test: TestTCP1, Verdict: VerdictTooFew, CPUVerdict: VerdictTooFew},
	}
	got := undecided(res)
	want := map[string][]string{
		TestTCP4: {ModeStock, ModeNetstack},
		TestUDP:  {ModeStock, ModeTUN},
	}
	if len(got) != len(want) {
		t.Fatalf("undecided = %v, want %v", got, want)
	}
	for test, modes := range want {
		if !slices.Equal(got[test], modes) {
			t.Errorf("undecided[%s] = %v, want %v", test, got[test], modes)
		}
	}
}
