//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/bench"
)

// faultRow is what one scenario of TestFaults measured.
type faultRow struct {
	Scenario string
	// Recovery is, per echo flow, how long after the scenario's event
	// (the LB's move, the heal) the first echo of a datagram sent after
	// it came back; -1: none.
	Recovery map[string]time.Duration
	// Sent and Lost count each flow's datagrams in the scenario's window
	// and those whose echo never came back.
	Sent, Lost map[string]int
	Notes      []string // other figures, one phrase each
	Failed     bool
	Took       time.Duration
}

func newFaultRow(name string) *faultRow {
	return &faultRow{Scenario: name, Recovery: map[string]time.Duration{}, Sent: map[string]int{}, Lost: map[string]int{}}
}

// note adds a figure to the row and logs it.
func (r *faultRow) note(t testing.TB, format string, args ...any) {
	t.Helper()
	s := fmt.Sprintf(format, args...)
	r.Notes = append(r.Notes, s)
	t.Log(s)
}

// faultReport is the table of TestFaults.
type faultReport struct {
	Rows []*faultRow
}

type faultJSON struct {
	Machine   bench.Machine  `json:"machine"`
	LoadAvg   string         `json:"loadavg"` // /proc/loadavg at the end: the machine may be shared
	TookSec   float64        `json:"took_seconds"`
	Scenarios []faultJSONRow `json:"scenarios"`
}

type faultJSONRow struct {
	Scenario   string             `json:"scenario"`
	Result     string             `json:"result"` // pass or FAIL
	RecoveryMS map[string]float64 `json:"recovery_ms"`
	Sent       map[string]int     `json:"sent"`
	Lost       map[string]int     `json:"lost"`
	Notes      []string           `json:"notes"`
	TookSec    float64            `json:"took_seconds"`
}

// write logs the table and writes it to bin/faults.json and bin/faults.md
// at the module root, for docs/faults.md and the README.
func (rep *faultReport) write(t *testing.T, took time.Duration) {
	var j faultJSON
	j.Machine = bench.DescribeMachine()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		j.LoadAvg = strings.TrimSpace(string(b))
	}
	j.TookSec = took.Seconds()
	for _, r := range rep.Rows {
		s := faultJSONRow{Scenario: r.Scenario, Result: result(r), RecoveryMS: map[string]float64{}, Sent: r.Sent, Lost: r.Lost, Notes: r.Notes, TookSec: r.Took.Seconds()}
		for k, v := range r.Recovery {
			s.RecoveryMS[k] = float64(v) / float64(time.Millisecond)
			if v < 0 {
				s.RecoveryMS[k] = -1
			}
		}
		j.Scenarios = append(j.Scenarios, s)
	}
	md := rep.markdown(j)
	t.Logf("fault suite (%v):\n%s", took.Round(time.Second), md)
	root, err := repoRoot()
	if err != nil {
		t.Logf("not writing bin/faults.*: %v", err)
		return
	}
	dir := filepath.Join(root, "bin")
	b, _ := json.MarshalIndent(j, "", "  ")
	err = os.MkdirAll(dir, 0o755)
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "faults.json"), append(b, '\n'), 0o644)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, "faults.md"), []byte(md), 0o644)
	}
	if err != nil {
		t.Errorf("writing %s/faults.json and faults.md: %v", dir, err)
		return
	}
	t.Logf("wrote %s and %s", filepath.Join(dir, "faults.json"), filepath.Join(dir, "faults.md"))
}

func result(r *faultRow) string {
	if r.Failed {
		return "FAIL"
	}
	return "pass"
}

// markdown renders the table: one row per scenario, recovery as the
// slowest flow's, losses summed over the four flows.
func (rep *faultReport) markdown(j faultJSON) string {
	var b strings.Builder
	m := j.Machine
	fmt.Fprintf(&b, "%s, %s, %d cores, kernel %s, %s; load average at the end %s; whole run %.0f s\n\n",
		m.Date, m.CPU, m.Cores, m.Kernel, m.GoVersion, j.LoadAvg, j.TookSec)
	b.WriteString("| scenario | result | traffic back after (slowest of 4 echo flows) | echoes lost / sent | measured |\n")
	b.WriteString("|---|---|---|---|---|\n")
	for _, r := range rep.Rows {
		rec := "–"
		if len(r.Recovery) > 0 {
			var worst time.Duration
			var none []string
			for _, k := range slices.Sorted(maps.Keys(r.Recovery)) {
				v := r.Recovery[k]
				if v < 0 {
					none = append(none, k)
				} else if v > worst {
					worst = v
				}
			}
			rec = fmt.Sprintf("%.2f s", worst.Seconds())
			if len(none) > 0 {
				rec = "never: " + strings.Join(none, ", ")
			}
		}
		var sent, lost int
		for k := range r.Sent {
			sent += r.Sent[k]
			lost += r.Lost[k]
		}
		loss := "–"
		if sent > 0 {
			loss = fmt.Sprintf("%d / %d", lost, sent)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", r.Scenario, result(r), rec, loss, strings.Join(r.Notes, "; "))
	}
	return b.String()
}
