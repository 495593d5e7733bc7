package membership

import (
	"hash/fnv"
	"net/netip"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/router"
)

// Routes returns the routes membership and ownership add to the
// configured ones of cfg: other gateways' prefixes over the backbone,
// except the announcements vetAnnouncements refuses (prefixes.go), and
// clients owned elsewhere. The route table calls it under its lock
// (Routes.Reapply), never concurrently with itself.
func (cp *Part) Routes(cfg *config.Config) []router.Route {
	cp.mu.Lock()
	members := make([]cluster.Member, 0, len(cp.members))
	for _, m := range cp.members {
		members = append(members, m)
	}
	cp.mu.Unlock()
	own := make(map[netip.Prefix]bool, len(cfg.Egress.Prefixes))
	anns := make([]announcement, 0, len(cfg.Egress.Prefixes))
	for _, p := range cfg.Egress.Prefixes {
		own[p] = true
		anns = append(anns, announcement{member: cp.self, region: cfg.Node.Region, prefix: p})
	}
	for _, m := range members {
		if m.Self || !m.Alive || !m.Meta.BackboneAddr.IsValid() {
			continue
		}
		for _, p := range m.Meta.Prefixes {
			anns = append(anns, announcement{member: m.Name, region: m.Meta.Region, prefix: p})
		}
	}
	if cp.protected == nil || cp.protected.cfg != cfg {
		cp.protected = newProtectedNets(cfg)
	}
	refused := vetAnnouncements(anns, cp.protected)
	cp.guard.update(refused)
	skip := make(map[announcement]bool, len(refused))
	for _, r := range refused {
		skip[r.announcement] = true
	}
	cands := make(map[netip.Prefix][]cluster.Member)
	for _, m := range members {
		if m.Self || !m.Meta.BackboneAddr.IsValid() {
			continue
		}
		for _, p := range m.Meta.Prefixes {
			if !own[p] && !skip[announcement{member: m.Name, region: m.Meta.Region, prefix: p}] {
				cands[p] = append(cands[p], m)
			}
		}
	}
	var out []router.Route
	for p, ms := range cands {
		if best, ok := choose(p, ms); ok {
			out = append(out, router.Route{Prefix: p, Port: cp.portID, Via: best.Meta.BackboneAddr})
		}
	}
	for _, peer := range cfg.Clients.Peers {
		rec, ok := cp.c.Owner(peer.PublicKey)
		if !ok {
			continue
		}
		if hop := cp.clientHop(rec); hop.Port == cp.portID {
			for _, p := range peer.AllowedIPs {
				out = append(out, router.Route{Prefix: p, Port: hop.Port, Via: hop.Via})
			}
		}
	}
	return out
}

// choose picks the gateway that serves prefix p for everyone: the best by
// rendezvous hashing among the alive and ready ones, so that every gateway
// makes the same choice and a failure moves only the prefixes of the
// gateway that failed. Draining gateways serve only when no ready one is
// left.
func choose(p netip.Prefix, ms []cluster.Member) (cluster.Member, bool) {
	var best cluster.Member
	bestRank, found := -1, false
	var bestScore uint64
	for _, m := range ms {
		rank := 0
		switch {
		case m.Alive && m.Meta.State == cluster.StateReady:
			rank = 3
		case m.Alive:
			rank = 2
		default:
			continue
		}
		h := fnv.New64a()
		h.Write([]byte(p.String()))
		h.Write([]byte{0})
		h.Write([]byte(m.Name))
		score := h.Sum64()
		if rank > bestRank || rank == bestRank && score > bestScore {
			best, bestRank, bestScore, found = m, rank, score, true
		}
	}
	return best, found
}
