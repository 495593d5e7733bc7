package membership

import (
	"net/netip"
	"slices"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/internal/keys"
)

// backboneKeepalive keeps backbone sessions warm, so the first packet to
// another region never waits for a handshake. Only the gateway with the
// lower backbone key of a pair sets it: a persistent keepalive starts a
// handshake the moment the peer is configured, and two gateways that
// learn of each other at the same moment (start-up, a rejoin) would
// otherwise both initiate; each then answers the other's initiation,
// which discards its own, both responses are refused and the pair has no
// session until wireguard-go's retry 5 s later (seen in the demo as
// requests to another region stalling for 5 s). The higher key answers;
// the lower key's keepalives and rekeys keep the session for both.
//
// The lower key's first initiation is lost when it learns of the pair
// before the higher key does (the higher key's device drops an initiation
// from an unknown peer); so the higher key initiates itself when it has no
// session backboneNudge after adding the peer. That nudge can still cross
// an initiation of the lower key (both learned of the pair half a second
// apart, as after a partition heals), which leaves both without a session
// until the lower key's retry 5 s later; so the higher key looks again every
// backboneRenudge, backboneRenudges times at most, and each time forgets its
// half-done handshake (lifting wireguard-go's REKEY_TIMEOUT) and initiates
// again. The lower key's retry comes at 5 s, far from any of these.
const (
	backboneKeepalive = 10 * time.Second
	backboneNudge     = 500 * time.Millisecond
	backboneRenudge   = time.Second
	backboneRenudges  = 3
)

// onMembers reconfigures the backbone peers and every route that depends
// on membership.
func (cp *Part) onMembers([]cluster.Member) {
	if !cp.started.Load() {
		return
	}
	// Callers race (the cluster's notifier and start-up); each applies
	// the view current when it holds the lock, so the last one wins.
	cp.syncMu.Lock()
	defer cp.syncMu.Unlock()
	ms := cp.c.Members()
	view := make(map[string]cluster.Member, len(ms))
	var peers []device.Peer
	seen := map[netip.Addr]string{cp.addr: cp.self}
	for _, m := range ms {
		view[m.Name] = m
		if m.Self || m.Status == "dead" || m.Status == "left" || !m.Meta.BackboneAddr.IsValid() {
			continue
		}
		if other, dup := seen[m.Meta.BackboneAddr]; dup {
			cp.logger.Error("two gateways derive the same backbone address; ignoring the second", "node", m.Name, "other", other, "addr", m.Meta.BackboneAddr)
			delete(view, m.Name)
			continue
		}
		seen[m.Meta.BackboneAddr] = m.Name
		p := device.Peer{
			PublicKey:  m.Meta.BackboneKey,
			Endpoint:   m.Meta.BackboneEndpoint,
			AllowedIPs: []netip.Prefix{netip.PrefixFrom(m.Meta.BackboneAddr, 32)},
		}
		if cp.pub.Compare(m.Meta.BackboneKey) < 0 {
			p.Keepalive = backboneKeepalive
		}
		peers = append(peers, p)
	}
	slices.SortFunc(peers, func(a, b device.Peer) int { return a.PublicKey.Compare(b.PublicKey) })
	cp.mu.Lock()
	cp.members = view
	cp.mu.Unlock()
	if err := cp.wg.SetPeers(peers); err != nil {
		cp.logger.Error("cannot configure backbone peers", "err", err)
	} else {
		known := make(map[keys.Key]bool, len(peers))
		for _, p := range peers {
			known[p.PublicKey] = true
			if p.Keepalive == 0 && !cp.bbPeers[p.PublicKey] {
				time.AfterFunc(backboneNudge, func() { cp.nudge(p.PublicKey, p.Endpoint, 0) })
			}
		}
		cp.bbPeers = known
	}
	if err := cp.table.Reapply(); err != nil {
		cp.logger.Error("cannot update routes after a membership change", "err", err)
	}
}

// nudge initiates a handshake with a backbone peer that has none yet, and
// looks again backboneRenudge later; renudges counts the looks before this
// one (see backboneKeepalive).
func (cp *Part) nudge(k keys.Key, endpoint netip.AddrPort, renudges int) {
	select {
	case <-cp.stop:
		return
	default:
	}
	st, err := cp.wg.Status()
	if err != nil {
		return
	}
	for _, p := range st {
		if p.PublicKey != k {
			continue
		}
		if !p.LastHandshake.IsZero() || !endpoint.IsValid() {
			return
		}
		cp.logger.Debug("no backbone session yet: initiating", "peer", k.String(), "endpoint", endpoint, "attempt", renudges+1)
		if renudges > 0 {
			cp.wg.ForgetHandshake(k) // a crossed handshake; see backboneKeepalive
		}
		if err := cp.wg.Initiate(k, endpoint); err != nil {
			cp.logger.Debug("backbone handshake not started", "err", err)
		}
		if renudges < backboneRenudges {
			time.AfterFunc(backboneRenudge, func() { cp.nudge(k, endpoint, renudges+1) })
		}
		return
	}
}
