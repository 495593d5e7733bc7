package handshake

import (
	"bytes"
	"crypto/hmac"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/blake2s"
	"golang.org/x/crypto/chacha20poly1305"
	"golang.org/x/crypto/curve25519"
	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/tuntest"

	"github.com/anyguard/anyguard/wgkey"
)

// Other WireGuard message types and sizes, for the tests of refusals.
const (
	msgResponse  = 2
	msgTransport = 4
	sizeResponse = 92
)

// typedMsg is a zeroed message of size bytes with the given type.
func typedMsg(typ uint32, size int) []byte {
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, typ)
	return b
}

// Fixed test keys. The seed testdata/fuzz/FuzzInitiationStatic/wireguard-go
// is an initiation that wireguard-go sent from fuzzInitiatorKey to
// fuzzResponderKey (captured by captureInitiation).
var (
	fuzzResponderKey = hsMustKey("QDtYUtj8ugEkAuumfCfDW33kEJLFGK7tUEwJLq2VT0c=")
	fuzzInitiatorKey = hsMustKey("SKSBxc9enKAUPfKFN6SCTGjLYSOStLUt0cZtHC5KHGM=")
)

const hsSeedPath = "testdata/fuzz/FuzzInitiationStatic/wireguard-go"

func hsMustKey(s string) wgkey.Key {
	k, err := wgkey.Parse(s)
	if err != nil {
		panic(err)
	}
	return k
}

