package device

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
)

// relayRecord is one call of a RelayFunc, with a copy of the datagram.
type relayRecord struct {
	from     netip.Addr
	kind     RelayKind
	endpoint netip.AddrPort
	datagram []byte
}

// relayOnce sends one relayed datagram from a to b as the devices would
// (a's reader, then b's Write) and returns what b's handler received.
func relayOnce(t *testing.T, a, b *BackbonePort, got *[]relayRecord, via netip.Addr, kind RelayKind, ep netip.AddrPort, dgram []byte) {
	t.Helper()
	before := a.Stats().RelayedOut
	if err := a.SendRelay(via, kind, ep, dgram); err != nil {
		t.Fatal(err)
	}
	if a.Stats().RelayedOut == before {
		return // refused, nothing to read
	}
	outer := readPort(t, a, 1)[0]
	if _, err := b.Write([][]byte{outer}, bbHeadroom); err != nil {
		t.Fatal(err)
	}
}

func newRelayPair(t *testing.T) (a, b *BackbonePort, got *[]relayRecord) {
	got = new([]relayRecord)
	a = NewBackbonePort("a", 1440, bbA, func([][]byte, int) { t.Error("a forwarded a packet") })
	b = NewBackbonePort("b", 1440, bbB, func([][]byte, int) { t.Error("a relayed datagram was forwarded as a packet") })
	b.SetRelayHandler(func(from netip.Addr, kind RelayKind, ep netip.AddrPort, d []byte) {
		*got = append(*got, relayRecord{from, kind, ep, append([]byte(nil), d...)})
	})
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b, got
}

// TestRelayRoundTrip: a relayed transport datagram crosses from one
// BackbonePort to another with its kind, endpoint (IPv4 and IPv6) and
// bytes intact, the sender's backbone address as its source, and never
// reaches the forward function.
func TestRelayRoundTrip(t *testing.T) {
	a, b, got := newRelayPair(t)
	d := msg(4, 96)
	binary.LittleEndian.PutUint32(d[4:8], 0xdeadbeef)
	eps := []netip.AddrPort{netip.MustParseAddrPort("198.51.100.7:51820"), netip.MustParseAddrPort("[2001:db8::1]:4500")}
	for i, ep := range eps {
		kind := RelayToOwner
		if i == 1 {
			kind = RelayToClient
		}
		relayOnce(t, a, b, got, bbB, kind, ep, d)
	}
	if len(*got) != 2 {
		t.Fatalf("handler called %d times, want 2", len(*got))
	}
	for i, r := range *got {
		want := RelayToOwner
		if i == 1 {
			want = RelayToClient
		}
		if r.from != bbA || r.kind != want || r.endpoint != eps[i] || !bytes.Equal(r.datagram, d) {
			t.Errorf("relayed %d: got %+v", i, r)
		}
	}
	if st := b.Stats(); st.RelayedIn != 2 || st.BadRelay != 0 || st.Decapsulated != 0 {
		t.Errorf("b's stats %+v", st)
	}
	if st := a.Stats(); st.RelayedOut != 2 {
		t.Errorf("a's stats %+v", st)
	}
}

// TestRelaySendRefuses: SendRelay sends nothing for a datagram that is no
// transport message, too big, a bad kind or endpoint, or a via that is not
// another gateway's (own address: no relaying to self).
func TestRelaySendRefuses(t *testing.T) {
	a, b, got := newRelayPair(t)
	ep := netip.MustParseAddrPort("198.51.100.7:51820")
	cases := []struct {
		name  string
		via   netip.Addr
		kind  RelayKind
		ep    netip.AddrPort
		dgram []byte
	}{
		{"initiation", bbB, RelayToOwner, ep, msg(1, 148)},
		{"short transport", bbB, RelayToOwner, ep, msg(4, 31)},
		{"too big", bbB, RelayToOwner, ep, msg(4, MaxRelayed+16)},
		{"junk", bbB, RelayToOwner, ep, []byte("hello there, this is no wireguard")},
		{"kind 0", bbB, 0, ep, msg(4, 64)},
		{"kind 3", bbB, 3, ep, msg(4, 64)},
		{"no endpoint", bbB, RelayToOwner, netip.AddrPort{}, msg(4, 64)},
		{"port 0", bbB, RelayToOwner, netip.AddrPortFrom(ep.Addr(), 0), msg(4, 64)},
		{"to self", bbA, RelayToOwner, ep, msg(4, 64)},
		{"no via", netip.Addr{}, RelayToOwner, ep, msg(4, 64)},
		{"IPv6 via", netip.MustParseAddr("fd00::1"), RelayToOwner, ep, msg(4, 64)},
	}
	for _, c := range cases {
		relayOnce(t, a, b, got, c.via, c.kind, c.ep, c.dgram)
		if len(*got) != 0 {
			t.Fatalf("%s: relayed %+v", c.name, *got)
		}
	}
	if st := a.Stats(); st.RelayedOut != 0 || st.BadRelay+st.BadVia != uint64(len(cases)) {
		t.Fatalf("a's stats %+v, want %d refused", st, len(cases))
	}
}

