package config

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyguard/anyguard/internal/keys"
)

// Prefixes of the bad configs below; they end after line 4 or 3.
const (
	head      = "node: {name: gw1}\nclients:\n  private_key: PRIV\n  address: 10.99.0.1/16\n"
	headNoKey = "node: {name: gw1}\nclients:\n  address: 10.99.0.1/16\n"
	headNoAdr = "node: {name: gw1}\nclients:\n  private_key: PRIV\n"
	tail      = "clients:\n  private_key: PRIV\n  address: 10.99.0.1/16\n"
)

// peers returns a clients.peers list (starting on line 5 after head) with
// one peer per allowed_ips flow list, named p0, p1, ...
func peers(allowed ...string) string {
	var b strings.Builder
	b.WriteString("  peers:\n")
	for i, a := range allowed {
		fmt.Fprintf(&b, "    - name: p%d\n      public_key: PUB%d\n      allowed_ips: %s\n", i, i+1, a)
	}
	return b.String()
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	writeKey(t, filepath.Join(dir, "good.key"), testKeys["PRIV"].String(), 0o600)
	writeKey(t, filepath.Join(dir, "world.key"), testKeys["PRIV"].String(), 0o644)
	writeKey(t, filepath.Join(dir, "group.key"), testKeys["PRIV"].String(), 0o640)
	writeKey(t, filepath.Join(dir, "bad.key"), "hello\n", 0o600)
	writeKey(t, filepath.Join(dir, "zero.key"), keys.Key{}.String(), 0o600)

	for _, tc := range []struct {
		name, yaml string
		want       error
		path       string
		line       int
		text       string // further text the message must contain
	}{
		// File level.
		{"empty file", "", ErrMissing, "", 0, "file is empty"},
		{"comments only", "# nothing here\n", ErrMissing, "", 0, "file is empty"},
		{"null document", "---\n", ErrMissing, "", 0, "file is empty"},
		{"syntax error", head + "  mtu: [1400\n", ErrSyntax, "", 5, "invalid YAML: did not find expected ',' or ']'"},
		{"syntax error in scanner", head + "  mtu: 1\n  x: y: z\n", ErrSyntax, "", 6, "mapping values are not allowed"},
		{"syntax error on line 1", "a: [1, }\n", ErrSyntax, "", 1, "invalid YAML"},
		{"two documents", head + "---\nlog: {}\n", ErrInvalidValue, "", 5, "second YAML document"},
		{"top level list", "- a\n- b\n", ErrInvalidValue, "", 1, "expected a mapping, got a list"},
		{"complex key", head + "? [a]\n: 1\n", ErrInvalidValue, "", 5, "expected a field name"},
		{"anchor", head + "log: &l {level: info}\n", ErrInvalidValue, "log", 5, "anchors (&l) are not supported"},
		{"anchor on key", head + "&k log: {}\n", ErrInvalidValue, "", 5, "anchors"},
		{"custom tag", head + "log:\n  level: !lvl info\n", ErrInvalidValue, "log.level", 6, `tagged "!lvl"`},

		// Keys and kinds.
		{"unknown top-level", head + "nodes: {}\n", ErrUnknownField, "nodes", 5, "unknown field (line 5); did you mean node?"},
		{"unknown nested", head + "  peers:\n    - name: a\n      publickey: PUB1\n", ErrUnknownField, "clients.peers[0].publickey", 7, "did you mean public_key?"},
		{"unknown typo", head + "  listen_prot: 1\n", ErrUnknownField, "clients.listen_prot", 5, "did you mean listen_port?"},
		{"unknown far off", head + "egress:\n  zzz: 1\n", ErrUnknownField, "egress.zzz", 6, "known fields: mode, tun_name, queues, prefixes"},
		{"duplicate key", head + "  mtu: 1400\n  mtu: 1500\n", ErrDuplicate, "clients.mtu", 6, "set twice (first on line 5)"},
		{"duplicate section", head + "clients: {}\n", ErrDuplicate, "clients", 5, "first on line 2"},
		{"list for scalar", head + "  mtu: [1400]\n", ErrInvalidValue, "clients.mtu", 5, "expected an integer, got a list"},
		{"scalar for mapping", head + "egress: tun\n", ErrInvalidValue, "egress", 5, "expected a mapping, got a string"},
		{"mapping for list", head + "  peers: {name: a}\n", ErrInvalidValue, "clients.peers", 5, "expected a list, got a mapping"},
		{"mapping for address", headNoAdr + "  address: {a: 1}\n", ErrInvalidValue, "clients.address", 4, "expected a string or a list"},
		{"bool for string", head + "egress:\n  mode: true\n", ErrInvalidValue, "egress.mode", 6, "expected a string, got a boolean"},
		{"string for bool", head + "  uapi: \"yes\"\n", ErrInvalidValue, "clients.uapi", 5, "expected true or false, got a string"},
		{"null value", head + "  mtu:\n", ErrMissing, "clients.mtu", 5, "no value given"},
		{"float", head + "  mtu: 1420.5\n", ErrInvalidValue, "clients.mtu", 5, "expected an integer, got a number"},
		{"quoted integer", head + "  mtu: \"1420\"\n", ErrInvalidValue, "clients.mtu", 5, "expected an integer, got a string"},
		{"port too big", head + "  listen_port: 65536\n", ErrInvalidValue, "clients.listen_port", 5, "65536 is out of range 0..65535"},
		{"port negative", head + "  listen_port: -1\n", ErrInvalidValue, "clients.listen_port", 5, "-1 is out of range 0..65535"},
		{"huge integer", head + "egress:\n  queues: 99999999999999999999999\n", ErrInvalidValue, "egress.queues", 6, "out of range"},

		// Keys.
		{"private key missing", headNoKey, ErrMissing, "clients.private_key", 2, "set private_key or private_key_file"},
		{"private key twice", headNoKey + "  private_key: PRIV\n  private_key_file: good.key\n", ErrConflict, "clients.private_key_file", 5, "conflicts with private_key on line 4 (line 5); set only one"},
		{"key file missing", headNoKey + "  private_key_file: nope.key\n", fs.ErrNotExist, "clients.private_key_file", 4, "nope.key"},
		{"key file world-readable", headNoKey + "  private_key_file: world.key\n", keys.ErrWorldReadable, "clients.private_key_file", 4, "world.key has mode 0644, open to group or others: run chmod 600 "},
		{"backbone key file group-readable", head + "backbone:\n  private_key_file: group.key\n", keys.ErrWorldReadable, "backbone.private_key_file", 6, "group.key has mode 0640, open to group or others: run chmod 600 "},
		{"gossip key file group-readable", head + "cluster:\n  secret_key_file: group.key\n", keys.ErrWorldReadable, "cluster.secret_key_file", 6, "group.key has mode 0640, open to group or others: run chmod 600 "},
		{"key file not a key", headNoKey + "  private_key_file: bad.key\n", keys.ErrBadKey, "clients.private_key_file", 4, "bad.key"},
		{"key file zero", headNoKey + "  private_key_file: zero.key\n", ErrInvalidValue, "clients.private_key_file", 4, "all-zero"},
		{"key file empty name", headNoKey + "  private_key_file: ''\n", ErrMissing, "clients.private_key_file", 4, "empty file name"},
		{"inline bad key", headNoKey + "  private_key: hello\n", keys.ErrBadKey, "clients.private_key", 4, "44 characters"},
		{"inline zero key", headNoKey + "  private_key: " + keys.Key{}.String() + "\n", ErrInvalidValue, "clients.private_key", 4, "all-zero"},
		{"psk twice", head + "  peers:\n    - name: a\n      public_key: PUB1\n      preshared_key: PSK\n      preshared_key_file: good.key\n", ErrConflict, "clients.peers[0].preshared_key_file", 9, "conflicts with preshared_key"},
		{"psk bad", head + "  peers:\n    - name: a\n      public_key: PUB1\n      preshared_key: xyz\n", keys.ErrBadKey, "clients.peers[0].preshared_key", 8, ""},

		// Prefixes.
		{"prefix invalid", head + peers("[10.99.0.2/33]"), ErrInvalidValue, "clients.peers[0].allowed_ips[0]", 8, `"10.99.0.2/33" is not a valid IP prefix (line 8)`},
		{"bare address", head + peers("[10.99.0.2]"), ErrInvalidValue, "clients.peers[0].allowed_ips[0]", 8, "write 10.99.0.2/32"},
		{"allowed host bits", head + peers("[10.99.1.1/24]"), ErrInvalidValue, "clients.peers[0].allowed_ips[0]", 8, "10.99.1.1/24 has host bits set (line 8); use 10.99.1.0/24"},
		{"egress host bits", head + "egress:\n  prefixes: [10.1.2.3/16]\n", ErrInvalidValue, "egress.prefixes[0]", 6, "use 10.1.0.0/16"},
		{"egress 4in6", head + "egress:\n  prefixes: ['::ffff:10.1.0.0/112']\n", ErrInvalidValue, "egress.prefixes[0]", 6, "IPv4-mapped"},
		{"address network", headNoAdr + "  address: 10.99.0.0/16\n", ErrInvalidValue, "clients.address", 4, "network address of 10.99.0.0/16: give the gateway's own address, e.g. 10.99.0.1/16"},
		{"address v6 network", headNoAdr + "  address: ['fd99::/64']\n", ErrInvalidValue, "clients.address[0]", 4, "network address"},
		{"address single IP", headNoAdr + "  address: 10.99.0.1/32\n", ErrInvalidValue, "clients.address", 4, "no room for clients"},
		{"address broadcast", headNoAdr + "  address: 10.99.255.255/16\n", ErrInvalidValue, "clients.address", 4, "broadcast address"},
		{"address two IPv4", headNoAdr + "  address:\n    - 10.99.0.1/16\n    - 10.98.0.1/16\n", ErrDuplicate, "clients.address[1]", 6, "second IPv4 address (the first is at clients.address[0] on line 5)"},
		{"address missing", headNoAdr, ErrMissing, "clients.address", 2, "required"},
		{"address empty", headNoAdr + "  address: []\n", ErrMissing, "clients.address", 4, "required"},
		{"address not a prefix", headNoAdr + "  address: gateway\n", ErrInvalidValue, "clients.address", 4, "not a valid IP prefix"},

		// Peers.
		{"overlap across peers", head + peers("[10.99.0.6/32]", "[10.99.0.4/30]"), ErrOverlap, "clients.peers[1].allowed_ips[0]", 11,
			`10.99.0.4/30 of peer "p1" overlaps 10.99.0.6/32 of peer "p0" at clients.peers[0].allowed_ips[0] on line 8`},
		{"overlap within peer", head + peers("[10.99.2.0/24, 10.99.2.128/25]"), ErrOverlap, "clients.peers[0].allowed_ips[1]", 8, `of peer "p0" overlaps 10.99.2.0/24 of peer "p0"`},
		{"same allowed IP", head + peers("[10.99.0.2/32]", "[10.99.0.3/32]", "[10.99.0.2/32]"), ErrOverlap, "clients.peers[2].allowed_ips[0]", 14, `peer "p0"`},
		{"allowed contains gateway", head + peers("[10.99.0.0/16]"), ErrOverlap, "clients.peers[0].allowed_ips[0]", 8, "contains the gateway's own address 10.99.0.1"},
		{"duplicate public key", head + "  peers:\n    - {name: a, public_key: PUB1, allowed_ips: [10.99.0.2/32]}\n    - {name: b, public_key: PUB1, allowed_ips: [10.99.0.3/32]}\n",
			ErrDuplicate, "clients.peers[1].public_key", 7, "also used at clients.peers[0].public_key on line 6"},
		{"duplicate name", head + "  peers:\n    - {name: a, public_key: PUB1, allowed_ips: [10.99.0.2/32]}\n    - {name: a, public_key: PUB2, allowed_ips: [10.99.0.3/32]}\n",
			ErrDuplicate, "clients.peers[1].name", 7, `peer name "a" is also used at clients.peers[0].name`},
		{"own public key", head + "  peers:\n    - {name: a, public_key: OWNPUB, allowed_ips: [10.99.0.2/32]}\n", ErrInvalidValue, "clients.peers[0].public_key", 6, "gateway's own public key"},
		{"peer name missing", head + "  peers:\n    - public_key: PUB1\n      allowed_ips: [10.99.0.2/32]\n", ErrMissing, "clients.peers[0].name", 6, "required"},
		{"peer name bad", head + "  peers:\n    - name: al ice\n", ErrInvalidValue, "clients.peers[0].name", 6, `"al ice" is not a valid name: use 1 to 64 of A-Z a-z 0-9 . _ @ + -`},
		{"peer name too long", head + "  peers:\n    - name: " + strings.Repeat("a", 65) + "\n", ErrInvalidValue, "clients.peers[0].name", 6, "1 to 64"},
		{"public key missing", head + "  peers:\n    - name: a\n      allowed_ips: [10.99.0.2/32]\n", ErrMissing, "clients.peers[0].public_key", 6, "required"},
		{"allowed_ips missing", head + "  peers:\n    - name: a\n      public_key: PUB1\n", ErrMissing, "clients.peers[0].allowed_ips", 6, "required"},
		{"allowed_ips empty", head + "  peers:\n    - name: a\n      public_key: PUB1\n      allowed_ips: []\n", ErrMissing, "clients.peers[0].allowed_ips", 8, "required"},

		// Other values.
		{"mtu small", head + "  mtu: 1279\n", ErrInvalidValue, "clients.mtu", 5, "1279 is out of range 1280..9000"},
		{"mtu big", head + "  mtu: 9001\n", ErrInvalidValue, "clients.mtu", 5, "out of range"},
		{"egress duplicate", head + "egress:\n  prefixes:\n    - 10.1.0.0/16\n    - 10.1.0.0/16\n", ErrDuplicate, "egress.prefixes[1]", 8, "also listed at egress.prefixes[0] on line 7"},
		{"egress overlap", head + "egress:\n  prefixes: [10.0.0.0/8, 192.168.0.0/16, 10.1.0.0/16]\n", ErrOverlap, "egress.prefixes[2]", 6, "10.1.0.0/16 overlaps 10.0.0.0/8 at egress.prefixes[0]"},
		{"mode", head + "egress:\n  mode: kernel\n", ErrInvalidValue, "egress.mode", 6, `"kernel" is not one of tun, netstack`},
		{"tun_name long", head + "egress:\n  tun_name: abcdefghijklmnop\n", ErrInvalidValue, "egress.tun_name", 6, "not a valid interface name"},
		{"tun_name slash", head + "egress:\n  tun_name: a/b\n", ErrInvalidValue, "egress.tun_name", 6, "interface name"},
		{"tun_name dotdot", head + "egress:\n  tun_name: '..'\n", ErrInvalidValue, "egress.tun_name", 6, "interface name"},
		{"tun_name space", head + "egress:\n  tun_name: 'a b'\n", ErrInvalidValue, "egress.tun_name", 6, "interface name"},
		{"tun_name empty", head + "egress:\n  tun_name: ''\n", ErrInvalidValue, "egress.tun_name", 6, "interface name"},
		{"queues big", head + "egress:\n  queues: 257\n", ErrInvalidValue, "egress.queues", 6, "257 is out of range 0..256"},
		{"queues negative", head + "egress:\n  queues: -1\n", ErrInvalidValue, "egress.queues", 6, "out of range"},
		{"log level", head + "log:\n  level: verbose\n", ErrInvalidValue, "log.level", 6, `"verbose" is not one of debug, info, warn, error`},
		{"log format", head + "log:\n  format: xml\n", ErrInvalidValue, "log.format", 6, `"xml" is not one of text, json`},
		{"node name bad", "node:\n  name: gw/1\n" + tail, ErrInvalidValue, "node.name", 2, "not a valid name: use 1 to 63 of A-Z a-z 0-9 . _ -"},
		{"node name long", "node:\n  name: " + strings.Repeat("n", 64) + "\n" + tail, ErrInvalidValue, "node.name", 2, "1 to 63"},
		{"node name empty", "node:\n  name: ''\n" + tail, ErrMissing, "node.name", 2, "defaults to the host name"},
		{"region bad", "node:\n  name: gw\n  region: us east\n" + tail, ErrInvalidValue, "node.region", 3, `"us east"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(fill(tc.yaml)), dir)
			if err == nil {
				t.Fatalf("no error for\n%s", tc.yaml)
			}
			msg := err.Error()
			if !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %v", msg, tc.want)
			}
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q is not a *FieldError", msg)
			}
			if fe.Path != tc.path || fe.Line != tc.line {
				t.Errorf("error %q at %q line %d, want %q line %d", msg, fe.Path, fe.Line, tc.path, tc.line)
			}
			if !strings.HasPrefix(msg, "config: ") {
				t.Errorf("error %q does not start with config: ", msg)
			}
			if tc.path != "" && !strings.Contains(msg, tc.path+": ") {
				t.Errorf("error %q does not name %s", msg, tc.path)
			}
			if tc.line > 0 && !strings.Contains(msg, fmt.Sprintf("(line %d)", tc.line)) {
				t.Errorf("error %q does not give line %d", msg, tc.line)
			}
			if !strings.Contains(msg, tc.text) {
				t.Errorf("error %q does not contain %q", msg, tc.text)
			}
			if strings.ContainsAny(msg, "\r\n") {
				t.Errorf("error %q spans lines", msg)
			}
			for _, k := range testKeys {
				if strings.Contains(msg, k.String()) {
					t.Errorf("error %q shows a key", msg)
				}
			}
		})
	}
}

func TestFieldErrorOneLine(t *testing.T) {
	e := &FieldError{Path: "a.b", Line: 3, Err: errors.New("x\ny"), Hint: "h"}
	if got, want := e.Error(), `a.b: x\ny (line 3); h`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
