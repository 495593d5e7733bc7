package router

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/anyguard/anyguard/packet"
	"github.com/gaissmai/bart"
)

// Kind says what a port connects to; split horizon and loop checks use it.
type Kind uint8

const (
	KindClient   Kind = iota + 1 // the client-facing WireGuard device
	KindEgress                   // the local private network (TUN or netstack)
	KindBackbone                 // the gateway-to-gateway WireGuard mesh
)

func (k Kind) String() string {
	switch k {
	case KindClient:
		return "client"
	case KindEgress:
		return "egress"
	case KindBackbone:
		return "backbone"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// PortID names a port registered with AddPort.
type PortID uint16

// A Port receives the packets the router forwards to it.
type Port interface {
	// Deliver takes a batch of IP packets: packet i is bufs[i][offset:], and
	// the slice ends exactly where the packet ends. At least offset bytes of
	// headroom precede each packet and the port may write into them and into
	// the buffer's spare capacity (for virtio headers or coalescing). Deliver
	// is called concurrently from any goroutine and must not retain bufs once
	// it returns. An error means the whole batch was dropped.
	Deliver(bufs [][]byte, offset int) error
}

// A ViaPort is a Port that reaches several next hops, such as the backbone,
// where each packet is encapsulated toward one gateway. When a packet's
// route goes to a ViaPort, Forward calls DeliverVia instead of Deliver.
type ViaPort interface {
	Port
	// DeliverVia is Deliver with a next hop per packet: vias[i] is the Via
	// of the route that matched bufs[i] (the zero Addr when that route has
	// none), and len(vias) == len(bufs). The same buffer rules as Deliver
	// apply, and vias must not be retained either.
	DeliverVia(bufs [][]byte, vias []netip.Addr, offset int) error
}

// Route sends packets for Prefix to Port, toward the next hop Via when the
// port is a ViaPort. Via is ignored by other ports; the zero Addr means no
// next hop.
type Route struct {
	Prefix netip.Prefix
	Port   PortID
	Via    netip.Addr
}

// Hop is where the route for a destination leads: the port and, for a
// ViaPort, the next hop within it (zero: none).
type Hop struct {
	Port PortID
	Via  netip.Addr
}

// SourceRule allows or denies packets whose source address is in Prefix
// when they enter a port. The longest matching rule decides; a source that
// matches no rule is denied.
type SourceRule struct {
	Prefix netip.Prefix
	Allow  bool
}

// ErrUnknownPort is returned for a PortID that AddPort did not hand out.
var ErrUnknownPort = errors.New("unknown port")

// Router forwards packets between ports. The zero value is not usable; call New.
type Router struct {
	mu    sync.Mutex // serialises changes to the table
	table atomic.Pointer[table]
	drops [numDropReasons]atomic.Uint64
	pool  sync.Pool
}

type portState struct {
	id        PortID
	name      string
	kind      Kind
	port      Port
	via       ViaPort // port, when it is a ViaPort; nil otherwise
	rxPackets atomic.Uint64
	rxBytes   atomic.Uint64
	txPackets atomic.Uint64
	txBytes   atomic.Uint64
}

// table is an immutable snapshot read by Forward without locks.
type table struct {
	ports   []*portState
	fib     *bart.Table[Hop]
	sources []*bart.Table[bool] // indexed by PortID; nil denies everything
}

type scratch struct {
	out  [][][]byte     // per destination port
	vias [][]netip.Addr // per destination port, alongside out; only for ViaPorts
}

// New returns a router with no ports and no routes.
func New() *Router {
	r := &Router{}
	r.table.Store(&table{fib: new(bart.Table[Hop])})
	r.pool.New = func() any { return new(scratch) }
	return r
}

// AddPort registers p and returns its ID. A new port accepts no source
// address until SetSources allows some.
func (r *Router) AddPort(name string, kind Kind, p Port) PortID {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	nt := *old
	id := PortID(len(old.ports))
	ps := &portState{id: id, name: name, kind: kind, port: p}
	ps.via, _ = p.(ViaPort)
	nt.ports = append(old.ports[:len(old.ports):len(old.ports)], ps)
	nt.sources = append(old.sources[:len(old.sources):len(old.sources)], nil)
	r.table.Store(&nt)
	return id
}

// SetRoutes replaces the whole forwarding table. It is safe to call
// repeatedly with the same input.
func (r *Router) SetRoutes(routes []Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	fib := new(bart.Table[Hop])
	for _, rt := range routes {
		if int(rt.Port) >= len(old.ports) {
			return fmt.Errorf("set routes: %v: %w %d", rt.Prefix, ErrUnknownPort, rt.Port)
		}
		if !rt.Prefix.IsValid() {
			return fmt.Errorf("set routes: invalid prefix %v", rt.Prefix)
		}
		fib.Insert(rt.Prefix.Masked(), Hop{Port: rt.Port, Via: rt.Via})
	}
	nt := *old
	nt.fib = fib
	r.table.Store(&nt)
	return nil
}

// SetRoute adds or replaces one route without rebuilding the table.
func (r *Router) SetRoute(rt Route) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	if int(rt.Port) >= len(old.ports) {
		return fmt.Errorf("set route %v: %w %d", rt.Prefix, ErrUnknownPort, rt.Port)
	}
	if !rt.Prefix.IsValid() {
		return fmt.Errorf("set route: invalid prefix %v", rt.Prefix)
	}
	nt := *old
	nt.fib = old.fib.InsertPersist(rt.Prefix.Masked(), Hop{Port: rt.Port, Via: rt.Via})
	r.table.Store(&nt)
	return nil
}

// DeleteRoute removes the route for exactly prefix, if there is one.
func (r *Router) DeleteRoute(prefix netip.Prefix) {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	nt := *old
	nt.fib = old.fib.DeletePersist(prefix.Masked())
	r.table.Store(&nt)
}

// SetSources replaces the source filter of a port.
func (r *Router) SetSources(id PortID, rules []SourceRule) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	old := r.table.Load()
	if int(id) >= len(old.ports) {
		return fmt.Errorf("set sources: %w %d", ErrUnknownPort, id)
	}
	src := new(bart.Table[bool])
	for _, rule := range rules {
		if !rule.Prefix.IsValid() {
			return fmt.Errorf("set sources of %s: invalid prefix %v", old.ports[id].name, rule.Prefix)
		}
		src.Insert(rule.Prefix.Masked(), rule.Allow)
	}
	nt := *old
	nt.sources = append([]*bart.Table[bool](nil), old.sources...)
	nt.sources[id] = src
	r.table.Store(&nt)
	return nil
}