// TestRelayReceiveChecks: a received relay packet with a bad kind,
// endpoint, truncated header, or a datagram that is no transport message,
// or with no handler installed, reaches no handler and is counted.
func TestRelayReceiveChecks(t *testing.T) {
	_, b, got := newRelayPair(t)
	good := func() []byte {
		r := make([]byte, relayHeaderLen, relayHeaderLen+64)
		r[0] = byte(RelayToOwner)
		a := netip.MustParseAddr("198.51.100.7").As16()
		copy(r[1:17], a[:])
		binary.BigEndian.PutUint16(r[17:19], 51820)
		return append(r, msg(4, 64)...)
	}
	outer := func(r []byte) []byte {
		p := make([]byte, bbHeadroom+ipipHeaderLen+len(r))
		src := NewBackbonePort("src", 1440, bbA, nil)
		defer src.Close()
		src.putHeaderProto(p[bbHeadroom:bbHeadroom+ipipHeaderLen], ipipHeaderLen+len(r), bbB.As4(), relayProto)
		copy(p[bbHeadroom+ipipHeaderLen:], r)
		return p
	}
	bad := map[string]func([]byte) []byte{
		"kind 0":      func(r []byte) []byte { r[0] = 0; return r },
		"kind 9":      func(r []byte) []byte { r[0] = 9; return r },
		"port 0":      func(r []byte) []byte { r[17], r[18] = 0, 0; return r },
		"unspecified": func(r []byte) []byte { clear(r[1:17]); return r },
		"short":       func(r []byte) []byte { return r[:relayHeaderLen-1] },
		"no datagram": func(r []byte) []byte { return r[:relayHeaderLen] },
		"initiation": func(r []byte) []byte {
			return append(r[:relayHeaderLen], msg(1, 148)...)
		},
	}
	for name, mod := range bad {
		if _, err := b.Write([][]byte{outer(mod(good()))}, bbHeadroom); err != nil {
			t.Fatal(err)
		}
		if len(*got) != 0 {
			t.Fatalf("%s: handled %+v", name, *got)
		}
	}
	b.Write([][]byte{outer(good())}, bbHeadroom)
	if len(*got) != 1 {
		t.Fatalf("a good relay packet was not handled")
	}
	b.SetRelayHandler(nil)
	b.Write([][]byte{outer(good())}, bbHeadroom)
	if st := b.Stats(); st.BadRelay != uint64(len(bad))+1 || st.RelayedIn != 1 {
		t.Fatalf("stats %+v, want %d bad relays", st, len(bad)+1)
	}
}

// TestBindInject: an injected transport datagram reaches the device's
// extra receive function with its endpoint, without the relay hook seeing
// it (an injected datagram is never relayed again); other kinds are
// refused; a full queue drops and counts.
func TestBindInject(t *testing.T) {
	b := NewClassifyingBind(bindtest.NewChannelBinds()[0])
	fns, _, err := b.Open(0)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	extra := fns[len(fns)-1]
	relayed := 0
	b.SetRelayHook(func([]byte, conn.Endpoint) { relayed++ })
	ep := bindtest.ChannelEndpoint(7)
	d := msg(4, 80)
	if !b.Inject(d, ep) {
		t.Fatal("Inject refused a transport message")
	}
	if b.Inject(msg(1, 148), ep) || b.Inject(msg(4, 20), ep) {
		t.Fatal("Inject took a non-transport datagram")
	}
	packets := [][]byte{make([]byte, 65535), make([]byte, 65535)}
	sizes := make([]int, 2)
	eps := make([]conn.Endpoint, 2)
	n, err := extra(packets, sizes, eps)
	if err != nil || n != 1 || !bytes.Equal(packets[0][:sizes[0]], d) || eps[0] != ep {
		t.Fatalf("received %d %v: %v %v", n, err, sizes, eps)
	}
	if relayed != 0 {
		t.Fatal("the relay hook saw an injected datagram")
	}
	for range injectQueue {
		b.Inject(d, ep)
	}
	if b.Inject(d, ep) {
		t.Fatal("Inject took more than its queue")
	}
	if st := b.Stats(); st.InjectDrops != 3 {
		t.Fatalf("inject drops %d, want 3", st.InjectDrops)
	}
	// Read in batches of two until the queue is empty again.
	for got := 0; got < injectQueue; {
		n, _ := extra(packets, sizes, eps)
		got += n
	}
	if n := testing.AllocsPerRun(100, func() {
		b.Inject(d, ep)
		extra(packets, sizes, eps)
	}); n != 0 && !raceBuild() {
		t.Fatalf("Inject and receive: %v allocs", n)
	}
}

