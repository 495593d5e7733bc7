package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

// TestScaleChild runs the child side of the scale benchmark in process
// with a small client set.
func TestScaleChild(t *testing.T) {
	for _, peersFile := range []bool{false, true} {
		testScaleChild(t, peersFile)
	}
}

func testScaleChild(t *testing.T, peersFile bool) {
	base, changed, privs, _, err := writeScaleConfigs(t.TempDir(), 200, 3, peersFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(privs) != 3 {
		t.Fatalf("%d live keys, want 3", len(privs))
	}
	var out bytes.Buffer
	if err := ScaleChild(base, changed, strings.NewReader(""), &out); err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(&out)
	var started, p ScalePoint
	if err := dec.Decode(&started); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	if started.ListenPort == 0 || p.Clients != 200 || p.ReloadSec <= 0 || p.RSSBytes <= 0 || p.StartSec <= 0 || p.Goroutines > 200 || p.LivePeers != 0 {
		t.Errorf("implausible point %+v", p)
	}
	r := &ScaleReport{Machine: DescribeMachine(), Points: []ScalePoint{
		{Clients: 1, RSSBytes: 20e6}, p, {Clients: 100000, Error: "too many peers"}, {Clients: 100000, Format: FormatPeersFile, RSSBytes: 1e9}}}
	r.Points[1].RSSBytes = 20e6 + 199*3e3
	md := r.Markdown()
	for _, want := range []string{"| 200 | YAML |", "| 100000 | YAML | does not start: too many peers |", "| 100000 | peers file |", "adds ≈ 3.0 KB of RSS"} {
		if !bytes.Contains([]byte(md), []byte(want)) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
