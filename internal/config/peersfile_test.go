package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/anyguard/anyguard/internal/keys"
)

// peersHead is a configuration whose clients (alice on line 7) are
// followed by those of peers.txt.
const peersHead = `node: {name: gw1}
clients:
  private_key: PRIV
  address: 10.99.0.1/16
  peers_file: peers.txt
  peers:
    - {name: alice, public_key: PUB1, allowed_ips: [10.99.0.2/32]}
`

// loadWithPeers writes yaml (key placeholders filled) and peers.txt to a
// new directory, with psk.key and world.key next to them, and loads it.
func loadWithPeers(t *testing.T, yaml, peers string) (*Config, string, error) {
	t.Helper()
	dir := t.TempDir()
	writeKey(t, filepath.Join(dir, "psk.key"), testKeys["PSK"].String()+"\n", 0o600)
	writeKey(t, filepath.Join(dir, "world.key"), testKeys["PSK"].String()+"\n", 0o644)
	writeKey(t, filepath.Join(dir, "peers.txt"), fill(peers), 0o644)
	path := filepath.Join(dir, "anyguard.yaml")
	writeKey(t, path, fill(yaml), 0o644)
	c, err := Load(path)
	return c, dir, err
}

func TestPeersFile(t *testing.T) {
	peers := "\xef\xbb\xbf# NAME PUBLIC_KEY ALLOWED_IPS [PRESHARED_KEY_FILE]\r\n" +
		"\r\n" +
		"bob PUB2 10.99.0.3/32,10.99.1.0/24 psk.key\r\n" +
		"  \t carol\tPUB3   fd99::4/128   # a comment\n" +
		"   # indented comment\n" +
		"dave@example.com OWNPUBX 10.99.0.5/32" // no final newline
	peers = strings.Replace(peers, "OWNPUBX", testKeys["PUB1"].Public().String(), 1)
	c, dir, err := loadWithPeers(t, peersHead, peers)
	if err != nil {
		t.Fatal(err)
	}
	want := []Peer{
		{Name: "alice", PublicKey: testKeys["PUB1"], AllowedIPs: pfx("10.99.0.2/32")},
		{Name: "bob", PublicKey: testKeys["PUB2"], PresharedKey: testKeys["PSK"], AllowedIPs: pfx("10.99.0.3/32", "10.99.1.0/24")},
		{Name: "carol", PublicKey: testKeys["PUB3"], AllowedIPs: pfx("fd99::4/128")},
		{Name: "dave@example.com", PublicKey: testKeys["PUB1"].Public(), AllowedIPs: pfx("10.99.0.5/32")},
	}
	if !reflect.DeepEqual(c.Clients.Peers, want) {
		t.Errorf("peers:\n got %+v\nwant %+v", c.Clients.Peers, want)
	}
	if c.Clients.PeersFile != filepath.Join(dir, "peers.txt") {
		t.Errorf("PeersFile = %q", c.Clients.PeersFile)
	}
	if err := c.Validate(); err != nil {
		t.Errorf("Validate after Load: %v", err)
	}

	// The same clients in YAML only have the same digest.
	y := mustParse(t, `
clients:
  private_key: PRIV
  address: 10.99.0.1/16
  peers:
    - {name: alice, public_key: PUB1, allowed_ips: [10.99.0.2/32]}
    - {name: bob, public_key: PUB2, preshared_key: PSK, allowed_ips: [10.99.0.3/32, 10.99.1.0/24]}
    - {name: carol, public_key: PUB3, allowed_ips: ["fd99::4/128"]}
    - {name: dave@example.com, public_key: `+testKeys["PUB1"].Public().String()+`, allowed_ips: [10.99.0.5/32]}
`, dir)
	if y.ClientSetDigest() != c.ClientSetDigest() {
		t.Error("the same clients from a peers file have another digest")
	}

	// A file with no clients at all, and no YAML peers.
	c, _, err = loadWithPeers(t, strings.Replace(peersHead, "  peers:\n    - {name: alice, public_key: PUB1, allowed_ips: [10.99.0.2/32]}\n", "", 1), "# none yet\n")
	if err != nil || len(c.Clients.Peers) != 0 {
		t.Errorf("empty peers file: %v, %d peers", err, len(c.Clients.Peers))
	}
}