// sendRecorder is a conn.Bind that records what it sends, in order.
type sendRecorder struct {
	conn.Bind
	sent [][]byte
}

func (s *sendRecorder) Send(bufs [][]byte, _ conn.Endpoint) error {
	s.sent = append(s.sent, bufs...)
	return nil
}

// TestBindDivert: transport messages the divert hook takes are not sent;
// the others are, in order; the sent-transport hook still sees them all;
// with a hook that takes nothing, Send allocates nothing.
func TestBindDivert(t *testing.T) {
	rec := &sendRecorder{}
	b := NewClassifyingBind(rec)
	ep := bindtest.ChannelEndpoint(3)
	withIndex := func(p []byte, i uint32) []byte { binary.LittleEndian.PutUint32(p[4:8], i); return p }
	out := [][]byte{withIndex(msg(4, 48), 1), withIndex(msg(4, 48), 2), msg(2, 92), withIndex(msg(4, 48), 3), withIndex(msg(4, 48), 4)}
	var seen []uint32
	b.SetSentTransportHook(func(r uint32, _ conn.Endpoint) { seen = append(seen, r) })
	var taken []uint32
	b.SetDivertHook(func(m []byte, to conn.Endpoint) bool {
		i := binary.LittleEndian.Uint32(m[4:8])
		if i == 2 || i == 4 {
			taken = append(taken, i)
			return true
		}
		return false
	})
	if err := b.Send(out, ep); err != nil {
		t.Fatal(err)
	}
	var sent []uint32
	for _, p := range rec.sent {
		sent = append(sent, binary.LittleEndian.Uint32(p[4:8]))
	}
	if len(taken) != 2 || len(seen) != 4 || len(sent) != 3 || sent[0] != 1 || rec.sent[1][0] != 2 || sent[2] != 3 {
		t.Fatalf("taken %v, seen %v, sent %v", taken, seen, sent)
	}
	if st := b.Stats(); st.Diverted != 2 || st.SentResponses != 1 {
		t.Fatalf("stats %+v", st)
	}
	b.SetSentTransportHook(nil)
	b.SetDivertHook(func([]byte, conn.Endpoint) bool { return false })
	rec.sent = make([][]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { rec.sent = rec.sent[:0]; b.Send(out, ep) }); n != 0 {
		t.Fatalf("Send with a divert hook: %v allocs", n)
	}
}

// BenchmarkRelayRoundTrip measures one relayed datagram of 1,452 bytes
// from SendRelay to the handler on the other side; run with -benchmem (0
// allocs/op).
func BenchmarkRelayRoundTrip(b *testing.B) {
	x := newBBBench(1)
	defer x.close()
	x.b.SetRelayHandler(func(netip.Addr, RelayKind, netip.AddrPort, []byte) {})
	ep := netip.MustParseAddrPort("198.51.100.7:51820")
	d := msg(4, 1452)
	b.ReportAllocs()
	b.SetBytes(int64(len(d)))
	for b.Loop() {
		if err := x.a.SendRelay(bbB, RelayToOwner, ep, d); err != nil {
			b.Fatal(err)
		}
		n, err := x.a.Read(x.bufs, x.sizes, bbHeadroom)
		if err != nil || n != 1 {
			b.Fatal(n, err)
		}
		x.outers[0] = x.bufs[0][:bbHeadroom+x.sizes[0]]
		if _, err := x.b.Write(x.outers, bbHeadroom); err != nil {
			b.Fatal(err)
		}
	}
	if st := x.b.Stats(); st.RelayedIn == 0 {
		b.Fatalf("nothing relayed: %+v", st)
	}
}
