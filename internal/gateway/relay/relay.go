package relay

import (
	"context"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/device"
)

// Timings and bounds (doc.go explains each).
const (
	// Window is the longest a gateway relays a client endpoint's
	// datagrams, from the first one; Cooldown more must pass before it
	// relays that endpoint again.
	Window   = 10 * time.Second
	Cooldown = Window
	// Grace is how long relaying goes on after this gateway claimed the
	// client (datagrams of the old session still in flight), and how long
	// an owner keeps a session it lost while datagrams are relayed to it.
	Grace = 2 * time.Second
	// Hold is how long after the last datagram relayed to it from a client
	// endpoint the owner sends that endpoint's datagrams through the
	// relaying gateway.
	Hold = 3 * time.Second
	// PerEndpoint and Total bound the datagrams relayed per rateSlot,
	// each way: per client endpoint, and over all of them.
	PerEndpoint = 1000
	Total       = 10000
	rateSlot    = 100 * time.Millisecond
	// maxInbound bounds the endpoints an owner follows; relayed datagrams
	// for more are injected but their answers leave by the socket.
	maxInbound = 1 << 16
)

// Backbone sends relayed datagrams to another gateway
// (*device.BackbonePort).
type Backbone interface {
	SendRelay(via netip.Addr, kind device.RelayKind, endpoint netip.AddrPort, datagram []byte) error
}

// Bind is the client device's bind (*device.ClassifyingBind): Inject
// hands the device a relayed datagram, Send sends from the client socket
// (the bind's own, without its hooks: conn.Bind of the wrapped bind), and
// ParseEndpoint makes the endpoints of both.
type Bind interface {
	Inject(msg []byte, from conn.Endpoint) bool
	ParseEndpoint(s string) (conn.Endpoint, error)
}

// Sender sends datagrams from the client socket, bypassing the
// classifying bind's hooks (the wrapped conn.Bind).
type Sender interface {
	Send(bufs [][]byte, ep conn.Endpoint) error
}

// Owners says which gateway to relay a client endpoint's datagrams to.
// RelayVia reports candidate when endpoint is the recorded endpoint of a
// client whose session this gateway does not hold (one cheap lookup, as
// it runs for every datagram of an endpoint not relayed yet), and for
// those the backbone address of the client's owner if it is another live
// gateway (an invalid via: none to relay to). It runs on the client
// bind's receive goroutines.
type Owners interface {
	RelayVia(endpoint netip.AddrPort) (via netip.Addr, candidate bool)
}

// retryOwner is how long a candidate endpoint with no owner to relay to
// (dead, gone, this gateway) waits before its owner is looked up again:
// the lookup takes locks that the per-datagram path must not take.
const retryOwner = time.Second

// Config is what a Relay works on.
type Config struct {
	Backbone Backbone
	Bind     Bind
	Sender   Sender
	Owners   Owners
	// Self is this gateway's node name (ownership records).
	Self   string
	Logger *slog.Logger
	// Now replaces time.Now (tests).
	Now func() time.Time
}

// Relay is both sides of the drain relay; see the package comment.
type Relay struct {
	backbone Backbone
	bind     Bind
	sender   Sender
	owners   Owners
	self     string
	logger   *slog.Logger
	now      func() time.Time

	// out holds the endpoints this gateway relays for:
	// netip.AddrPort → *outRoute, kept until their cooldown ends.
	out  sync.Map
	outN atomic.Int32
	// in holds the endpoints whose datagrams are relayed to this gateway:
	// netip.AddrPort → *inRoute.
	in  sync.Map
	inN atomic.Int32

	up, down rateWindow // every endpoint's datagrams, per direction
	// recent holds what this gateway sent directly since it began to
	// drain (recent.go); nil before.
	recent atomic.Pointer[recentRing]
	sends  sync.Pool // *[1][]byte: FromBackbone's batch of one

	stats counters
	stop  chan struct{}
	wg    sync.WaitGroup
}

// outRoute is an endpoint this gateway relays for.
type outRoute struct {
	via   netip.Addr    // the owner's backbone address
	ep    conn.Endpoint // the client socket's endpoint for it
	start int64         // unix ns of the first datagram relayed
	until atomic.Int64  // unix ns: relaying ends (Window, or Grace after a claim)
	// up and down bound the datagrams relayed each way.
	up, down rateWindow
}

