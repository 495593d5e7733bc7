//go:build !linux

package device

import "net/netip"

// TUN is unavailable on this platform.
type TUN struct{}

// OpenTUN returns ErrNoTUN on platforms other than Linux.
func OpenTUN(TUNConfig, ForwardFunc) (*TUN, error) { return nil, ErrNoTUN }

// Deliver implements router.Port.
func (*TUN) Deliver([][]byte, int) error { return ErrNoTUN }

// Close does nothing.
func (*TUN) Close() error { return nil }

// Stopped returns nil: there is never a TUN to stop.
func (*TUN) Stopped() <-chan struct{} { return nil }

// Name returns "".
func (*TUN) Name() string { return "" }

// Link returns the zero LinkState.
func (*TUN) Link() LinkState { return LinkState{} }

// SetRoutes returns ErrNoTUN.
func (*TUN) SetRoutes([]netip.Prefix) error { return ErrNoTUN }
