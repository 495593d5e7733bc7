package admission

import (
	"net/netip"
	"slices"
	"time"

	"golang.zx2c4.com/wireguard/conn"

	"github.com/anyguard/anyguard/device"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
)

// EnsureLive makes a configured client a device peer (for a takeover,
// which sends to the client). It reports false for an unknown client.
func (a *Admission) EnsureLive(client keys.Key) (config.Peer, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	peer, ok := a.index.Peer(client)
	if !ok {
		return peer, false, nil
	}
	s := a.seen[client]
	if s == nil {
		// Keep the addition time, so the sweep leaves the peer alone
		// until the client had time to answer.
		s = &clientSeen{}
		if secret, err := a.reader.SharedSecret(client); err == nil {
			s.secret = secret
			a.seen[client] = s
		}
	}
	return peer, true, a.addLocked(peer, s, time.Now())
}

// Remove takes clients off the device, counting them under reason.
func (a *Admission) Remove(ks []keys.Key, reason Reason) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.removeLocked(ks, reason)
}

func (a *Admission) removeLocked(ks []keys.Key, reason Reason) {
	ks = slices.DeleteFunc(ks, a.isReserved) // never the probe
	n, err := a.dev.RemovePeers(ks)
	for _, k := range ks {
		// Even on error: a fast entry of a peer that may be gone is unsafe.
		a.fast.forget(k)
	}
	if err != nil {
		a.logger.Error("cannot remove peers from the client device", "reason", reason, "err", err)
		return
	}
	if a.sessions != nil {
		for _, k := range ks {
			a.sessions.Lost(k)
		}
	}
	switch reason {
	case RemovedIdle:
		a.removedIdle.Add(uint64(n))
	case RemovedReload:
		a.removedReload.Add(uint64(n))
	case RemovedMoved:
		a.removedMoved.Add(uint64(n))
	}
}

func (a *Admission) sweepLoop() {
	defer a.wg.Done()
	every := min(max(a.idle/4, 10*time.Millisecond), 30*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-a.stop:
			return
		case now := <-t.C:
			a.sweep(now)
		}
	}
}

// sweep removes the peers idle for longer than the idle timeout: no
// handshake, initiation or addition since. The device's status costs time
// in proportion to the live peers only.
func (a *Admission) sweep(now time.Time) {
	st, err := a.dev.Status()
	if err != nil {
		return
	}
	var idle []keys.Key
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, p := range st {
		if a.isReserved(p.PublicKey) {
			continue
		}
		last := p.LastHandshake
		if s := a.seen[p.PublicKey]; s != nil {
			last = latest(last, s.lastInit, s.added)
		}
		if now.Sub(last) > a.idle {
			idle = append(idle, p.PublicKey)
		}
	}
	if len(idle) > 0 {
		a.removeLocked(idle, RemovedIdle)
		a.logger.Debug("removed idle peers", "peers", len(idle))
	}
}

// Reindex installs a new client index (install swaps what Index reads)
// and brings the device's live client peers in line with it: peers of
// clients no longer configured go, peers whose configuration changed are
// updated in place. install runs under the admission lock, so no worker
// decision straddles the swap.
func (a *Admission) Reindex(install func()) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	install()
	return a.reindexLocked()
}

func (a *Admission) reindexLocked() error {
	var gone []keys.Key
	var changed []device.Peer
	for _, k := range a.dev.PeerKeys() {
		if a.isReserved(k) {
			continue
		}
		p, ok := a.index.Peer(k)
		if !ok {
			gone = append(gone, k)
			continue
		}
		changed = append(changed, clientPeer(p))
	}
	for k := range a.seen {
		if _, ok := a.index.Peer(k); !ok {
			delete(a.seen, k)
			a.fast.remove(k)
		}
	}
	a.removeLocked(gone, RemovedReload)
	return a.dev.UpdatePeers(changed)
}

// clientPeer is the device peer of a configured client.
func clientPeer(p config.Peer) device.Peer {
	return device.Peer{PublicKey: p.PublicKey, PresharedKey: p.PresharedKey, AllowedIPs: p.AllowedIPs}
}

func latest(ts ...time.Time) time.Time {
	var out time.Time
	for _, t := range ts {
		if t.After(out) {
			out = t
		}
	}
	return out
}

// endpointAddr returns the address and port of a bind endpoint.
func endpointAddr(from conn.Endpoint) netip.AddrPort {
	if ep, ok := from.(*conn.StdNetEndpoint); ok {
		return ep.AddrPort
	}
	if from == nil {
		return netip.AddrPort{}
	}
	ap, _ := netip.ParseAddrPort(from.DstToString())
	return ap
}

// Stats are the just-in-time peer counters.
type Stats struct {
	Configured, Live int
	Added            uint64
	Removed          map[string]uint64 // by reason: idle, reload, moved
	Initiations      map[string]uint64 // by result
	// AcceptedUnread counts the accepted initiations of live peers that
	// were released without a read (fast.go); they are in
	// Initiations["accepted"] too.
	AcceptedUnread uint64
	// ProbeReleased counts the probe's initiations released past the
	// queue (probe.go); they are in Initiations["accepted"] too.
	ProbeReleased uint64
	// DeviceLoadWaits counts the worker's 10 ms waits for the device to
	// leave its own under-load state (worker.go).
	DeviceLoadWaits uint64
}

func (a *Admission) probeLive() int {
	if a.dev.HasPeer(a.reserved) {
		return 1
	}
	return 0
}

// Stats returns the counts of configured clients and live peers and the
// counters.
func (a *Admission) Stats() Stats {
	return Stats{
		Configured:      a.index.Len(),
		Live:            a.dev.PeerCount() - a.probeLive(),
		Added:           a.added.Load(),
		AcceptedUnread:  a.acceptedUnread.Load(),
		ProbeReleased:   a.probeReleased.Load(),
		DeviceLoadWaits: a.deviceBusy.Load(),
		Removed: map[string]uint64{
			string(RemovedIdle): a.removedIdle.Load(), string(RemovedReload): a.removedReload.Load(), string(RemovedMoved): a.removedMoved.Load(),
		},
		Initiations: map[string]uint64{
			"accepted": a.accepted.Load(), "unknown_key": a.unknown.Load(), "not_authentic": a.notAuthentic.Load(),
			"replay": a.replays.Load(), "unreadable": a.unreadable.Load(), "overload": a.overload.Load(),
			"cookie_sent": a.cookiesSent.Load(), "rate_limited": a.rateLimited.Load(),
			"stale": a.stale.Load(),
		},
	}
}