// inRoute is an endpoint whose datagrams another gateway relays here.
type inRoute struct {
	via  atomic.Pointer[netip.Addr]
	ep   conn.Endpoint // the client device's endpoint for it
	last atomic.Int64  // unix ns of the latest datagram relayed here
}

// counters are the relay's metrics (anyguard_relayed_datagrams_total).
type counters struct {
	toOwner, toClient         atomic.Uint64 // relayed by this gateway, each way
	injected, diverted        atomic.Uint64 // as the owner: received and sent through a relaying gateway
	started                   atomic.Uint64 // endpoints relayed
	rateEndpoint, rateTotal   atomic.Uint64 // dropped by the bounds
	notRelaying, injectFailed atomic.Uint64 // RelayToClient for an endpoint not relayed to that gateway; device behind
	sendFailed                atomic.Uint64 // backbone or socket errors
	replayed                  atomic.Uint64 // copies of what was sent directly, sent again through a relaying gateway
}

// New makes a Relay; Start starts its sweeper.
func New(cfg Config) *Relay {
	r := &Relay{
		backbone: cfg.Backbone, bind: cfg.Bind, sender: cfg.Sender, owners: cfg.Owners, self: cfg.Self,
		logger: cfg.Logger, now: cfg.Now, stop: make(chan struct{}),
	}
	if r.logger == nil {
		r.logger = slog.New(slog.DiscardHandler)
	}
	if r.now == nil {
		r.now = time.Now
	}
	r.sends.New = func() any { return new([1][]byte) }
	return r
}

// Start starts the sweeper that forgets routes past their time.
func (r *Relay) Start() {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-r.stop:
				return
			case now := <-t.C:
				r.sweep(now)
			}
		}
	}()
}

// Close stops the sweeper and waits for it. It is safe on a nil Relay and
// more than once.
func (r *Relay) Close() {
	if r == nil {
		return
	}
	select {
	case <-r.stop:
	default:
		close(r.stop)
	}
	r.wg.Wait()
}

// sweep forgets routes past their time.
func (r *Relay) sweep(now time.Time) {
	ns := now.UnixNano()
	r.out.Range(func(k, v any) bool {
		if o := v.(*outRoute); ns-o.start > int64(Window+Cooldown) && r.out.CompareAndDelete(k, v) {
			r.outN.Add(-1)
		}
		return true
	})
	r.in.Range(func(k, v any) bool {
		if ns-v.(*inRoute).last.Load() > int64(Hold+Grace) && r.in.CompareAndDelete(k, v) {
			r.inN.Add(-1)
		}
		return true
	})
}

// FromClient is the client bind's relay hook, for every transport
// datagram received from a client socket: a datagram from the endpoint of
// a client whose session another live gateway holds is sent to it too.
// The device still reads the datagram: it decrypts it if it is of a
// session of this gateway's (the takeover's), and drops it as unknown
// otherwise.
func (r *Relay) FromClient(msg []byte, from conn.Endpoint) {
	e, ok := from.(*conn.StdNetEndpoint)
	if !ok {
		return
	}
	ep := e.AddrPort
	now := r.now().UnixNano()
	var o *outRoute
	if r.outN.Load() != 0 {
		if v, ok := r.out.Load(ep); ok {
			o = v.(*outRoute)
		}
	}
	if o != nil && !o.via.IsValid() { // no owner to relay to, lately
		if now <= o.until.Load() {
			return
		}
		if r.out.CompareAndDelete(ep, o) {
			r.outN.Add(-1)
		}
		o = nil
	}
	if o == nil {
		if o = r.startRoute(ep, now); o == nil || !o.via.IsValid() {
			return
		}
	}
	if now > o.until.Load() {
		return
	}
	if !r.allow(now, &o.up, &r.up) {
		return
	}
	if err := r.backbone.SendRelay(o.via, device.RelayToOwner, ep, msg); err != nil {
		r.stats.sendFailed.Add(1)
		return
	}
	r.stats.toOwner.Add(1)
}