func hsNewKey(t testing.TB) wgkey.Key {
	t.Helper()
	k, err := wgkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// captureBind wraps a conn.Bind and copies every handshake initiation it
// receives to got (dropping them if nobody reads).
type captureBind struct {
	conn.Bind
	got chan []byte
}

func (b *captureBind) Open(port uint16) ([]conn.ReceiveFunc, uint16, error) {
	fns, actual, err := b.Bind.Open(port)
	if err != nil {
		return nil, 0, err
	}
	for i, fn := range fns {
		fns[i] = func(packets [][]byte, sizes []int, eps []conn.Endpoint) (int, error) {
			n, err := fn(packets, sizes, eps)
			for j := range n {
				if p := packets[j][:sizes[j]]; IsInitiation(p) {
					select {
					case b.got <- slices.Clone(p):
					default:
					}
				}
			}
			return n, err
		}
	}
	return fns, actual, nil
}

// captureInitiation runs two real wireguard-go devices over in-memory binds
// and TUNs, makes the initiator send a packet, and returns the first
// handshake initiation the responder received. It waits until the packet
// came through, so wireguard-go accepted that handshake.
func captureInitiation(t testing.TB, initiator, responder, psk wgkey.Key) []byte {
	t.Helper()
	binds := bindtest.NewChannelBinds()
	capture := &captureBind{Bind: binds[1], got: make(chan []byte, 16)}
	logger := &wgdevice.Logger{Verbosef: wgdevice.DiscardLogf, Errorf: wgdevice.DiscardLogf}
	tuns := [2]*tuntest.ChannelTUN{tuntest.NewChannelTUN(), tuntest.NewChannelTUN()}
	ips := [2]netip.Addr{netip.MustParseAddr("10.9.0.1"), netip.MustParseAddr("10.9.0.2")}
	cfgs := [2]string{
		// The initiator sends to the responder's channel endpoint, which
		// bindtest numbers 1 for the first bind's IPv4 peer.
		hsUAPI("private_key", initiator.Hex(), "public_key", responder.Public().Hex(),
			"preshared_key", psk.Hex(), "endpoint", "127.0.0.1:1", "allowed_ip", ips[1].String()+"/32"),
		hsUAPI("private_key", responder.Hex(), "public_key", initiator.Public().Hex(),
			"preshared_key", psk.Hex(), "allowed_ip", ips[0].String()+"/32"),
	}
	devBinds := [2]conn.Bind{binds[0], capture}
	for i := range 2 {
		dev := wgdevice.NewDevice(tuns[i].TUN(), devBinds[i], logger)
		t.Cleanup(dev.Close)
		if err := dev.IpcSet(cfgs[i]); err != nil {
			t.Fatalf("configure device %d: %v", i, err)
		}
		if err := dev.Up(); err != nil {
			t.Fatalf("bring up device %d: %v", i, err)
		}
	}

	ping := tuntest.Ping(ips[1], ips[0])
	timeout := time.After(10 * time.Second)
	select {
	case tuns[0].Outbound <- ping:
	case <-timeout:
		t.Fatal("initiator did not read the packet")
	}
	var msg []byte
	select {
	case msg = <-capture.got:
	case <-timeout:
		t.Fatal("no handshake initiation captured")
	}
	select {
	case got := <-tuns[1].Inbound:
		if !bytes.Equal(got, ping) {
			t.Fatal("packet through the tunnel changed")
		}
	case <-timeout:
		t.Fatal("packet did not come through: wireguard-go did not complete the handshake")
	}
	return msg
}

func hsUAPI(kv ...string) string {
	var b strings.Builder
	for i := 0; i < len(kv); i += 2 {
		fmt.Fprintf(&b, "%s=%s\n", kv[i], kv[i+1])
	}
	return b.String()
}

func TestInitiationStaticWireGuard(t *testing.T) {
	for _, withPSK := range []bool{false, true} {
		t.Run(fmt.Sprintf("psk=%v", withPSK), func(t *testing.T) {
			initiator, responder := hsNewKey(t), hsNewKey(t)
			var psk wgkey.Key
			if withPSK {
				psk = hsNewKey(t)
			}
			msg := captureInitiation(t, initiator, responder, psk)
			r := NewInitiationReader(responder)
			if r.PublicKey() != responder.Public() {
				t.Fatal("PublicKey is not the responder's")
			}

			if !r.CheckMAC1(msg) {
				t.Fatal("CheckMAC1 refuses wireguard-go's initiation")
			}
			bad := slices.Clone(msg)
			bad[initOffMAC1] ^= 1
			if r.CheckMAC1(bad) || r.CheckMAC1(msg[:len(msg)-1]) || NewInitiationReader(initiator).CheckMAC1(msg) {
				t.Fatal("CheckMAC1 accepts a bad mac1, a short message or another key's initiation")
			}

			got, err := r.Static(msg)
			if err != nil || got != initiator.Public() {
				t.Fatalf("Static = %v, %v; want the initiator's key", got, err)
			}

			var in Initiation
			if err := r.Read(msg, &in); err != nil || in.Static != initiator.Public() {
				t.Fatalf("Read: %v, static %v", err, in.Static)
			}
			if in.Sender != binary.LittleEndian.Uint32(msg[4:]) {
				t.Errorf("Sender = %#x", in.Sender)
			}
			ss, err := r.SharedSecret(in.Static)
			if err != nil {
				t.Fatal(err)
			}
			ts, err := in.Authenticate(&ss)
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if d := time.Since(ts.Time()); d < -time.Minute || d > time.Minute {
				t.Errorf("timestamp %v is not about now", ts.Time())
			}
			other, _ := r.SharedSecret(hsNewKey(t).Public())
			if _, err := in.Authenticate(&other); !errors.Is(err, ErrNotAuthentic) {
				t.Errorf("Authenticate with another client's secret: %v, want ErrNotAuthentic", err)
			}

			if _, err := NewInitiationReader(hsNewKey(t)).Static(msg); !errors.Is(err, ErrBadMAC1) {
				t.Errorf("another responder: %v, want ErrBadMAC1", err)
			}
			checkTampering(t, r, msg, &ss)
		})
	}
}

// checkTampering alters a valid initiation msg for r in every field.
func checkTampering(t *testing.T, r *InitiationReader, msg []byte, ss *[32]byte) {
	t.Helper()
	flip := func(off int, fixMAC bool) []byte {
		m := slices.Clone(msg)
		m[off] ^= 0x40
		if fixMAC {
			hsSetMAC1(m, r.PublicKey())
		}
		return m
	}
	for _, tc := range []struct {
		name   string
		msg    []byte
		want   error
		authOK bool // if Static succeeds, whether Authenticate does
	}{
		{"flipped static", flip(initOffStatic+5, false), ErrBadMAC1, false},
		{"flipped static tag", flip(initOffTimestamp-1, false), ErrBadMAC1, false},
		{"flipped ephemeral", flip(initOffEphemeral, false), ErrBadMAC1, false},
		{"flipped sender", flip(initOffSender, false), ErrBadMAC1, false},
		{"flipped mac1", flip(initOffMAC1+3, false), ErrBadMAC1, false},
		{"flipped static, mac1 redone", flip(initOffStatic+5, true), ErrDecrypt, false},
		{"flipped ephemeral, mac1 redone", flip(initOffEphemeral+31, true), ErrDecrypt, false},
		{"flipped timestamp, mac1 redone", flip(initOffTimestamp+2, true), nil, false},
		{"flipped sender, mac1 redone", flip(initOffSender, true), nil, true},
		{"flipped mac2", flip(initOffMAC2, false), nil, true},
	} {
		var in Initiation
		err := r.Read(tc.msg, &in)
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: Read: %v, want %v", tc.name, err, tc.want)
			continue
		}
		if err != nil {
			if in.Static != (wgkey.Key{}) {
				t.Errorf("%s: a key came back with the error", tc.name)
			}
			continue
		}
		if _, err := in.Authenticate(ss); (err == nil) != tc.authOK {
			t.Errorf("%s: Authenticate: %v", tc.name, err)
		}
	}
}

