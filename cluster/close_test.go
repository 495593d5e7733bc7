package cluster

import (
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestCloseStopsReconnecting: a member that went missing at an address
// that takes connections and never answers is joined again and again, and
// Close stops every goroutine the gateway started, without waiting for
// the join in flight to time out.
func TestCloseStopsReconnecting(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and say nothing
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	before := runtime.NumGoroutine()
	a := startNode(t, "a", nil, testSecret, 0, nil)
	silent := netip.MustParseAddrPort(ln.Addr().String())
	a.memberSeen("silent", silent, true, false)
	a.memberSeen("silent", silent, false, false) // went missing
	testwait.Until(t, 5*time.Second, "a join in flight", func() bool { return a.Stats().ReconnectTries >= 1 })
	start := time.Now()
	a.Close()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %s: it waited for the join in flight", d)
	}
	testwait.Until(t, 10*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