// Lookup returns the port that a packet to dst would leave through.
func (r *Router) Lookup(dst netip.Addr) (PortID, bool) {
	hop, ok := r.table.Load().fib.Lookup(dst)
	return hop.Port, ok
}

// LookupHop returns the port and next hop that a packet to dst would leave
// through.
func (r *Router) LookupHop(dst netip.Addr) (Hop, bool) {
	return r.table.Load().fib.Lookup(dst)
}

// Forward routes a batch of packets that arrived on port in: packet i is
// bufs[i][offset:]. It may modify the packets (TTL) and hands them to the
// ports they are routed to before it returns; it retains nothing. It is
// safe to call concurrently, allocates nothing and takes no lock.
func (r *Router) Forward(in PortID, bufs [][]byte, offset int) {
	t := r.table.Load()
	if int(in) >= len(t.ports) {
		panic(fmt.Sprintf("router: Forward from unregistered port %d", in))
	}
	ing := t.ports[in]
	src := t.sources[in]
	s := r.pool.Get().(*scratch)
	if len(s.out) < len(t.ports) {
		s.out = make([][][]byte, len(t.ports))
		s.vias = make([][]netip.Addr, len(t.ports))
	}
	var (
		drops          [numDropReasons]uint32
		rxPkts, rxByte uint64
	)
	var (
		h packet.Header
		// The last lookups, reused while packets share their addresses:
		// a segmented TUN read or a decrypted batch is mostly one flow.
		lastSrc, lastDst netip.Addr // zero: nothing looked up yet
		srcOK, hopOK     bool
		hop              Hop
	)
	for _, b := range bufs {
		if len(b) < offset {
			drops[DropTruncated]++
			continue
		}
		p := b[offset:]
		rxPkts++
		rxByte += uint64(len(p))
		if err := h.Decode(p); err != nil {
			drops[dropReason(err)]++
			continue
		}
		if h.Src != lastSrc { // a decoded address is never the zero Addr
			allowed, found := lookupSource(src, h.Src)
			lastSrc, srcOK = h.Src, found && allowed
		}
		if !srcOK {
			drops[DropSourceInvalid]++
			continue
		}
		if h.Dst != lastDst {
			hop, hopOK = t.fib.Lookup(h.Dst)
			lastDst = h.Dst
		}
		if !hopOK {
			drops[DropNoRoute]++
			continue
		}
		out := hop.Port
		egr := t.ports[out]
		if ing.kind == KindBackbone && egr.kind == KindBackbone {
			drops[DropSplitHorizon]++
			continue
		}
		if out == in && ing.kind != KindClient {
			drops[DropLoop]++
			continue
		}
		if !packet.DecrementTTL(p) {
			drops[DropTTLExpired]++
			continue
		}
		s.out[out] = append(s.out[out], b[:offset+h.Length])
		if egr.via != nil {
			s.vias[out] = append(s.vias[out], hop.Via)
		}
	}
	ing.rxPackets.Add(rxPkts)
	ing.rxBytes.Add(rxByte)
	for id, list := range s.out[:len(t.ports)] {
		if len(list) == 0 {
			continue
		}
		ps := t.ports[id]
		var err error
		if ps.via != nil {
			err = ps.via.DeliverVia(list, s.vias[id], offset)
			s.vias[id] = s.vias[id][:0]
		} else {
			err = ps.port.Deliver(list, offset)
		}
		if err != nil {
			drops[DropPortError] += uint32(len(list))
		} else {
			var n uint64
			for _, b := range list {
				n += uint64(len(b) - offset)
			}
			ps.txPackets.Add(uint64(len(list)))
			ps.txBytes.Add(n)
		}
		s.out[id] = list[:0]
	}
	for i, n := range drops {
		if n != 0 {
			r.drops[i].Add(uint64(n))
		}
	}
	r.pool.Put(s)
}

