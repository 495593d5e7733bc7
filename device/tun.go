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

	// StartDown leaves the interface down once configured, as wireguard-go
	// creates its interfaces; an operator brings it up with ip(8).
	StartDown bool
	// OnLink, if set, is called with the interface's state whenever its
	// name, index, flags, MTU or namespace change, in whatever network
	// namespace the interface is by then (not for the state OpenTUN leaves
	// it in, which TUN.Link returns from the start). It is called from one
	// goroutine, in order, never after Close returns; it should not block
	// for long.
	OnLink func(LinkState)
}

// LinkState is the TUN interface as the kernel last reported it.
type LinkState struct {
	Name    string // current name: renames are followed
	Index   int    // interface index in its current network namespace
	Up      bool   // administratively up (IFF_UP)
	Running bool   // up and carrying packets (IFF_RUNNING): what wireguard-go calls up
	MTU     int
	// Netns identifies the interface's current network namespace (the
	// namespace file's inode number); it changes when the interface is
	// moved with `ip link set NAME netns NS`.
	Netns uint64
}

// ErrTUNExists is returned when the TUN interface name is already taken.
var ErrTUNExists = errors.New("network interface already exists")

// ErrNoTUN is returned where the platform has no multi-queue TUN support.
var ErrNoTUN = errors.New("TUN egress is only supported on Linux")
