package device

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn/bindtest"
	wgdevice "golang.zx2c4.com/wireguard/device"

	"github.com/anyguard/anyguard/internal/testwait"
	"github.com/anyguard/anyguard/router"
	"github.com/anyguard/anyguard/router/routertest"
	"github.com/anyguard/anyguard/wgkey"
)

var _ router.ViaPort = (*BackbonePort)(nil)

const bbHeadroom = 16 // what wireguard-go leaves before packets it reads and writes

var (
	bbA = netip.MustParseAddr("100.64.0.1")
	bbB = netip.MustParseAddr("100.64.0.2")
)

// bbRecorder is a ForwardFunc that records copies of the inner packets and
// the offset of each.
type bbRecorder struct {
	mu      sync.Mutex
	packets [][]byte
	offsets []int
	got     chan []byte // if set, also receives every packet
}

func (r *bbRecorder) forward(bufs [][]byte, offset int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, b := range bufs {
		p := append([]byte(nil), b[offset:]...)
		r.packets = append(r.packets, p)
		r.offsets = append(r.offsets, offset)
		if r.got != nil {
			r.got <- p
		}
	}
}

func (r *bbRecorder) snapshot() ([][]byte, []int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]byte(nil), r.packets...), append([]int(nil), r.offsets...)
}

// readPort reads want packets from p as wireguard-go would: with headroom,
// into buffers whose ends lie beyond the packets.
func readPort(t *testing.T, p *BackbonePort, want int) [][]byte {
	t.Helper()
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, bbHeadroom+65535)
	}
	sizes := make([]int, len(bufs))
	var got [][]byte
	for len(got) < want {
		n, err := p.Read(bufs, sizes, bbHeadroom)
		if err != nil {
			t.Fatalf("Read after %d packets: %v", len(got), err)
		}
		for i := range n {
			got = append(got, append(make([]byte, bbHeadroom), bufs[i][bbHeadroom:bbHeadroom+sizes[i]]...))
		}
	}
	return got
}

// TestBackboneRoundTrip encapsulates IPv4 and IPv6 packets on one port and
// decapsulates them on another: the inner bytes arrive unchanged, in order,
// and every outer header is well formed.
func TestBackboneRoundTrip(t *testing.T) {
	a := NewBackbonePort("a", 1440, bbA, func([][]byte, int) {})
	defer a.Close()
	rec := &bbRecorder{}
	b := NewBackbonePort("b", 1440, bbB, rec.forward)
	defer b.Close()

	var in [][]byte
	var vias []netip.Addr
	for i := range 300 { // more than a batch, so batches chain
		src, dst := netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.1.0.10")
		if i%3 == 1 {
			src, dst = netip.MustParseAddr("fd99::2"), netip.MustParseAddr("fd01::10")
		}
		in = append(in, routertest.Packet(bbHeadroom, src, dst, 64, bytes.Repeat([]byte{byte(i)}, i*5%1400)))
		vias = append(vias, bbB)
	}
	done := make(chan error)
	go func() { done <- a.DeliverVia(in, vias, bbHeadroom) }()
	outer := readPort(t, a, len(in))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i, o := range outer {
		h := o[bbHeadroom:]
		want := [20]byte{0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 4, 0, 0, 100, 64, 0, 1, 100, 64, 0, 2}
		binary.BigEndian.PutUint16(want[2:], uint16(len(h)))
		copy(want[10:12], h[10:12])
		if [20]byte(h[:20]) != want {
			t.Fatalf("packet %d: outer header % x, want % x", i, h[:20], want)
		}
		if routertest.Checksum(h[:20]) != 0 {
			t.Fatalf("packet %d: bad outer checksum % x", i, h[:20])
		}
	}
	if n, err := b.Write(outer, bbHeadroom); n != len(outer) || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	got, offsets := rec.snapshot()
	if len(got) != len(in) {
		t.Fatalf("forwarded %d packets, want %d", len(got), len(in))
	}
	for i := range in {
		if !bytes.Equal(got[i], in[i][bbHeadroom:]) {
			t.Fatalf("packet %d changed: len %d, want %d", i, len(got[i]), len(in[i])-bbHeadroom)
		}
		if offsets[i] != bbHeadroom+20 {
			t.Fatalf("packet %d forwarded at offset %d, want %d", i, offsets[i], bbHeadroom+20)
		}
	}
	if st := a.Stats(); st != (BackboneStats{Encapsulated: uint64(len(in))}) {
		t.Errorf("sender stats %+v", st)
	}
	if st := b.Stats(); st != (BackboneStats{Decapsulated: uint64(len(in))}) {
		t.Errorf("receiver stats %+v", st)
	}
}