func lookupSource(t *bart.Table[bool], a netip.Addr) (allowed, found bool) {
	if t == nil {
		return false, false
	}
	return t.Lookup(a)
}

// PortStats are the counters of one port.
type PortStats struct {
	ID        PortID
	Name      string
	Kind      Kind
	RxPackets uint64 // packets that entered the router from the port
	RxBytes   uint64
	TxPackets uint64 // packets the router delivered to the port
	TxBytes   uint64
}

// Stats is a snapshot of the router's counters.
type Stats struct {
	Ports []PortStats
	Drops map[DropReason]uint64
}

// Stats returns the current counters.
func (r *Router) Stats() Stats {
	t := r.table.Load()
	st := Stats{Drops: make(map[DropReason]uint64, numDropReasons)}
	for _, p := range t.ports {
		st.Ports = append(st.Ports, PortStats{
			ID: p.id, Name: p.name, Kind: p.kind,
			RxPackets: p.rxPackets.Load(), RxBytes: p.rxBytes.Load(),
			TxPackets: p.txPackets.Load(), TxBytes: p.txBytes.Load(),
		})
	}
	for i := range r.drops {
		st.Drops[DropReason(i)] = r.drops[i].Load()
	}
	return st
}

// Dropped returns how many packets were dropped for reason.
func (r *Router) Dropped(reason DropReason) uint64 {
	if reason >= numDropReasons {
		return 0
	}
	return r.drops[reason].Load()
}
