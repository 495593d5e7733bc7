package admission

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/internal/keys"
)

func held(sender byte, at time.Time) heldInitiation {
	h := heldInitiation{at: at.UnixNano(), from: &conn.StdNetEndpoint{}}
	h.msg[0], h.msg[4] = 1, sender
	return h
}

// TestStackOrder: newest first; initiations older than the cutoff are
// dropped and counted; a full stack gives up its oldest.
func TestStackOrder(t *testing.T) {
	now := time.Now()
	s := newStack(3)
	for i, age := range []time.Duration{4 * time.Second, 2 * time.Second, time.Second} {
		h := held(byte(i+1), now.Add(-age))
		if stale, full := s.push(&h, 0); stale != 0 || full {
			t.Fatalf("push %d: stale %d full %v", i, stale, full)
		}
	}
	h := held(4, now)
	if stale, full := s.push(&h, 0); stale != 0 || !full {
		t.Fatalf("push into a full stack: stale %d full %v", stale, full)
	}
	cutoff := now.Add(-maxWait).UnixNano()
	var got heldInitiation
	for _, want := range []byte{4, 3, 2} {
		ok, stale := s.pop(&got, cutoff)
		if !ok || stale != 0 || got.msg[4] != want {
			t.Fatalf("pop: ok %v stale %d sender %d, want %d", ok, stale, got.msg[4], want)
		}
	}
	if ok, _ := s.pop(&got, cutoff); ok || s.len() != 0 {
		t.Fatalf("popped from an empty stack (len %d)", s.len())
	}
	// 1 gave way to 4 when the stack was full; now one too old goes.
	old, fresh := held(5, now.Add(-maxWait-time.Second)), held(6, now)
	s.push(&old, 0)
	if stale, _ := s.push(&fresh, cutoff); stale != 1 || s.len() != 1 {
		t.Fatalf("push did not evict the stale one: stale %d len %d", stale, s.len())
	}
}

// TestWorkerServesRetriesFirstAndSkipsStale: of the initiations waiting,
// the worker takes the retries (they carried a cookie) newest first, then
// the first tries newest first, and drops unread those that waited longer
// than maxWait.
func TestWorkerServesRetriesFirstAndSkipsStale(t *testing.T) {
	a := New(Config{PrivateKey: keys.Key{9}})
	now := time.Now()
	for i, age := range []time.Duration{maxWait + time.Second, time.Second, 0} {
		h := held(byte(10+i), now.Add(-age))
		a.first.push(&h, 0)
	}
	r := held(20, now.Add(-2*time.Second))
	a.retry.push(&r, 0)
	var got heldInitiation
	var order []byte
	for a.next(&got) {
		order = append(order, got.msg[4])
	}
	if want := []byte{20, 12, 11}; string(order) != string(want) {
		t.Fatalf("served %v, want %v", order, want)
	}
	if n := a.stale.Load(); n != 1 {
		t.Fatalf("stale = %d, want 1", n)
	}
}

// TestUnderLoadByWait: load is the expected wait (initiations waiting ×
// the worker's time per initiation) past admitBudget, not a count.
func TestUnderLoadByWait(t *testing.T) {
	a := New(Config{PrivateKey: keys.Key{9}})
	now := time.Now()
	for i := range 100 {
		h := held(byte(i), now)
		a.first.push(&h, 0)
	}
	a.service.Store(int64(time.Millisecond)) // 100 ms of work waiting
	if a.underLoad(now) {
		t.Fatal("under load with 100 ms of work waiting")
	}
	a.service.Store(int64(20 * time.Millisecond)) // 2 s of work: too late for a client's retry
	if !a.underLoad(now) {
		t.Fatal("not under load with 2 s of work waiting")
	}
	if !a.underLoad(now.Add(underLoadAfter / 2)) {
		t.Fatal("load forgotten at once")
	}
	a.observe(time.Millisecond)
	if got := time.Duration(a.service.Load()); got >= 20*time.Millisecond || got <= time.Millisecond {
		t.Fatalf("moving average %v after one faster initiation", got)
	}
}

// TestHookNoAllocs: holding an initiation back (copy, push, wake) costs
// the receive goroutine no allocation.
func TestHookNoAllocs(t *testing.T) {
	a := New(Config{PrivateKey: keys.Key{9}, ProbeEndpoint: func() netip.AddrPort {
		return netip.MustParseAddrPort("127.0.0.1:1")
	}})
	from := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:2")}
	msg := make([]byte, 148)
	msg[0] = 1
	var h heldInitiation
	allocs := testing.AllocsPerRun(1000, func() {
		a.onInitiation(msg, from)
		a.first.pop(&h, 0)
		select {
		case <-a.wake:
		default:
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per initiation", allocs)
	}
}

// silentBind takes every release and never answers.
type silentBind struct{ releases int }

func (b *silentBind) SetInitiationHook(device.InitiationHook) {}
func (b *silentBind) SetResponseHook(device.ResponseHook)     {}
func (b *silentBind) Release([]byte, conn.Endpoint) bool      { b.releases++; return true }
func (b *silentBind) Answered() uint64                        { return 0 }

// TestPaceShrinksByAQuarter: a device that stops answering is sent a full
// window, then a quarter of a window per releaseStall, not a new window:
// a slow device must not be pushed past its under-load mark.
func TestPaceShrinksByAQuarter(t *testing.T) {
	b := &silentBind{}
	a := New(Config{PrivateKey: keys.Key{9}, Bind: b})
	h := held(1, time.Now())
	start := time.Now()
	for range releaseWindow {
		a.release(&h)
	}
	if took := time.Since(start); took >= releaseStall {
		t.Fatalf("a window of releases took %v", took)
	}
	for range releaseWindow / 4 {
		a.release(&h)
	}
	took := time.Since(start)
	if took < releaseStall || took >= 2*releaseStall {
		t.Fatalf("a quarter window more after %v, want one stall (%v)", took, releaseStall)
	}
	a.release(&h)
	if took := time.Since(start); took < 2*releaseStall {
		t.Fatalf("released past the quarter window after %v without a second stall", took)
	}
	if b.releases != releaseWindow+releaseWindow/4+1 {
		t.Fatalf("%d releases", b.releases)
	}
}

// loadedDevice is a Device whose only working method is UnderLoad.
type loadedDevice struct {
	Device
	loaded atomic.Bool
}

func (d *loadedDevice) UnderLoad() bool { return d.loaded.Load() }

// TestWorkerWaitsForLoadedDevice: while the device demands cookies of its
// own, the worker releases nothing; it goes on when the device is out of
// load, and stops waiting when the Admission closes.
func TestWorkerWaitsForLoadedDevice(t *testing.T) {
	dev := &loadedDevice{}
	dev.loaded.Store(true)
	a := New(Config{PrivateKey: keys.Key{9}, Device: dev})
	ready := make(chan bool)
	go func() { ready <- a.deviceReady() }()
	select {
	case <-ready:
		t.Fatal("the worker went on while the device was under load")
	case <-time.After(5 * deviceLoadPoll):
	}
	dev.loaded.Store(false)
	if !<-ready {
		t.Fatal("deviceReady reported a stop")
	}
	if a.deviceBusy.Load() == 0 {
		t.Fatal("no wait counted")
	}
	dev.loaded.Store(true)
	go func() { ready <- a.deviceReady() }()
	close(a.stop)
	if <-ready {
		t.Fatal("deviceReady reported ready after the stop")
	}
}