// hsSetMAC1 recomputes the mac1 of an initiation for the responder pub, with
// x/crypto's keyed BLAKE2s.
func hsSetMAC1(msg []byte, pub wgkey.Key) {
	key := blake2s.Sum256(append([]byte("mac1----"), pub[:]...))
	h, _ := blake2s.New128(key[:])
	h.Write(msg[:initOffMAC1])
	h.Sum(msg[initOffMAC1:initOffMAC1])
}

func hsValidMAC1(msg []byte, pub wgkey.Key) bool {
	m := slices.Clone(msg)
	hsSetMAC1(m, pub)
	return bytes.Equal(m, msg)
}

// sealInitiation builds an initiation from the WireGuard paper (section
// 5.4.2) with x/crypto's X25519 and crypto/hmac, independently of the code
// under test. It names static as the initiator's key but proves it with
// initiatorPriv, so static != initiatorPriv.Public() forges a claim.
func sealInitiation(t testing.TB, initiatorPriv, static, ephemeralPriv, responderPub wgkey.Key, ts Timestamp, sender uint32) []byte {
	t.Helper()
	newHash := func() hash.Hash { h, _ := blake2s.New256(nil); return h }
	hashOf := func(parts ...[]byte) []byte {
		h := newHash()
		for _, p := range parts {
			h.Write(p)
		}
		return h.Sum(nil)
	}
	mac := func(key, data []byte) []byte {
		m := hmac.New(newHash, key)
		m.Write(data)
		return m.Sum(nil)
	}
	kdf2 := func(ck, input []byte) (t1, t2 []byte) {
		t0 := mac(ck, input)
		t1 = mac(t0, []byte{1})
		return t1, mac(t0, append(slices.Clone(t1), 2))
	}
	dh := func(priv, pub wgkey.Key) []byte {
		out, err := curve25519.X25519(priv[:], pub[:])
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	seal := func(key, plain, ad []byte) []byte {
		aead, err := chacha20poly1305.New(key)
		if err != nil {
			t.Fatal(err)
		}
		return aead.Seal(nil, make([]byte, chacha20poly1305.NonceSize), plain, ad)
	}

	ck := hashOf([]byte("Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"))
	h := hashOf(hashOf(ck, []byte("WireGuard v1 zx2c4 Jason@zx2c4.com")), responderPub[:])
	ephemeral := ephemeralPriv.Public()
	msg := make([]byte, 0, sizeInitiation)
	msg = binary.LittleEndian.AppendUint32(msg, msgInitiation)
	msg = binary.LittleEndian.AppendUint32(msg, sender)
	msg = append(msg, ephemeral[:]...)
	ck, _ = kdf2(ck, ephemeral[:])
	h = hashOf(h, ephemeral[:])
	ck, key := kdf2(ck, dh(ephemeralPriv, responderPub))
	encStatic := seal(key, static[:], h)
	msg = append(msg, encStatic...)
	h = hashOf(h, encStatic)
	_, key = kdf2(ck, dh(initiatorPriv, responderPub))
	msg = append(msg, seal(key, ts[:], h)...)
	msg = append(msg, make([]byte, 32)...) // mac1, mac2
	hsSetMAC1(msg, responderPub)
	return msg
}

func hsStamp(t time.Time) Timestamp {
	var ts Timestamp
	binary.BigEndian.PutUint64(ts[:], tai64nBase+uint64(t.Unix()))
	binary.BigEndian.PutUint32(ts[8:], uint32(t.Nanosecond()))
	return ts
}

func TestInitiationStaticSpec(t *testing.T) {
	for i := range 20 {
		initiator, ephemeral, responder := hsNewKey(t), hsNewKey(t), hsNewKey(t)
		now := time.Now()
		msg := sealInitiation(t, initiator, initiator.Public(), ephemeral, responder.Public(), hsStamp(now), uint32(i))
		r := NewInitiationReader(responder)
		var in Initiation
		if err := r.Read(msg, &in); err != nil || in.Static != initiator.Public() || in.Sender != uint32(i) {
			t.Fatalf("Read: %v, %+v", err, in)
		}
		ss, err := r.SharedSecret(in.Static)
		if err != nil {
			t.Fatal(err)
		}
		ts, err := in.Authenticate(&ss)
		if err != nil || !ts.Time().Equal(now) {
			t.Fatalf("Authenticate = %v, %v", ts.Time(), err)
		}
		if ts.After(hsStamp(now)) || !ts.After(hsStamp(now.Add(-time.Millisecond))) {
			t.Error("After does not order timestamps")
		}
	}
}

// TestInitiationForgedStatic shows why Static alone is not proof of
// identity: anyone who knows the responder's public key can name any client.
func TestInitiationForgedStatic(t *testing.T) {
	attacker, victim, ephemeral, responder := hsNewKey(t), hsNewKey(t), hsNewKey(t), hsNewKey(t)
	msg := sealInitiation(t, attacker, victim.Public(), ephemeral, responder.Public(), hsStamp(time.Now()), 7)
	r := NewInitiationReader(responder)
	var in Initiation
	if err := r.Read(msg, &in); err != nil || in.Static != victim.Public() {
		t.Fatalf("Read: %v", err)
	}
	ss, _ := r.SharedSecret(victim.Public())
	if _, err := in.Authenticate(&ss); !errors.Is(err, ErrNotAuthentic) {
		t.Fatalf("forged claim: Authenticate = %v, want ErrNotAuthentic", err)
	}
}

func TestInitiationErrors(t *testing.T) {
	r := NewInitiationReader(fuzzResponderKey)
	valid := sealInitiation(t, fuzzInitiatorKey, fuzzInitiatorKey.Public(), hsNewKey(t), fuzzResponderKey.Public(), hsStamp(time.Now()), 1)
	retyped := func(typ uint32) []byte {
		m := slices.Clone(valid)
		binary.LittleEndian.PutUint32(m, typ)
		hsSetMAC1(m, r.PublicKey())
		return m
	}
	for name, msg := range map[string][]byte{
		"nil":           nil,
		"empty":         {},
		"3 bytes":       {1, 0, 0},
		"short":         valid[:sizeInitiation-1],
		"long":          append(slices.Clone(valid), 0),
		"response type": retyped(msgResponse),
		"reserved set":  retyped(msgInitiation | 1<<8),
		"response":      typedMsg(msgResponse, sizeResponse),
		"transport":     typedMsg(msgTransport, sizeInitiation),
	} {
		if k, err := r.Static(msg); !errors.Is(err, ErrNotInitiation) || k != (wgkey.Key{}) {
			t.Errorf("%s: Static = %v, %v; want ErrNotInitiation", name, k, err)
		}
	}

	// A low-order ephemeral key gives an all-zero DH; wireguard-go refuses it.
	for _, point := range lowOrderPoints(t) {
		m := slices.Clone(valid)
		copy(m[initOffEphemeral:], point[:])
		hsSetMAC1(m, r.PublicKey())
		if _, err := r.Static(m); !errors.Is(err, ErrDecrypt) {
			t.Errorf("low-order ephemeral %x: %v, want ErrDecrypt", point[:4], err)
		}
		if _, err := r.SharedSecret(point); !errors.Is(err, ErrLowOrder) {
			t.Errorf("SharedSecret(low-order %x): %v, want ErrLowOrder", point[:4], err)
		}
	}
	var in Initiation
	if _, err := in.Authenticate(new([32]byte)); !errors.Is(err, ErrNotAuthentic) {
		t.Errorf("zero secret: %v", err)
	}
	ss, _ := r.SharedSecret(fuzzInitiatorKey.Public())
	if _, err := in.Authenticate(&ss); !errors.Is(err, ErrNotAuthentic) {
		t.Errorf("zero Initiation: %v", err)
	}
}

// lowOrderPoints returns u-coordinates whose products with any clamped
// scalar are zero: 0, 1, the order-8 points and p-1, p, p+1, and the same
// with bit 255 set (which X25519 ignores).
func lowOrderPoints(t testing.TB) []wgkey.Key {
	var pts []wgkey.Key
	for _, h := range []string{
		"0000000000000000000000000000000000000000000000000000000000000000",
		"0100000000000000000000000000000000000000000000000000000000000000",
		"e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
		"5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
		"ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"edffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
		"eeffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",
	} {
		var k wgkey.Key
		if _, err := hex.Decode(k[:], []byte(h)); err != nil {
			t.Fatal(err)
		}
		pts = append(pts, k)
		k[31] |= 0x80
		pts = append(pts, k)
	}
	return pts
}

func TestFuzzSeedIsReal(t *testing.T) {
	msg := hsReadSeed(t, hsSeedPath)
	k, err := NewInitiationReader(fuzzResponderKey).Static(msg)
	if err != nil || k != fuzzInitiatorKey.Public() {
		t.Fatalf("seed: Static = %v, %v", k, err)
	}
}

// hsReadSeed reads a one-value []byte seed in `go test fuzz v1` format.
func hsReadSeed(t testing.TB, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) != 2 || lines[0] != "go test fuzz v1" {
		t.Fatalf("%s: not a go test fuzz v1 file", path)
	}
	lit, ok := strings.CutPrefix(lines[1], "[]byte(")
	lit, ok2 := strings.CutSuffix(lit, ")")
	s, err := strconv.Unquote(lit)
	if !ok || !ok2 || err != nil {
		t.Fatalf("%s: cannot parse %q", path, lines[1])
	}
	return []byte(s)
}

