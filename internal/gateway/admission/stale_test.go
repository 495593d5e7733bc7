package admission

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/testwait"
)

// TestWorkerSkipsStale: an initiation that waited longer than maxWait is
// dropped unread and counted stale; one that waited less, even only just,
// is read (here: unreadable, as it is no real initiation).
func TestWorkerSkipsStale(t *testing.T) {
	a := New(Config{PrivateKey: keys.Key{9}, Device: &loadedDevice{}})
	from := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("192.0.2.1:51820")}
	now := time.Now()
	for _, age := range []time.Duration{maxWait + time.Second, maxWait - 100*time.Millisecond, 0} {
		h := heldInitiation{from: from, at: now.Add(-age).UnixNano()}
		h.msg[0] = 1
		a.queue <- h
	}
	a.wg.Add(1)
	go a.work()
	defer func() { close(a.stop); a.wg.Wait() }()
	testwait.Until(t, 2*time.Second, "the worker to empty the queue", func() bool {
		return len(a.queue) == 0 && a.stale.Load()+a.unreadable.Load() == 3
	})
	if s, u := a.stale.Load(), a.unreadable.Load(); s != 1 || u != 2 {
		t.Fatalf("stale %d, read %d; want 1 and 2", s, u)
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
