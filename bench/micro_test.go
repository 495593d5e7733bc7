package bench

import (
	"strings"
	"testing"
)

func TestParseMicro(t *testing.T) {
	in := `goos: linux
goarch: amd64
pkg: github.com/anyguard/anyguard/router
cpu: AMD EPYC
BenchmarkForward-2           	  140306	     10475 ns/op	17107.16 MB/s	  12219401 pkts/s	       0 B/op	       0 allocs/op
BenchmarkForwardParallel-2   	  124100	      9026 ns/op	       3 B/op	       0 allocs/op
PASS
ok  	github.com/anyguard/anyguard/router	5.265s
pkg: github.com/anyguard/anyguard/device
BenchmarkNetstackTCP/upload-2       	    2308	    802188 ns/op	  81.70 MB/s	   77339 B/op	     112 allocs/op
`
	rep, err := ParseMicro(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Results) != 3 {
		t.Fatalf("got %d results, want 3: %+v", len(rep.Results), rep.Results)
	}
	if r := rep.Results[2]; r.Package != "github.com/anyguard/anyguard/device" || r.Name != "NetstackTCP/upload" || r.Metrics["allocs/op"] != 112 {
		t.Errorf("third result: %+v", r)
	}
	md := rep.Markdown()
	for _, want := range []string{
		"| router | `Forward` | 10.5 µs/op, 17107 MB/s, 12.22 M pkts/s, 0 B/op, 0 allocs/op |",
		"| device | `NetstackTCP/upload` | 802.2 µs/op, 82 MB/s, 77339 B/op, 112 allocs/op |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	if _, err := ParseMicro(strings.NewReader("PASS\n")); err == nil {
		t.Error("no results: want an error")
	}
}