// hsWriteSeed writes msg as a `go test fuzz v1` seed; see TestWriteFuzzSeed.
func hsWriteSeed(path string, msg []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte("go test fuzz v1\n[]byte("+strconv.Quote(string(msg))+")\n"), 0o644)
}

// TestWriteFuzzSeed regenerates the checked-in seeds from real wireguard-go
// when ANYGUARD_WRITE_SEEDS=1.
func TestWriteFuzzSeed(t *testing.T) {
	if os.Getenv("ANYGUARD_WRITE_SEEDS") != "1" {
		t.Skip("set ANYGUARD_WRITE_SEEDS=1 to regenerate " + hsSeedPath)
	}
	msg := captureInitiation(t, fuzzInitiatorKey, fuzzResponderKey, wgkey.Key{})
	flipped := slices.Clone(msg)
	flipped[initOffStatic] ^= 1
	dir := filepath.Dir(hsSeedPath)
	for name, m := range map[string][]byte{
		filepath.Base(hsSeedPath): msg,
		"junk-truncated":          msg[:len(msg)-1],
		"junk-flipped-static":     flipped,
		"junk-response-type":      append([]byte{msgResponse}, msg[1:]...),
	} {
		if err := hsWriteSeed(filepath.Join(dir, name), m); err != nil {
			t.Fatal(err)
		}
	}
}

