package main

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/anyguard/anyguard/internal/config"
)

// addrRange is the addresses [first, last] of a prefix in use, and who
// uses it.
type addrRange struct {
	first, last netip.Addr
	owner       string
}

// clientNetworks returns the client networks of cfg: clients.address
// masked, one per family.
func clientNetworks(cfg *config.Config) []netip.Prefix {
	var nets []netip.Prefix
	for _, a := range cfg.Clients.Address {
		nets = append(nets, a.Masked())
	}
	return nets
}

// usedRanges returns the ranges of net in use, sorted: the gateway's own
// address and every client's allowed IPs that overlap net.
func usedRanges(cfg *config.Config, net netip.Prefix) []addrRange {
	var rs []addrRange
	for _, a := range cfg.Clients.Address {
		if net.Contains(a.Addr()) {
			rs = append(rs, addrRange{a.Addr(), a.Addr(), "the gateway"})
		}
	}
	for _, p := range cfg.Clients.Peers {
		for _, ip := range p.AllowedIPs {
			if ip.Overlaps(net) {
				rs = append(rs, addrRange{ip.Masked().Addr(), lastOf(ip), p.Name})
			}
		}
	}
	slices.SortFunc(rs, func(a, b addrRange) int { return a.first.Compare(b.first) })
	return rs
}

// lastOf returns the last address of p.
func lastOf(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// usable returns the first and last address of net a client may have:
// not the network address, nor IPv4's broadcast address.
func usable(net netip.Prefix) (netip.Addr, netip.Addr) {
	first, last := net.Masked().Addr().Next(), lastOf(net)
	if net.Addr().Is4() && net.Bits() < 31 {
		last = last.Prev()
	}
	return first, last
}

// nextFree returns the lowest free address of net, in one pass over the
// sorted used ranges: O(clients) whatever the network's size.
func nextFree(cfg *config.Config, net netip.Prefix) (netip.Addr, error) {
	a, last := usable(net)
	for _, r := range usedRanges(cfg, net) {
		if a.Less(r.first) {
			break
		}
		if !r.last.Less(a) {
			a = r.last.Next()
		}
		if !a.IsValid() {
			break
		}
	}
	if !a.IsValid() || last.Less(a) {
		return netip.Addr{}, fmt.Errorf("the client network %s is full: no free address", net)
	}
	return a, nil
}

// checkFree checks that a is a usable address of net that no client uses.
func checkFree(cfg *config.Config, net netip.Prefix, a netip.Addr) error {
	first, last := usable(net)
	if a.Less(first) || last.Less(a) {
		return fmt.Errorf("--address %s: not a client address of the client network %s (%s to %s)", a, net, first, last)
	}
	for _, r := range usedRanges(cfg, net) {
		if !a.Less(r.first) && !r.last.Less(a) {
			return fmt.Errorf("--address %s: taken by %s", a, r.owner)
		}
	}
	return nil
}

// clientAddresses returns a new client's addresses: one per client
// network, wanted where given, the next free one otherwise.
func clientAddresses(cfg *config.Config, wanted []netip.Addr) ([]netip.Prefix, error) {
	nets := clientNetworks(cfg)
	var out []netip.Prefix
	for _, w := range wanted {
		found := false
		for _, n := range nets {
			if n.Addr().Is4() == w.Is4() {
				found = true
				if err := checkFree(cfg, n, w); err != nil {
					return nil, err
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("--address %s: the client network (clients.address %v) has no such family", w, cfg.Clients.Address)
		}
	}
	for _, n := range nets {
		i := slices.IndexFunc(wanted, func(w netip.Addr) bool { return w.Is4() == n.Addr().Is4() })
		var a netip.Addr
		if i >= 0 {
			a = wanted[i]
		} else {
			var err error
			if a, err = nextFree(cfg, n); err != nil {
				return nil, err
			}
		}
		out = append(out, netip.PrefixFrom(a, a.BitLen()))
	}
	return out, nil
}
