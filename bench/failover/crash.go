package failover

import (
	"errors"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// mutedTransport is a gateway's gossip transport that a crash silences:
// once muted, what it sends is lost and what it dials fails at once, so a
// crashed gateway's leave never reaches the others and they find out by
// failure detection, as after a real crash.
type mutedTransport struct {
	*memberlist.NetTransport
	muted atomic.Bool
}

func newMutedTransport() (*mutedTransport, error) {
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}})
	if err != nil {
		return nil, err
	}
	return &mutedTransport{NetTransport: nt}, nil
}

var errMuted = errors.New("gossip muted: the gateway crashed")

func (t *mutedTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	if t.muted.Load() {
		return time.Now(), nil // lost on the way
	}
	return t.NetTransport.WriteTo(b, addr)
}

func (t *mutedTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	return t.WriteTo(b, a.Addr)
}

func (t *mutedTransport) DialTimeout(addr string, d time.Duration) (net.Conn, error) {
	if t.muted.Load() {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: errMuted}
	}
	return t.NetTransport.DialTimeout(addr, d)
}

func (t *mutedTransport) DialAddressTimeout(a memberlist.Address, d time.Duration) (net.Conn, error) {
	return t.DialTimeout(a.Addr, d)
}