// FuzzInitiationStatic feeds arbitrary datagrams to Static. It must never
// panic, must refuse with one of its sentinel errors, and may only return a
// key for a message whose mac1 is right. Each input is tried a second time
// with its mac1 recomputed, to reach the curve and AEAD code behind it.
func FuzzInitiationStatic(f *testing.F) {
	r := NewInitiationReader(fuzzResponderKey)
	f.Add(typedMsg(msgInitiation, sizeInitiation))
	f.Add(typedMsg(msgResponse, sizeResponse))
	f.Add([]byte{1})
	f.Add(bytes.Repeat([]byte{0xff}, sizeInitiation))
	f.Fuzz(func(t *testing.T, m []byte) {
		if got, want := r.CheckMAC1(m), IsInitiation(m) && hsValidMAC1(m, r.PublicKey()); got != want {
			t.Fatalf("CheckMAC1 = %v, want %v", got, want)
		}
		k, err := r.Static(m)
		switch {
		case err == nil:
			if !hsValidMAC1(m, r.PublicKey()) {
				t.Fatal("key returned for a message with a bad mac1")
			}
		case errors.Is(err, ErrNotInitiation), errors.Is(err, ErrBadMAC1), errors.Is(err, ErrDecrypt):
			if k != (wgkey.Key{}) {
				t.Fatalf("key returned with %v", err)
			}
		default:
			t.Fatalf("unexpected error %v", err)
		}
		if !IsInitiation(m) {
			return
		}
		m = slices.Clone(m)
		hsSetMAC1(m, r.PublicKey())
		var in Initiation
		switch err := r.Read(m, &in); {
		case err == nil:
			ss, err := r.SharedSecret(in.Static)
			if err != nil {
				ss = [32]byte{}
			}
			if _, err := in.Authenticate(&ss); err != nil && !errors.Is(err, ErrNotAuthentic) {
				t.Fatalf("Authenticate: unexpected error %v", err)
			}
		case !errors.Is(err, ErrDecrypt):
			t.Fatalf("mac1 redone: %v, want nil or ErrDecrypt", err)
		}
	})
}

