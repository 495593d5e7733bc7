package bench

import (
	"bytes"
	"encoding/json"
	"testing"
)

// TestScaleChild runs the child side of the scale benchmark in process
// with a small client set.
func TestScaleChild(t *testing.T) {
	base, changed, err := writeScaleConfigs(t.TempDir(), 200)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := ScaleChild(base, changed, &out); err != nil {
		t.Fatal(err)
	}
	var p ScalePoint
	if err := json.Unmarshal(out.Bytes(), &p); err != nil {
		t.Fatalf("%v: %s", err, out.Bytes())
	}
	if p.Clients != 200 || p.RSSBytes <= 0 || p.StartSec <= 0 || p.Goroutines < 400 {
		t.Errorf("implausible point %+v", p)
	}
	r := &ScaleReport{Machine: DescribeMachine(), Points: []ScalePoint{
		{Clients: 1, RSSBytes: 20e6}, p, {Clients: 100000, Error: "too many peers"}}}
	r.Points[1].RSSBytes = 20e6 + 199*30e3
	md := r.Markdown()
	for _, want := range []string{"| 200 |", "| 100000 | does not start: too many peers |", "adds ≈ 30 KB of RSS"} {
		if !bytes.Contains([]byte(md), []byte(want)) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}
