package membership

import (
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway/admission"
	"github.com/anyguard/anyguard/internal/keys"
	"github.com/anyguard/anyguard/router"
)

// onOwner follows one client's ownership: its routes point at the new
// owner, and a gateway that lost the client drops its session at once so
// that it sends the client nothing that would pull it back; both after
// Owners.HoldSession when the client's datagrams are being relayed to it
// (the drain relay).
func (cp *Part) onOwner(old, rec cluster.Record) {
	if !cp.started.Load() {
		return
	}
	peer, ok := cp.index.Peer(rec.Client)
	if !ok {
		return
	}
	cp.logger.Info("client owner changed", "client", peer.Name, "from", ownerName(old.Owner), "to", ownerName(rec.Owner),
		"version", rec.Version, "reason", rec.Reason, "endpoint", rec.Endpoint)
	cp.observer.OwnershipChanged(old, rec)
	if old.Owner != rec.Owner && rec.Owner != cp.self {
		if d := time.Since(rec.Time.Wall()); d >= 0 && d < time.Minute {
			cp.observer.ObserveConvergence(d)
		}
	}
	cp.owners.OwnerChanged(old, rec)
	var hold time.Duration
	if old.Owner == cp.self && rec.Owner != cp.self {
		hold = cp.owners.HoldSession(old, rec)
	}
	if hold > 0 {
		// The client's datagrams are relayed here (the drain relay): its
		// old session is still in use, and packets for it that are on
		// their way here (from the backbone, which split horizon would
		// not send back into it, or the egress) still reach it through
		// this gateway's session. Its routes and session follow the new
		// owner a little later (both look at the table again then).
		time.AfterFunc(hold, func() {
			cp.routeClient(peer, rec)
			cp.resets.push(rec.Client)
		})
		return
	}
	cp.routeClient(peer, rec)
	if old.Owner == cp.self && rec.Owner != cp.self {
		// Not inline: this may run on the device's own receive goroutine
		// of that very peer, which removing the peer waits for.
		cp.resets.push(rec.Client)
	}
}

// routeClient points a client's routes at the owner the table names now
// (deliveries may lag the table; rec stands in for a record it lacks).
func (cp *Part) routeClient(peer config.Peer, rec cluster.Record) {
	select {
	case <-cp.stop:
		return
	default:
	}
	err := cp.table.Patch(func() []router.Route {
		cur, ok := cp.c.Owner(rec.Client)
		if !ok {
			cur = rec
		}
		hop := cp.clientHop(cur)
		routes := make([]router.Route, 0, len(peer.AllowedIPs))
		for _, p := range peer.AllowedIPs {
			routes = append(routes, router.Route{Prefix: p, Port: hop.Port, Via: hop.Via})
		}
		return routes
	})
	if err != nil {
		cp.logger.Error("cannot route client", "client", peer.Name, "err", err)
	}
}

// reset drops the sessions of clients that moved away by removing their
// peers: the device then sends them nothing, and adds each again when the
// client initiates a handshake here. It runs on cp.resets' goroutine, so
// a client may have come back by then: its peer carries the new session
// and stays.
func (cp *Part) reset(ks []keys.Key) {
	cp.dropMoved(cp.c.Table(), ks)
}

// dropMoved removes the peers of the clients in ks that table does not
// (or no longer) say this gateway owns.
func (cp *Part) dropMoved(table interface {
	Get(keys.Key) (cluster.Record, bool)
}, ks []keys.Key) {
	gone := ks[:0]
	for _, k := range ks {
		if rec, ok := table.Get(k); !ok || rec.Owner != cp.self {
			gone = append(gone, k)
		}
	}
	if len(gone) > 0 {
		cp.peers.Remove(gone, admission.RemovedMoved)
	}
}

func ownerName(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

// clientHop is where packets for a client go: to the client device when
// this gateway owns it (or nobody does), else over the backbone to the
// owner, as long as the owner is known. A dead owner keeps its clients
// until the clients reconnect somewhere and that gateway claims them.
func (cp *Part) clientHop(rec cluster.Record) router.Hop {
	local := router.Hop{Port: cp.clientPort}
	if rec.Owner == "" || rec.Owner == cp.self {
		return local
	}
	cp.mu.Lock()
	m, ok := cp.members[rec.Owner]
	cp.mu.Unlock()
	if !ok || !m.Meta.BackboneAddr.IsValid() {
		return local
	}
	return router.Hop{Port: cp.portID, Via: m.Meta.BackboneAddr}
}