func TestInitiationNoAllocs(t *testing.T) {
	if handshakeRaceEnabled {
		t.Skip("the race detector's sync.Pool drops items at random")
	}
	r := NewInitiationReader(fuzzResponderKey)
	valid := hsReadSeed(t, hsSeedPath)
	bad := slices.Clone(valid)
	bad[initOffMAC1] ^= 1
	ss, _ := r.SharedSecret(fuzzInitiatorKey.Public())
	// The cheap reject allocates at most the pooled mac1 hash (when a GC
	// emptied the pool); paths with an X25519 allocate only what x/crypto's
	// curve25519 does (a handful of small objects).
	for name, tc := range map[string]struct {
		fn  func()
		max float64
	}{
		"bad mac1":     {func() { r.Static(bad) }, 1},
		"Authenticate": {func() { var in Initiation; r.Read(valid, &in); in.Authenticate(&ss) }, 16},
		"Static":       {func() { r.Static(valid) }, 16},
		"SharedSecret": {func() { r.SharedSecret(fuzzInitiatorKey) }, 16},
	} {
		if n := testing.AllocsPerRun(50, tc.fn); n > tc.max {
			t.Errorf("%s: %v allocations per call, want at most %v", name, n, tc.max)
		}
	}
}

func TestInitiationConcurrent(t *testing.T) {
	r := NewInitiationReader(fuzzResponderKey)
	valid := hsReadSeed(t, hsSeedPath)
	bad := slices.Clone(valid)
	bad[initOffStatic] ^= 1
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range 40 {
				m, want := valid, error(nil)
				if i%2 == 1 {
					m, want = bad, ErrBadMAC1
				}
				k, err := r.Static(m)
				if !errors.Is(err, want) || (err == nil && k != fuzzInitiatorKey.Public()) {
					t.Errorf("Static = %v, %v", k, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// BenchmarkInitiationStatic measures a valid initiation: mac1, one X25519,
// the KDF chain and one AEAD-open.
func BenchmarkInitiationStatic(b *testing.B) {
	r := NewInitiationReader(fuzzResponderKey)
	msg := hsReadSeed(b, hsSeedPath)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Static(msg); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkInitiationBadMAC1 measures the cheap reject: one keyed hash.
func BenchmarkInitiationBadMAC1(b *testing.B) {
	r := NewInitiationReader(hsNewKey(b))
	msg := hsReadSeed(b, hsSeedPath)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Static(msg); !errors.Is(err, ErrBadMAC1) {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkInitiationAuthenticate measures Read and Authenticate with the
// static-static secret already cached.
func BenchmarkInitiationAuthenticate(b *testing.B) {
	r := NewInitiationReader(fuzzResponderKey)
	ss, err := r.SharedSecret(fuzzInitiatorKey.Public())
	if err != nil {
		b.Fatal(err)
	}
	msg := hsReadSeed(b, hsSeedPath)
	b.ReportAllocs()
	var in Initiation
	for b.Loop() {
		if err := r.Read(msg, &in); err != nil {
			b.Fatal(err)
		}
		if _, err := in.Authenticate(&ss); err != nil {
			b.Fatal(err)
		}
	}
}
