package config

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/anyguard/anyguard/internal/keys"
)

// parseBoth parses text with and without splitting the peer list, and
// reports whether the split was taken.
func parseBoth(t *testing.T, text string) (split, whole *Config, splitErr, wholeErr error, taken bool) {
	t.Helper()
	old := parallelMinLines
	defer func() { parallelMinLines = old }()
	parallelMinLines = 2
	var doc yaml.Node
	taken = parallelPeers([]byte(text), &doc)
	split, splitErr = Parse([]byte(text), t.TempDir())
	parallelMinLines = 1 << 30
	whole, wholeErr = Parse([]byte(text), t.TempDir())
	return split, whole, splitErr, wholeErr, taken
}

func blockPeers(n int, entry func(i int) string) string {
	var b strings.Builder
	b.WriteString("node: {name: n}\nclients:\n  private_key: PRIV\n  address: 10.99.0.1/16\n  peers:\n")
	for i := range n {
		b.WriteString(entry(i))
	}
	b.WriteString("egress:\n  mode: netstack\n")
	return fill(b.String())
}

// TestParallelPeersSameResult: splitting the peer list gives the same
// configuration and the same errors, with the same lines, as parsing the
// file whole; files of another shape are parsed whole.
func TestParallelPeersSameResult(t *testing.T) {
	pubs := make([]string, 12)
	for i := range pubs {
		k, err := keys.Generate()
		if err != nil {
			t.Fatal(err)
		}
		pubs[i] = k.Public().String()
	}
	flow := func(i int) string {
		return fmt.Sprintf("    - {name: c%d, public_key: %s, allowed_ips: [10.99.1.%d/32]}\n", i, pubs[i], i)
	}
	block := func(i int) string {
		return fmt.Sprintf("  # client %d\n  - name: c%d\n    public_key: %s\n\n    allowed_ips:\n      - 10.99.1.%d/32\n", i, i, pubs[i], i)
	}
	cases := []struct {
		name  string
		text  string
		taken bool
	}{
		{"flow", blockPeers(12, flow), true},
		{"block, items at the key's indentation, comments", blockPeers(12, block), true},
		{"CRLF", strings.ReplaceAll(blockPeers(12, flow), "\n", "\r\n"), true},
		{"bad prefix late in the list", blockPeers(12, func(i int) string {
			if i == 9 {
				return fmt.Sprintf("    - {name: c%d, public_key: %s, allowed_ips: [10.99.1.%d/33]}\n", i, pubs[i], i)
			}
			return flow(i)
		}), true},
		{"overlap across pieces", blockPeers(12, func(i int) string {
			if i == 11 {
				return fmt.Sprintf("    - {name: c%d, public_key: %s, allowed_ips: [10.99.1.0/30]}\n", i, pubs[i])
			}
			return flow(i)
		}), true},
		{"unknown field in an item", blockPeers(12, func(i int) string {
			if i == 7 {
				return fmt.Sprintf("    - {name: c%d, public_key: %s, allowed_ips: [10.99.1.%d/32], keepalive: 25}\n", i, pubs[i], i)
			}
			return flow(i)
		}), true},
		{"flow item over two lines", blockPeers(12, func(i int) string {
			return fmt.Sprintf("    - {name: c%d,\n    - x}\n", i)
		}), false},
		{"syntax error in an item", blockPeers(12, func(i int) string {
			if i == 10 {
				return "    - {name: [}\n"
			}
			return flow(i)
		}), false},
		{"peers twice", blockPeers(12, flow) + "  peers:\n", false},
		{"alias across pieces", blockPeers(12, func(i int) string {
			if i == 0 {
				return "    - &first {name: c0}\n"
			}
			if i == 11 {
				return "    - *first\n"
			}
			return flow(i)
		}), false},
		{"example", fill(Example), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			split, whole, splitErr, wholeErr, taken := parseBoth(t, tc.text)
			if taken != tc.taken {
				t.Errorf("split taken = %v, want %v", taken, tc.taken)
			}
			if fmt.Sprint(splitErr) != fmt.Sprint(wholeErr) {
				t.Errorf("errors differ:\nsplit %v\nwhole %v", splitErr, wholeErr)
			}
			if !reflect.DeepEqual(split, whole) {
				t.Errorf("configurations differ")
			}
			t.Logf("err: %v", splitErr)
		})
	}
}

// FuzzParallelPeers: whatever the file, splitting the peer list gives the
// same configuration or the same error as parsing it whole.
func FuzzParallelPeers(f *testing.F) {
	f.Add(fill(Example))
	f.Add(blockPeers(3, func(i int) string {
		return fmt.Sprintf("    - {name: c%d, public_key: PUB%d, allowed_ips: [10.99.1.%d/32]}\n", i, i+1, i)
	}))
	f.Add(blockPeers(3, func(i int) string {
		return fmt.Sprintf("  - name: c%d\n    public_key: PUB%d\n    allowed_ips: [10.99.1.%d/32]\n", i, i+1, i)
	}))
	f.Fuzz(func(t *testing.T, text string) {
		split, whole, splitErr, wholeErr, _ := parseBoth(t, text)
		if fmt.Sprint(splitErr) != fmt.Sprint(wholeErr) {
			t.Fatalf("errors differ:\nsplit %v\nwhole %v", splitErr, wholeErr)
		}
		if !reflect.DeepEqual(split, whole) {
			t.Fatalf("configurations differ")
		}
	})
}