// startRoute starts relaying ep's datagrams, if another live gateway holds
// the session of the client whose endpoint it is. For a candidate with no
// such gateway it stores a route without via for retryOwner.
func (r *Relay) startRoute(ep netip.AddrPort, now int64) *outRoute {
	via, candidate := r.owners.RelayVia(ep)
	if !candidate {
		return nil
	}
	o := &outRoute{via: via, start: now}
	if via.IsValid() {
		cep, err := r.bind.ParseEndpoint(ep.String())
		if err != nil {
			return nil
		}
		o.ep = cep
		o.until.Store(now + int64(Window))
	} else {
		o.until.Store(now + int64(retryOwner))
	}
	v, loaded := r.out.LoadOrStore(ep, o)
	if loaded {
		return v.(*outRoute)
	}
	r.outN.Add(1)
	if !via.IsValid() {
		return o
	}
	r.stats.started.Add(1)
	if r.logger.Enabled(context.Background(), slog.LevelInfo) {
		r.logger.Info("relaying a moved client's datagrams to the gateway with its session", "endpoint", ep, "via", via)
	}
	return o
}

// FromBackbone is the backbone port's relay handler.
func (r *Relay) FromBackbone(from netip.Addr, kind device.RelayKind, ep netip.AddrPort, datagram []byte) {
	now := r.now().UnixNano()
	switch kind {
	case device.RelayToOwner:
		r.toOwner(from, ep, datagram, now)
	case device.RelayToClient:
		r.toClient(from, ep, datagram, now)
	}
}

// toOwner injects a client's datagram that gateway from relayed here, as
// if it came from the client's endpoint ep, and remembers that ep's
// datagrams arrive through from.
func (r *Relay) toOwner(from netip.Addr, ep netip.AddrPort, datagram []byte, now int64) {
	var in *inRoute
	if v, ok := r.in.Load(ep); ok {
		in = v.(*inRoute)
		if *in.via.Load() != from {
			via := from // a new one: &from would move every call's from to the heap
			in.via.Store(&via)
		}
	} else if r.inN.Load() < maxInbound {
		cep, err := r.bind.ParseEndpoint(ep.String())
		if err != nil {
			return
		}
		in = &inRoute{ep: cep}
		via := from
		in.via.Store(&via)
		if v, loaded := r.in.LoadOrStore(ep, in); loaded {
			in = v.(*inRoute)
		} else {
			r.inN.Add(1)
		}
	} else {
		return
	}
	if prev := in.last.Swap(now); now-prev > int64(Hold) {
		// The first datagram relayed from ep (lately): what this gateway
		// sent ep directly since the flow moved was dropped by the load
		// balancer.
		if q := r.recent.Load(); q != nil {
			r.stats.replayed.Add(q.replay(r.backbone, from, ep, now-int64(recentAge)))
		}
	}
	if !r.bind.Inject(datagram, in.ep) {
		r.stats.injectFailed.Add(1)
		return
	}
	r.stats.injected.Add(1)
}

// toClient sends the owner's datagram for the client at ep from the
// client socket, if this gateway relays ep's datagrams to from.
func (r *Relay) toClient(from netip.Addr, ep netip.AddrPort, datagram []byte, now int64) {
	var o *outRoute
	if r.outN.Load() != 0 {
		if v, ok := r.out.Load(ep); ok {
			o = v.(*outRoute)
		}
	}
	// The owner answers what was relayed to it until relaying ended, and
	// a little after.
	if o == nil || o.via != from || now > o.until.Load()+int64(Grace) {
		r.stats.notRelaying.Add(1)
		return
	}
	if !r.allow(now, &o.down, &r.down) {
		return
	}
	b := r.sends.Get().(*[1][]byte)
	b[0] = datagram
	err := r.sender.Send(b[:], o.ep)
	b[0] = nil
	r.sends.Put(b)
	if err != nil {
		r.stats.sendFailed.Add(1)
		return
	}
	r.stats.toClient.Add(1)
}

