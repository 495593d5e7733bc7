package membership

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/config"
)

// Announce tells the others this gateway's served prefixes and client-set
// digest after a reload.
func (cp *Part) Announce(cfg *config.Config, digest string) {
	if err := cp.c.SetClients(clientKeys(cfg)); err != nil {
		cp.logger.Error("cannot announce the reloaded client set to the cluster", "err", err)
	}
	m := cp.c.Meta()
	m.Prefixes = cfg.Egress.Prefixes
	m.ClientDigest = digest[:16]
	if err := cp.c.SetMeta(m); err != nil {
		cp.logger.Error("cannot announce the reloaded configuration to the cluster", "err", err)
	}
}

// Check is the readiness check "cluster": joined when join addresses are
// configured, or alone by configuration.
func (cp *Part) Check(context.Context) error {
	if ok, why := cp.ready(); !ok {
		return errors.New(why)
	}
	return nil
}

// clockRecent is how long after the last record refused for a member's
// clock the advisory check "clocks" keeps naming that member.
const clockRecent = 2 * time.Minute

// CheckClocks is the advisory check "clocks": it names the members whose
// ownership records this gateway refused lately because their clock runs
// too far ahead (their claims do not count here until it is fixed).
func (cp *Part) CheckClocks(context.Context) error {
	var bad []string
	for _, r := range cp.c.ClockRefusals() {
		if time.Since(r.Last) < clockRecent {
			bad = append(bad, fmt.Sprintf("%s (%s ahead, %d refused)", r.Node, r.Ahead.Round(time.Second), r.Refused))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("records refused for a clock too far ahead (beyond %s) from: %s", cluster.DefaultMaxClockAhead, strings.Join(bad, ", "))
	}
	return nil
}

// SetState announces this gateway's state to the others.
func (cp *Part) SetState(st cluster.State) {
	m := cp.c.Meta()
	m.State = st
	if err := cp.c.SetMeta(m); err != nil {
		cp.logger.Error("cannot announce state to the cluster", "state", st, "err", err)
		return
	}
	cp.logger.Info("announced state to the cluster", "state", st)
}

// Leave leaves the cluster gracefully, once; the others re-route this
// gateway's prefixes at once instead of waiting for failure detection.
func (cp *Part) Leave() error {
	if !cp.left.CompareAndSwap(false, true) {
		return nil
	}
	return cp.c.Leave(2 * time.Second)
}

// ready reports whether the cluster part can carry traffic: joined when
// join addresses are configured.
func (cp *Part) ready() (bool, string) {
	cp.mu.Lock()
	n := 0
	for _, m := range cp.members {
		if m.Alive {
			n++
		}
	}
	cp.mu.Unlock()
	if cp.joinWanted && n < 2 {
		return false, "not joined: no other gateway reachable"
	}
	return true, fmt.Sprintf("%d gateways alive", n)
}

// Metrics fills in the cluster's part of the gateway's metrics:
// membership, ownership, refused prefixes and gossip counters.
func (cp *Part) Metrics(m *health.Metrics) {
	c := cp.c
	m.Members = map[string]int{"alive": 0, "dead": 0, "left": 0}
	for _, mb := range c.Members() {
		m.Members[mb.Status]++
		if !mb.Self && mb.Alive && mb.Meta.ClientDigest != "" && !strings.HasPrefix(m.ConfigDigest, mb.Meta.ClientDigest) {
			m.ConfigDigestMismatch++
		}
	}
	m.OwnedClients = c.Table().Stats().Owned
	m.PrefixRefusals = cp.guard.countsByReason()
	refused, _ := cp.guard.snapshot()
	m.RefusedPrefixes = len(refused)
	st := c.Stats()
	m.Gossip = map[string]uint64{
		"received": st.MsgsReceived, "bad": st.MsgsBad, "applied": st.RecordsApplied, "relayed": st.Relayed,
		"sent": st.Broadcasts, "send_error": st.FanoutErrors, "repair_sent": st.RepairsSent,
		"push_pull": st.PushPulls, "catch_up": st.CatchUps, "decrypt_error": st.DecryptErrors,
		"reconnect_try": st.ReconnectTries, "reconnected": st.Reconnected, "heal": st.Heals,
	}
	ts := c.Table().Stats()
	m.Gossip["refused_clock"] = ts.RejectedSkew
	m.Gossip["refused_version"] = ts.RejectedVersion
	m.Gossip["refused_unknown_client"] = ts.RejectedUnknown
	m.Gossip["left_released"] = ts.LeftReleased
	m.Gossip["forgotten"] = ts.Forgotten
	m.ClockRefused = make(map[string]uint64)
	for _, r := range c.ClockRefusals() {
		m.ClockRefused[r.Node] = r.Refused
	}
}

// Status fills in the cluster's part of /status: members, regions and
// refused prefixes.
func (cp *Part) Status(st *health.Status) {
	refused, since := cp.guard.snapshot()
	st.Members, st.Regions = clusterStatus(cp.c.Members(), refused)
	for i, r := range refused {
		st.RefusedPrefixes = append(st.RefusedPrefixes, health.RefusedPrefixStatus{
			Member: r.member, Region: r.region, Prefix: r.prefix.String(),
			Reason: r.reason.String(), Detail: r.detail, Since: since[i],
		})
	}
}

// clusterStatus turns the membership into /status members and regions (a
// region's prefixes are those its live members serve, less the refused).
func clusterStatus(ms []cluster.Member, refused []refusal) ([]health.MemberStatus, []health.RegionStatus) {
	skip := make(map[announcement]bool, len(refused))
	for _, r := range refused {
		skip[r.announcement] = true
	}
	var members []health.MemberStatus
	regions := map[string]*health.RegionStatus{}
	for _, m := range ms {
		members = append(members, health.MemberStatus{
			Name: m.Name, Region: m.Meta.Region, Address: m.Addr.String(), State: m.Status, Self: m.Self,
			Ready: m.Meta.State == cluster.StateReady, ConfigDigest: m.Meta.ClientDigest,
		})
		r := regions[m.Meta.Region]
		if r == nil {
			r = &health.RegionStatus{Name: m.Meta.Region}
			regions[m.Meta.Region] = r
		}
		if !m.Alive {
			continue
		}
		r.Members++
		for _, p := range m.Meta.Prefixes {
			if skip[announcement{member: m.Name, region: m.Meta.Region, prefix: p}] {
				continue
			}
			if s := p.String(); !slices.Contains(r.Prefixes, s) {
				r.Prefixes = append(r.Prefixes, s)
			}
		}
	}
	slices.SortFunc(members, func(a, b health.MemberStatus) int { return strings.Compare(a.Name, b.Name) })
	out := make([]health.RegionStatus, 0, len(regions))
	for _, r := range regions {
		slices.Sort(r.Prefixes)
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b health.RegionStatus) int { return strings.Compare(a.Name, b.Name) })
	return members, out
}
