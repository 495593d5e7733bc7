package admission

import (
	"net/netip"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/internal/testwait"
)

// TestProbeBypass: under load, the probe's real initiation from the
// probe's own endpoint is released at once, with no cookie demanded. The
// same initiation from any other source (another port, another loopback
// address) gets the ordinary treatment, a cookie reply; another key's
// initiation from the probe's endpoint is read, refused and not released;
// and a second one from there within probeGap goes the ordinary way.
func TestProbeBypass(t *testing.T) {
	gwKey, _ := keys.Generate()
	probeKey, _ := keys.Generate()
	alice, _ := keys.Generate()
	index := mapIndex{alice.Public(): {Name: "alice", PublicKey: alice.Public(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.99.0.2/32")}}}
	dev := newClientDevice(t, gwKey)
	if _, err := dev.AddPeer(device.Peer{PublicKey: probeKey.Public(), AllowedIPs: []netip.Prefix{netip.MustParsePrefix("192.0.0.254/32")}}); err != nil {
		t.Fatal(err)
	}
	probeMsg := captureInitiation(t, probeKey, gwKey.Public())
	aliceMsg := captureInitiation(t, alice, gwKey.Public())
	probeEP := netip.MustParseAddrPort("127.0.0.1:40001")
	a := New(Config{
		PrivateKey: gwKey, Reserved: probeKey.Public(), Index: index, Device: dev,
		Bind: dev.Bind(), Reply: dev.Bind().Bind,
		ProbeEndpoint: func() netip.AddrPort { return probeEP },
	})
	a.Start()
	defer a.Close()
	a.ForceUnderLoad(time.Minute)
	ep := func(s string) conn.Endpoint { return &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort(s)} }

	// Spoofed sources: the probe's key, not its endpoint.
	for i, from := range []string{"127.0.0.1:40002", "127.0.0.2:40001", "192.0.2.1:40001"} {
		a.onInitiation(probeMsg, ep(from))
		if st := a.Stats(); st.Initiations["cookie_sent"] != uint64(i+1) || st.ProbeReleased != 0 || st.Initiations["accepted"] != 0 {
			t.Fatalf("probe's initiation from %s: %+v", from, st)
		}
	}

	// Another key from the probe's endpoint: read, refused, not released.
	a.onInitiation(aliceMsg, ep(probeEP.String()))
	testwait.Until(t, 2*time.Second, "alice's initiation from the probe's endpoint to be refused", func() bool {
		return a.Stats().Initiations["not_authentic"] == 1
	})
	if st := a.Stats(); st.Initiations["accepted"] != 0 || st.Added != 0 || dev.HasPeer(alice.Public()) {
		t.Fatalf("alice's initiation from the probe's endpoint was admitted: %+v", st)
	}
	// Within probeGap of that one, the next from there goes the ordinary
	// way (under load: a cookie).
	a.onInitiation(probeMsg, ep(probeEP.String()))
	if st := a.Stats(); st.Initiations["cookie_sent"] != 4 || st.ProbeReleased != 0 {
		t.Fatalf("second initiation within probeGap: %+v", st)
	}

	// The probe itself, once probeGap has passed: released, no cookie.
	time.Sleep(probeGap)
	answered := dev.Bind().Answered()
	a.onInitiation(probeMsg, ep(probeEP.String()))
	testwait.Until(t, 2*time.Second, "the probe's initiation to be released", func() bool {
		return a.Stats().ProbeReleased == 1
	})
	testwait.Until(t, 2*time.Second, "the device to answer the probe", func() bool {
		return dev.Bind().Answered() > answered
	})
	st := a.Stats()
	if st.Initiations["cookie_sent"] != 4 || st.Initiations["accepted"] != 1 {
		t.Fatalf("after the probe's initiation: %+v", st)
	}
	if bs := dev.BindStats(); bs.SentResponses != 1 || bs.SentCookieReplies != 0 {
		t.Fatalf("the device answered with %d responses and %d cookies; want 1 and 0", bs.SentResponses, bs.SentCookieReplies)
	}
}

// TestProbeBypassNeedsEndpoint: with no probe endpoint known yet (or
// none configured) nothing is held apart.
func TestProbeBypassNeedsEndpoint(t *testing.T) {
	msg := make([]byte, 148)
	msg[0] = 1
	from := &conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:40001")}
	for _, fn := range []func() netip.AddrPort{nil, func() netip.AddrPort { return netip.AddrPort{} }} {
		a := New(Config{PrivateKey: keys.Key{9}, ProbeEndpoint: fn})
		if a.holdProbe(msg, from, time.Now()) || a.holdProbe(msg, nil, time.Now()) {
			t.Fatal("held apart with no probe endpoint")
		}
	}
}

// TestHookNoAllocs: holding an initiation back costs the receive
// goroutine no allocation, with the probe's endpoint known, both for an
// ordinary source and for the probe's own (held apart).
func TestHookNoAllocs(t *testing.T) {
	probeEP := netip.MustParseAddrPort("127.0.0.1:1")
	gwKey, _ := keys.Generate()
	probeKey, _ := keys.Generate()
	msg := captureInitiation(t, probeKey, gwKey.Public()) // a valid mac1: held apart
	a := New(Config{PrivateKey: gwKey, ProbeEndpoint: func() netip.AddrPort { return probeEP }})
	for _, from := range []conn.Endpoint{
		&conn.StdNetEndpoint{AddrPort: netip.MustParseAddrPort("127.0.0.1:2")},
		&conn.StdNetEndpoint{AddrPort: probeEP},
	} {
		var queued, held int
		allocs := testing.AllocsPerRun(1000, func() {
			a.probeLast.Store(0) // never within probeGap of the last
			a.onInitiation(msg, from)
			select {
			case <-a.queue:
				queued++
			case <-a.probeHeld:
				held++
			default:
			}
		})
		if allocs != 0 {
			t.Fatalf("from %s: %v allocations per initiation", from.DstToString(), allocs)
		}
		if queued+held < 1000 || (held > 0) != (from.DstToString() == probeEP.String()) {
			t.Fatalf("from %s: %d queued, %d held apart", from.DstToString(), queued, held)
		}
	}
}