// Divert is the client bind's divert hook, for every transport datagram
// the client device sends: one for an endpoint whose datagrams were
// relayed here within Hold goes back through the relaying gateway, as the
// load balancer now takes the client's flow there and drops this
// gateway's datagrams.
func (r *Relay) Divert(msg []byte, to conn.Endpoint) bool {
	q := r.recent.Load()
	if r.inN.Load() == 0 && q == nil {
		return false
	}
	e, ok := to.(*conn.StdNetEndpoint)
	if !ok {
		return false
	}
	now := r.now().UnixNano()
	var in *inRoute
	if r.inN.Load() != 0 {
		if v, ok := r.in.Load(e.AddrPort); ok {
			in = v.(*inRoute)
		}
	}
	if in == nil || now-in.last.Load() > int64(Hold) {
		if q != nil {
			q.record(e.AddrPort, msg, now)
		}
		return false
	}
	if err := r.backbone.SendRelay(*in.via.Load(), device.RelayToClient, e.AddrPort, msg); err != nil {
		r.stats.sendFailed.Add(1)
		return false
	}
	r.stats.diverted.Add(1)
	return true
}

// Draining tells the relay that this gateway has begun to drain: from now
// on it keeps copies of what it sends clients directly (recent.go). It is
// safe to call more than once.
func (r *Relay) Draining() {
	if r.recent.Load() == nil {
		r.recent.CompareAndSwap(nil, newRecentRing())
	}
}

// OwnerChanged follows ownership: once this gateway owns a client it
// relays for, relaying goes on for Grace only (datagrams of the old
// session in flight).
func (r *Relay) OwnerChanged(old, rec cluster.Record) {
	if rec.Owner != r.self || r.outN.Load() == 0 || !rec.Endpoint.IsValid() {
		return
	}
	v, ok := r.out.Load(rec.Endpoint)
	if !ok {
		return
	}
	o := v.(*outRoute)
	end := r.now().UnixNano() + int64(Grace)
	for {
		cur := o.until.Load()
		if cur <= end || o.until.CompareAndSwap(cur, end) {
			return
		}
	}
}

// HoldSession says how long a gateway that lost a client to rec should
// keep the client's session before dropping it: Grace while the client's
// datagrams are relayed to it (they still decrypt only here), else 0.
func (r *Relay) HoldSession(old, rec cluster.Record) time.Duration {
	if r.inN.Load() == 0 {
		return 0
	}
	now := r.now().UnixNano()
	for _, ep := range [2]netip.AddrPort{rec.Endpoint, old.Endpoint} {
		if !ep.IsValid() {
			continue
		}
		if v, ok := r.in.Load(ep); ok && now-v.(*inRoute).last.Load() <= int64(Hold) {
			return Grace
		}
	}
	return 0
}

// Stats returns the relay's counters by name
// (anyguard_relayed_datagrams_total).
func (r *Relay) Stats() map[string]uint64 {
	return map[string]uint64{
		"to_owner": r.stats.toOwner.Load(), "to_client": r.stats.toClient.Load(),
		"injected": r.stats.injected.Load(), "diverted": r.stats.diverted.Load(),
		"endpoints_started":  r.stats.started.Load(),
		"drop_rate_endpoint": r.stats.rateEndpoint.Load(), "drop_rate_total": r.stats.rateTotal.Load(),
		"drop_not_relaying": r.stats.notRelaying.Load(), "drop_inject": r.stats.injectFailed.Load(),
		"drop_send": r.stats.sendFailed.Load(), "replayed": r.stats.replayed.Load(),
	}
}

// allow reports whether one more datagram fits both the endpoint's
// window and the total's (each direction has its own pair), counting the
// drop against the bound that refused it.
func (r *Relay) allow(now int64, endpoint, total *rateWindow) bool {
	if !endpoint.allow(now, PerEndpoint) {
		r.stats.rateEndpoint.Add(1)
		return false
	}
	if !total.allow(now, Total) {
		r.stats.rateTotal.Add(1)
		return false
	}
	return true
}

// rateWindow counts datagrams per rateSlot. Concurrent callers at a
// slot's turn may let a few more through than the limit: it bounds
// floods, it does not meter.
type rateWindow struct {
	slot, n atomic.Int64
}

func (w *rateWindow) allow(now int64, limit int64) bool {
	s := now / int64(rateSlot)
	if cur := w.slot.Load(); cur != s && w.slot.CompareAndSwap(cur, s) {
		w.n.Store(0)
	}
	return w.n.Add(1) <= limit
}
