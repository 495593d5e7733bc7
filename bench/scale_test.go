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
	md := (&ScaleReport{Machine: DescribeMachine(), Points: []ScalePoint{p}}).Markdown()
	if !bytes.Contains([]byte(md), []byte("| 200 |")) {
		t.Errorf("markdown lacks the row:\n%s", md)
	}
}