func TestPeersFileErrors(t *testing.T) {
	long := "x PUB2 " + strings.Repeat("10.99.0.3/32,", MaxPeersFileLine/13) + "10.99.0.4/32\n"
	for _, tc := range []struct {
		name, peers string
		want        error
		text        string // the error after "config DIR/anyguard.yaml: DIR/"
	}{
		{"bad key", "# c\nbob2 hello 10.99.0.3/32\n", keys.ErrBadKey, "peers.txt:2: public_key: not a WireGuard key: want 44 characters of base64 encoding 32 bytes"},
		{"bad key base64", "bob " + strings.Repeat("!", 44) + " 10.99.0.3/32\n", keys.ErrBadKey, "peers.txt:1: public_key: not a WireGuard key"},
		{"zero key", "bob " + keys.Key{}.String() + " 10.99.0.3/32\n", ErrInvalidValue, "peers.txt:1: public_key: an all-zero key is not a key"},
		{"missing key", "# c\nbob\n", ErrMissing, "peers.txt:2: public_key: required: want NAME PUBLIC_KEY ALLOWED_IPS[,ALLOWED_IPS...] [PRESHARED_KEY_FILE]"},
		{"missing allowed IPs", "bob PUB2 # 10.99.0.3/32\n", ErrMissing, "peers.txt:1: allowed_ips: required"},
		{"too many fields", "bob PUB2 10.99.0.3/32 psk.key extra\n", ErrInvalidValue, "peers.txt:1: more than 4 fields: want NAME"},
		{"bad name", "b!b PUB2 10.99.0.3/32\n", ErrInvalidValue, `peers.txt:1: name: "b!b" is not a valid name: use 1 to 64 of A-Z a-z 0-9 . _ @ + -`},
		{"long name", strings.Repeat("b", 65) + " PUB2 10.99.0.3/32\n", ErrInvalidValue, "peers.txt:1: name: " + `"` + strings.Repeat("b", 65) + `" is not a valid name`},
		{"bad prefix", "bob PUB2 10.99.0.3/33\n", ErrInvalidValue, `peers.txt:1: allowed_ips[0]: "10.99.0.3/33" is not a valid IP prefix`},
		{"bare address", "bob PUB2 10.99.0.3/32,10.99.0.4\n", ErrInvalidValue, `peers.txt:1: allowed_ips[1]: "10.99.0.4" is not a valid IP prefix; write 10.99.0.4/32 for a single address`},
		{"host bits", "bob PUB2 10.99.1.1/24\n", ErrInvalidValue, "peers.txt:1: allowed_ips[0]: 10.99.1.1/24 has host bits set; use 10.99.1.0/24"},
		{"4in6", "bob PUB2 ::ffff:10.99.0.3/128\n", ErrInvalidValue, "peers.txt:1: allowed_ips[0]: ::ffff:10.99.0.3/128 is an IPv4-mapped IPv6 prefix"},
		{"empty prefix", "bob PUB2 10.99.0.3/32,,10.99.0.4/32\n", ErrMissing, "peers.txt:1: allowed_ips[1]: empty"},
		{"trailing comma", "bob PUB2 10.99.0.3/32,\n", ErrMissing, "peers.txt:1: allowed_ips[1]: empty"},
		{"spaced list", "bob PUB2 10.99.0.3/32, 10.99.0.4/32\n", ErrMissing, "peers.txt:1: allowed_ips[1]: empty"},
		{"overlong line", "# ok\n" + long, ErrInvalidValue, "peers.txt:2: line is longer than 4096 bytes"},
		{"CRLF line numbers", "bob PUB2 10.99.0.3/32\r\n\r\ncarol PUB3 10.99.0.3/32\r\n", ErrOverlap,
			`peers.txt:3: allowed_ips[0]: 10.99.0.3/32 of peer "carol" overlaps 10.99.0.3/32 of peer "bob" at DIR/peers.txt:1`},
		{"duplicate name in file", "bob PUB2 10.99.0.3/32\nbob PUB3 10.99.0.4/32\n", ErrDuplicate, `peers.txt:2: name: peer name "bob" is also used at DIR/peers.txt:1`},
		{"duplicate name across", "alice PUB2 10.99.0.3/32\n", ErrDuplicate, `peers.txt:1: name: peer name "alice" is also used at clients.peers[0].name on line 7`},
		{"duplicate key across", "bob PUB1 10.99.0.3/32\n", ErrDuplicate, `peers.txt:1: public_key: public key of peer "bob" is also used at clients.peers[0].public_key on line 7`},
		{"overlap across", "bob PUB2 10.99.0.2/31\n", ErrOverlap, `peers.txt:1: allowed_ips[0]: 10.99.0.2/31 of peer "bob" overlaps 10.99.0.2/32 of peer "alice" at clients.peers[0].allowed_ips[0] on line 7`},
		{"contains gateway", "bob PUB2 10.99.0.0/24\n", ErrOverlap, "peers.txt:1: allowed_ips[0]: 10.99.0.0/24 contains the gateway's own address 10.99.0.1"},
		{"own key", "bob OWNPUB 10.99.0.3/32\n", ErrInvalidValue, "peers.txt:1: public_key: is the gateway's own public key"},
		{"psk missing", "bob PUB2 10.99.0.3/32 nope.psk\n", fs.ErrNotExist, "peers.txt:1: preshared_key_file: open DIR/nope.psk: no such file or directory"},
		{"psk world-readable", "bob PUB2 10.99.0.3/32 world.key\n", keys.ErrWorldReadable, "peers.txt:1: preshared_key_file: key file DIR/world.key has mode 0644, open to group or others: run chmod 600 DIR/world.key"},
		{"NUL", "bob\x00 PUB2 10.99.0.3/32\n", ErrInvalidValue, `peers.txt:1: name: "bob\x00" is not a valid name`},
		{"line break in name", "bob\vx PUB2 10.99.0.3/32\n", ErrInvalidValue, `peers.txt:1: name: "bob\vx" is not a valid name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir, err := loadWithPeers(t, peersHead, tc.peers)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("err %v is not a *FieldError", err)
			}
			msg := strings.ReplaceAll(err.Error(), dir, "DIR")
			prefix := "config DIR/anyguard.yaml: DIR/"
			if !strings.HasPrefix(msg, prefix+tc.text) {
				t.Errorf("err = %s\nwant %s...", msg, prefix+tc.text)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error spans lines: %q", msg)
			}
		})
	}
}

func TestPeersFileFieldErrors(t *testing.T) {
	nope := strings.Replace(peersHead, "peers_file: peers.txt", "peers_file: nope.txt", 1)
	for _, tc := range []struct {
		name, yaml string
		want       error
		text       string
	}{
		{"missing file", nope, fs.ErrNotExist, "clients.peers_file: open DIR/nope.txt: no such file or directory (line 5)"},
		{"empty name", strings.Replace(nope, "peers_file: nope.txt", "peers_file: ''", 1), ErrMissing, "clients.peers_file: empty file name (line 5)"},
		{"null", strings.Replace(nope, "peers_file: nope.txt", "peers_file:", 1), ErrMissing, "clients.peers_file: no value given (line 5)"},
		{"list", strings.Replace(nope, "peers_file: nope.txt", "peers_file: [a]", 1), ErrInvalidValue, "clients.peers_file: expected a string, got a list (line 5)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, dir, err := loadWithPeers(t, tc.yaml, "")
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			msg := strings.ReplaceAll(err.Error(), dir, "DIR")
			if want := "config DIR/anyguard.yaml: " + tc.text; msg != want {
				t.Errorf("err = %s\nwant %s", msg, want)
			}
		})
	}
}

// FuzzPeersFile checks that the line parser never panics, that its errors
// are single-line FieldErrors naming the file and a line it has, and that
// what it accepts writes back to a file that parses to the same clients.
func FuzzPeersFile(f *testing.F) {
	dir := f.TempDir()
	writeKey(f, filepath.Join(dir, "psk.key"), testKeys["PSK"].String()+"\n", 0o600)
	f.Add([]byte(fill("alice PUB1 10.99.0.2/32\nbob\tPUB2\t10.99.0.3/32,fd99::3/128 psk.key # c\r\n\n# x\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, lines, err := parsePeersFile(data, "peers.txt", dir)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.File != "peers.txt" || fe.Line < 1 || fe.Line > strings.Count(string(data), "\n")+1 {
				t.Fatalf("error %#v: not a *FieldError at a line of peers.txt", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q spans lines", err)
			}
			return
		}
		if len(lines) != len(ps) {
			t.Fatalf("%d peers, %d lines", len(ps), len(lines))
		}
		var b strings.Builder
		for _, p := range ps {
			var ips []string
			for _, ip := range p.AllowedIPs {
				ips = append(ips, ip.String())
			}
			b.WriteString(p.Name + " " + p.PublicKey.String() + " " + strings.Join(ips, ","))
			if !p.PresharedKey.IsZero() {
				b.WriteString(" psk.key")
			}
			b.WriteString("\n")
		}
		again, _, err := parsePeersFile([]byte(b.String()), "peers.txt", dir)
		if err != nil || len(ps) > 0 && !reflect.DeepEqual(again, ps) {
			t.Fatalf("written back:\n%s\nparses to %+v, %v; want %+v", b.String(), again, err, ps)
		}
		c := Default()
		c.Clients.PrivateKey = testKeys["PRIV"]
		c.Clients.Address = pfx("10.99.0.1/16")
		c.Clients.Peers = ps
		v := &validator{peers: &filePeers{file: "peers.txt", lines: lines}}
		if err := c.validate(v); err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("validate: %q is not a single-line *FieldError", err)
			}
		}
	})
}

// TestPeersFileParallel: a file parsed in pieces gives the clients, lines
// and first error of one parsed whole.
func TestPeersFileParallel(t *testing.T) {
	var b strings.Builder
	for i := range 3000 {
		if i%7 == 0 {
			b.WriteString("# comment\r\n\n")
		}
		k := testKeys["PUB1"]
		k[0], k[1] = byte(i), byte(i>>8)
		fmt.Fprintf(&b, "c%d %s 10.99.%d.%d/32\n", i, k, i/256, i%256)
	}
	good := b.String()
	bad := good + "late PUB2 10.99.200.1/33\n" + good
	defer func(n int) { parallelPeersFileBytes = n }(parallelPeersFileBytes)
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, text := range []string{good, bad, good[:len(good)-1]} {
		parallelPeersFileBytes = 1 << 30
		ps, lines, err := parsePeersFile([]byte(fill(text)), "p", "")
		parallelPeersFileBytes = 0
		for _, workers := range []int{2, 3, 8} {
			runtime.GOMAXPROCS(workers)
			ps2, lines2, err2 := parsePeersFile([]byte(fill(text)), "p", "")
			if fmt.Sprint(err) != fmt.Sprint(err2) || !reflect.DeepEqual(ps, ps2) || !reflect.DeepEqual(lines, lines2) {
				t.Errorf("%d pieces: %d peers, err %v; whole: %d peers, err %v", workers, len(ps2), err2, len(ps), err)
			}
		}
	}
}
