package device

import (
	"errors"
	"log/slog"
	"net/netip"
)

// TUNConfig configures the kernel TUN egress.
type TUNConfig struct {
	Name      string         // interface name, at most 15 bytes; must not exist yet
	Queues    int            // number of queues (and reader goroutines); 0: one per CPU
	MTU       int            // interface MTU
	Addresses []netip.Prefix // the gateway's addresses, with the client network's prefix length
	Routes    []netip.Prefix // further prefixes routed into the TUN (client addresses outside Addresses)
	Logger    *slog.Logger
}

// ErrTUNExists is returned when the TUN interface name is already taken.
var ErrTUNExists = errors.New("network interface already exists")

// ErrNoTUN is returned where the platform has no multi-queue TUN support.
var ErrNoTUN = errors.New("TUN egress is only supported on Linux")
