//go:build linux

package e2e

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anyguard/anyguard/cluster"
	"github.com/anyguard/anyguard/internal/keys"
)

// The clock-skew scenario needs a gossip member whose wall clock runs
// ahead. The gateway has no option for that, and adding one to the
// product for a test would be a knob nobody else should turn; a gateway's
// clock cannot be moved alone either (there is no per-process clock
// namespace for CLOCK_REALTIME, and moving the host's clock would move
// every gateway's). So the test binary re-executes itself in a namespace
// of its own and runs the cluster package there, exactly as the gateway
// does (same profile, gossip key, client set, real memberlist over real
// UDP and TCP), with cluster.Config.Now ahead by skewAhead: a member that
// joins, gossips and claims alice every second with timestamps 10 minutes
// in the future. It carries no traffic (no backbone, no prefixes), which
// is all the scenario needs of it.

// skewChildEnv names, in the environment of a re-executed test binary,
// what TestMain runs instead of the tests.
const skewChildEnv = "ANYGUARD_E2E_CHILD_SKEW"

// skewAhead is how far the skewed member's clock runs ahead.
const skewAhead = 10 * time.Minute

// skewMember is the configuration of the child, passed in its environment.
type skewMember struct {
	Name      string
	Bind      string // gossip address
	Join      []string
	KeyFile   string // the fleet's gossip key
	ClientPub string // alice
	Ahead     time.Duration
}

func (m skewMember) env() []string {
	return []string{
		skewChildEnv + "=1",
		"SKEW_NAME=" + m.Name, "SKEW_BIND=" + m.Bind, "SKEW_JOIN=" + strings.Join(m.Join, ","),
		"SKEW_KEY_FILE=" + m.KeyFile, "SKEW_CLIENT=" + m.ClientPub, "SKEW_AHEAD=" + m.Ahead.String(),
	}
}

// startSkewMember runs the skewed member in ns until t ends (or it is
// stopped: SIGTERM makes it leave the cluster).
func startSkewMember(t testing.TB, ns *netns, m skewMember) *proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return startProc(t, "skewed-member-"+m.Name, m.env(), ns.Command(exe)...)
}

// runSkewMember is the child's main: it returns the exit code.
func runSkewMember() int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := skewMemberMain(logger); err != nil {
		logger.Error("skewed member failed", "err", err)
		return 1
	}
	return 0
}

func skewMemberMain(logger *slog.Logger) error {
	m := skewMember{
		Name: os.Getenv("SKEW_NAME"), Bind: os.Getenv("SKEW_BIND"), Join: strings.Split(os.Getenv("SKEW_JOIN"), ","),
		KeyFile: os.Getenv("SKEW_KEY_FILE"), ClientPub: os.Getenv("SKEW_CLIENT"),
	}
	ahead, err := time.ParseDuration(os.Getenv("SKEW_AHEAD"))
	if err != nil {
		return fmt.Errorf("SKEW_AHEAD: %w", err)
	}
	bind, err := netip.ParseAddrPort(m.Bind)
	if err != nil {
		return fmt.Errorf("SKEW_BIND: %w", err)
	}
	secret, err := keys.ReadFile(m.KeyFile)
	if err != nil {
		return fmt.Errorf("gossip key: %w", err)
	}
	alice, err := keys.Parse(m.ClientPub)
	if err != nil {
		return fmt.Errorf("SKEW_CLIENT: %w", err)
	}
	c, err := cluster.New(cluster.Config{
		Name: m.Name, Bind: bind, Advertise: bind, Join: m.Join, SecretKey: secret[:],
		Profile: cluster.ProfileLAN, Meta: cluster.Meta{Region: skewRegion, State: cluster.StateReady},
		Clients: []keys.Key{alice}, Logger: logger,
		Now: func() time.Time { return time.Now().Add(ahead) },
	})
	if err != nil {
		return err
	}
	defer c.Close()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for port := uint16(1); ; port++ {
		select {
		case <-sigs:
			logger.Info("leaving")
			return c.Leave(2 * time.Second)
		case <-tick.C:
		}
		// A new endpoint every time, so that every claim changes the
		// record and is gossiped, with this member's clock in it.
		r, ok := c.Claim(alice, netip.AddrPortFrom(bind.Addr(), port), cluster.ReasonData)
		logger.Info("claimed alice", "changed", ok, "version", r.Version, "members", len(c.Members()))
	}
}