// TestBackboneDeliverViaDrops: packets without a usable next hop, or too
// big for an outer header, are dropped and counted; the rest go out.
func TestBackboneDeliverViaDrops(t *testing.T) {
	p := NewBackbonePort("a", 1440, bbA, func([][]byte, int) {})
	defer p.Close()
	pkt := func() []byte {
		return routertest.Packet(bbHeadroom, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.1.0.10"), 64, []byte("x"))
	}
	huge := make([]byte, bbHeadroom+65535-19) // with the outer header, one byte past 65535
	bufs := [][]byte{pkt(), pkt(), pkt(), pkt(), pkt(), pkt(), pkt(), huge, pkt()}
	vias := []netip.Addr{
		{}, // no next hop
		netip.MustParseAddr("fd00::2"),
		bbA, // ourselves
		netip.MustParseAddr("0.0.0.0"),
		netip.MustParseAddr("224.0.0.1"),
		netip.MustParseAddr("::ffff:100.64.0.2"), // IPv4-mapped IPv6 is not an IPv4 address here
		bbB,
		bbB,
		netip.MustParseAddr("100.64.0.3"),
	}
	if err := p.DeliverVia(bufs, vias, bbHeadroom); err != nil {
		t.Fatal(err)
	}
	if err := p.Deliver([][]byte{pkt(), pkt()}, bbHeadroom); err != nil {
		t.Fatal(err)
	}
	got := readPort(t, p, 2)
	if d := got[0][bbHeadroom+16 : bbHeadroom+20]; !bytes.Equal(d, []byte{100, 64, 0, 2}) {
		t.Errorf("first packet to % x, want 100.64.0.2", d)
	}
	if d := got[1][bbHeadroom+16 : bbHeadroom+20]; !bytes.Equal(d, []byte{100, 64, 0, 3}) {
		t.Errorf("second packet to % x, want 100.64.0.3", d)
	}
	want := BackboneStats{Encapsulated: 2, NoVia: 3, BadVia: 5, Oversized: 1}
	if st := p.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
}

// outerPacket returns an encapsulated packet as a backbone peer would send
// it, with bbHeadroom bytes before it, for editing by the test.
func outerPacket(t *testing.T, inner []byte) []byte {
	t.Helper()
	p := NewBackbonePort("peer", 1440, bbA, func([][]byte, int) {})
	defer p.Close()
	if err := p.DeliverVia([][]byte{append(make([]byte, bbHeadroom), inner...)}, []netip.Addr{bbB}, bbHeadroom); err != nil {
		t.Fatal(err)
	}
	return readPort(t, p, 1)[0]
}

// TestBackboneWriteChecksOuterHeader feeds the receiving side packets with
// bad outer headers: each is dropped under its reason, and good packets
// (also ones with IP options, or padding after the packet) still arrive.
func TestBackboneWriteChecksOuterHeader(t *testing.T) {
	inner := routertest.Packet(0, netip.MustParseAddr("10.1.0.10"), netip.MustParseAddr("10.99.0.2"), 64, []byte("inner"))
	good := outerPacket(t, inner)
	edit := func(f func(h []byte) []byte) []byte {
		c := append([]byte(nil), good...)
		return append(c[:bbHeadroom], f(c[bbHeadroom:])...)
	}
	withOptions := edit(func(h []byte) []byte {
		o := append(append(append([]byte(nil), h[:20]...), 1, 1, 1, 0), h[20:]...) // 4 bytes of NOP/EOL options
		o[0] = 0x46
		binary.BigEndian.PutUint16(o[2:], uint16(len(o)))
		return o
	})
	tests := []struct {
		name string
		pkt  []byte
		want BackboneStats
	}{
		{"good", good, BackboneStats{Decapsulated: 1}},
		{"ip options", withOptions, BackboneStats{Decapsulated: 1}},
		{"padding after the packet", edit(func(h []byte) []byte { return append(h, 0, 0, 0) }), BackboneStats{Decapsulated: 1}},
		{"shorter than headroom", make([]byte, 3), BackboneStats{Truncated: 1}},
		{"shorter than a header", edit(func(h []byte) []byte { return h[:19] }), BackboneStats{Truncated: 1}},
		{"shorter than its length", edit(func(h []byte) []byte { return h[:len(h)-1] }), BackboneStats{Truncated: 1}},
		{"no inner packet", edit(func(h []byte) []byte { binary.BigEndian.PutUint16(h[2:], 20); return h }), BackboneStats{Truncated: 1}},
		{"length below header", edit(func(h []byte) []byte { binary.BigEndian.PutUint16(h[2:], 12); return h }), BackboneStats{Truncated: 1}},
		{"header beyond length", edit(func(h []byte) []byte { h[0] = 0x4f; return h }), BackboneStats{Truncated: 1}},
		{"ihl too small", edit(func(h []byte) []byte { h[0] = 0x44; return h }), BackboneStats{NotIPIP: 1}},
		{"ipv6 outer", edit(func(h []byte) []byte { h[0] = 0x65; return h }), BackboneStats{NotIPIP: 1}},
		{"udp, not ipip", edit(func(h []byte) []byte { h[9] = 17; return h }), BackboneStats{NotIPIP: 1}},
		{"ipv6 in ipv4 (41)", edit(func(h []byte) []byte { h[9] = 41; return h }), BackboneStats{NotIPIP: 1}},
		{"more fragments", edit(func(h []byte) []byte { h[6] |= 0x20; return h }), BackboneStats{NotIPIP: 1}},
		{"fragment offset", edit(func(h []byte) []byte { h[7] = 1; return h }), BackboneStats{NotIPIP: 1}},
		{"wrong destination", edit(func(h []byte) []byte { h[19] = 9; return h }), BackboneStats{WrongDestination: 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &bbRecorder{}
			p := NewBackbonePort("b", 1440, bbB, rec.forward)
			defer p.Close()
			if n, err := p.Write([][]byte{tc.pkt}, bbHeadroom); n != 1 || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
			if st := p.Stats(); st != tc.want {
				t.Fatalf("stats %+v, want %+v", st, tc.want)
			}
			got, _ := rec.snapshot()
			if tc.want.Decapsulated == 0 {
				if len(got) != 0 {
					t.Fatalf("dropped packet was forwarded: % x", got[0])
				}
				return
			}
			if len(got) != 1 || !bytes.Equal(got[0], inner) {
				t.Fatalf("forwarded %q, want the inner packet", got)
			}
		})
	}
}

// TestBackboneWriteMixedHeaders: packets whose outer headers differ in
// length reach forward in their original order, each at its own offset,
// and the drops among them do not disturb the rest.
func TestBackboneWriteMixedHeaders(t *testing.T) {
	var inners [][]byte
	var outers [][]byte
	for i := range 6 {
		inner := routertest.Packet(0, netip.MustParseAddr("10.1.0.10"), netip.MustParseAddr("10.99.0.2"), 64, []byte{byte(i)})
		inners = append(inners, inner)
		o := outerPacket(t, inner)
		if i == 2 || i == 3 {
			h := o[bbHeadroom:]
			o = append(append(append(o[:bbHeadroom:bbHeadroom], h[:20]...), 0, 0, 0, 0), h[20:]...)
			o[bbHeadroom] = 0x46
			binary.BigEndian.PutUint16(o[bbHeadroom+2:], uint16(len(o)-bbHeadroom))
		}
		outers = append(outers, o)
	}
	bad := append([]byte(nil), outers[0]...)
	bad[bbHeadroom+9] = 17
	batch := [][]byte{outers[0], outers[1], bad, outers[2], outers[3], outers[4], bad, outers[5]}
	rec := &bbRecorder{}
	p := NewBackbonePort("b", 1440, bbB, rec.forward)
	defer p.Close()
	if _, err := p.Write(batch, bbHeadroom); err != nil {
		t.Fatal(err)
	}
	got, offsets := rec.snapshot()
	if len(got) != len(inners) {
		t.Fatalf("forwarded %d, want %d", len(got), len(inners))
	}
	for i := range inners {
		want := bbHeadroom + 20
		if i == 2 || i == 3 {
			want += 4
		}
		if !bytes.Equal(got[i], inners[i]) || offsets[i] != want {
			t.Errorf("packet %d: offset %d (want %d), equal %v", i, offsets[i], want, bytes.Equal(got[i], inners[i]))
		}
	}
	if st := p.Stats(); st != (BackboneStats{Decapsulated: 6, NotIPIP: 2}) {
		t.Errorf("stats %+v", st)
	}
}

func TestBackboneClose(t *testing.T) {
	p := NewBackbonePort("b", 1440, bbB, func([][]byte, int) {})
	if mtu, err := p.MTU(); mtu != 1440 || err != nil {
		t.Fatalf("MTU = %d, %v", mtu, err)
	}
	if name, _ := p.Name(); name != "b" {
		t.Fatalf("Name = %q", name)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	pkt := routertest.Packet(bbHeadroom, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.1.0.10"), 64, nil)
	if err := p.DeliverVia([][]byte{pkt}, []netip.Addr{bbA}, bbHeadroom); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("DeliverVia after Close: %v", err)
	}
	if _, err := p.Write([][]byte{pkt}, bbHeadroom); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
	if _, err := p.Read(make([][]byte, 1), make([]int, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if _, ok := <-p.Events(); ok {
		t.Fatal("Events still open after Close")
	}
	if st := p.Stats(); st.Encapsulated != 0 {
		t.Fatalf("counted a packet lost to Close: %+v", st)
	}
}

// bbWireGuard is one gateway's backbone WireGuard device on a BackbonePort.
type bbWireGuard struct {
	port *BackbonePort
	dev  *wgdevice.Device
	rec  *bbRecorder
	key  wgkey.Key
}

// TestBackboneOverWireGuard joins two real wireguard-go devices over an
// in-memory bind, each on a BackbonePort and each peer allowed only the
// other's backbone /32: DeliverVia on one gateway arrives as the inner
// packet at the other's forward function, in both directions and for both
// IP versions, and nothing is left running after Close.
func TestBackboneOverWireGuard(t *testing.T) {
	before := runtime.NumGoroutine()
	binds := bindtest.NewChannelBinds()
	gws := [2]*bbWireGuard{}
	locals := [2]netip.Addr{bbA, bbB}
	for i := range gws {
		k, err := wgkey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		rec := &bbRecorder{got: make(chan []byte, 16)}
		port := NewBackbonePort(fmt.Sprintf("bb%d", i), 1440, locals[i], rec.forward)
		gws[i] = &bbWireGuard{port: port, rec: rec, key: k,
			dev: wgdevice.NewDevice(port, binds[i], wgdevice.NewLogger(wgdevice.LogLevelError, fmt.Sprintf("bb%d: ", i)))}
	}
	closeAll := func() {
		for _, g := range gws {
			g.dev.Close()
			<-g.dev.Wait()
		}
	}
	defer closeAll()
	for i, g := range gws {
		peer := gws[1-i]
		cfg := fmt.Sprintf("private_key=%s\nlisten_port=0\nreplace_peers=true\npublic_key=%s\nreplace_allowed_ips=true\nallowed_ip=%s\n",
			g.key.Hex(), peer.key.Public().Hex(), netip.PrefixFrom(locals[1-i], 32))
		if err := g.dev.IpcSet(cfg); err != nil {
			t.Fatal(err)
		}
		if err := g.dev.Up(); err != nil {
			t.Fatal(err)
		}
	}
	for i, g := range gws {
		// The in-memory bind reaches the other side at 127.0.0.1:<its port>.
		text, err := gws[1-i].dev.IpcGet()
		if err != nil {
			t.Fatal(err)
		}
		var port string
		for line := range strings.SplitSeq(text, "\n") {
			if v, ok := strings.CutPrefix(line, "listen_port="); ok {
				port = v
			}
		}
		if err := g.dev.IpcSet(fmt.Sprintf("public_key=%s\nendpoint=127.0.0.1:%s\n", gws[1-i].key.Public().Hex(), port)); err != nil {
			t.Fatal(err)
		}
	}

	send := func(from, to int, inner []byte) {
		t.Helper()
		buf := append(make([]byte, bbHeadroom), inner...)
		if err := gws[from].port.DeliverVia([][]byte{buf}, []netip.Addr{locals[to]}, bbHeadroom); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-gws[to].rec.got:
			if !bytes.Equal(got, inner) {
				t.Fatalf("gateway %d got % x, want % x", to, got, inner)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("packet from gateway %d never reached gateway %d (stats %+v, %+v)", from, to, gws[from].port.Stats(), gws[to].port.Stats())
		}
	}
	send(0, 1, routertest.Packet(0, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.2.0.10"), 63, []byte("from a client on A")))
	send(1, 0, routertest.Packet(0, netip.MustParseAddr("10.2.0.10"), netip.MustParseAddr("10.99.0.2"), 63, []byte("reply from B's region")))
	send(0, 1, routertest.Packet(0, netip.MustParseAddr("fd99::2"), netip.MustParseAddr("fd02::10"), 63, bytes.Repeat([]byte{6}, 1300)))
	closeAll()
	// Counted after forward returns, so only now final.
	for i, g := range gws {
		if st := g.port.Stats(); st.Decapsulated == 0 || st.NotIPIP+st.WrongDestination+st.Truncated+st.BadVia+st.NoVia+st.Oversized != 0 {
			t.Errorf("gateway %d stats %+v", i, st)
		}
	}
	testwait.UntilStacks(t, 10*time.Second, fmt.Sprintf("goroutines back to %d after Close", before), func() bool { return runtime.NumGoroutine() <= before })
}

// raceBuild reports whether the test binary has the race detector, under
// which sync.Pool drops items at random and allocation counts mean nothing.
func raceBuild() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// bbBench holds a batch flowing from one BackbonePort to another.
type bbBench struct {
	a, b   *BackbonePort
	in     [][]byte
	vias   []netip.Addr
	bufs   [][]byte
	sizes  []int
	outers [][]byte
}

func newBBBench(n int) *bbBench {
	x := &bbBench{
		a: NewBackbonePort("a", 1440, bbA, func([][]byte, int) {}),
		b: NewBackbonePort("b", 1440, bbB, func([][]byte, int) {}),
	}
	for range n {
		x.in = append(x.in, routertest.Packet(bbHeadroom, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.2.0.10"), 64, make([]byte, 1372)))
		x.vias = append(x.vias, bbB)
		x.bufs = append(x.bufs, make([]byte, bbHeadroom+65535))
	}
	x.sizes = make([]int, n)
	x.outers = make([][]byte, n)
	return x
}

// roundTrip encapsulates the batch on a, reads it as a's device would, and
// hands it to b's Write as b's device would after decrypting.
func (x *bbBench) roundTrip() error {
	if err := x.a.DeliverVia(x.in, x.vias, bbHeadroom); err != nil {
		return err
	}
	for got := 0; got < len(x.in); {
		n, err := x.a.Read(x.bufs[got:], x.sizes[got:], bbHeadroom)
		if err != nil {
			return err
		}
		got += n
	}
	for i := range x.outers {
		x.outers[i] = x.bufs[i][:bbHeadroom+x.sizes[i]]
	}
	_, err := x.b.Write(x.outers, bbHeadroom)
	return err
}

func (x *bbBench) close() {
	x.a.Close()
	x.b.Close()
}

// TestBackboneDoesNotAllocate: DeliverVia, Read and Write allocate nothing
// per batch.
func TestBackboneDoesNotAllocate(t *testing.T) {
	if raceBuild() {
		t.Skip("allocation counts are not meaningful under the race detector (sync.Pool drops items)")
	}
	x := newBBBench(64)
	defer x.close()
	if err := x.roundTrip(); err != nil { // warm the pools
		t.Fatal(err)
	}
	allocs := testing.AllocsPerRun(100, func() {
		if err := x.roundTrip(); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Fatalf("encapsulation round trip allocated %.1f times per batch, want 0", allocs)
	}
	if st := x.b.Stats(); st.Decapsulated != 102*64 {
		t.Fatalf("decapsulated %d, want %d", st.Decapsulated, 102*64)
	}
}

// BenchmarkBackboneDeliverVia measures encapsulating batches of 128
// packets of 1400 bytes while the device reads them; run with -benchmem
// (0 allocs/op).
func BenchmarkBackboneDeliverVia(b *testing.B) {
	x := newBBBench(128)
	defer x.close()
	go func() {
		for {
			if _, err := x.a.Read(x.bufs, x.sizes, bbHeadroom); err != nil {
				return
			}
		}
	}()
	b.ReportAllocs()
	b.SetBytes(128 * 1400)
	for b.Loop() {
		if err := x.a.DeliverVia(x.in, x.vias, bbHeadroom); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkBackboneWrite measures checking and stripping outer headers of
// batches of 128 decrypted packets (0 allocs/op).
func BenchmarkBackboneWrite(b *testing.B) {
	x := newBBBench(128)
	defer x.close()
	if err := x.roundTrip(); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(128 * 1400)
	for b.Loop() {
		if _, err := x.b.Write(x.outers, bbHeadroom); err != nil {
			b.Fatal(err)
		}
	}
}

// TestBatchWriterEdges covers what Port and BackbonePort share: a batch
// whose only packet was too big is not queued (Read never sees an empty
// batch), and delivering after Close always fails.
func TestBatchWriterEdges(t *testing.T) {
	p := NewPort("t", 0, func([][]byte, int) {}) // arena: one 65535-byte packet
	defer p.Close()
	if err := p.Deliver([][]byte{make([]byte, bbHeadroom+70000)}, bbHeadroom); err != nil {
		t.Fatal(err)
	}
	if err := p.Deliver([][]byte{append(make([]byte, bbHeadroom), 7)}, bbHeadroom); err != nil {
		t.Fatal(err)
	}
	bufs, sizes := [][]byte{make([]byte, 100)}, make([]int, 1)
	if n, err := p.Read(bufs, sizes, 0); n != 1 || err != nil || sizes[0] != 1 || bufs[0][0] != 7 {
		t.Fatalf("Read = %d, %v (size %d)", n, err, sizes[0])
	}
	if p.Oversized() != 1 {
		t.Fatalf("oversized = %d, want 1", p.Oversized())
	}
	p.Close()
	for range 100 { // a free batch is ready too: Close must win every time
		if err := p.Deliver([][]byte{make([]byte, 20)}, 0); !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Deliver after Close: %v", err)
		}
	}
}
