package gateway

import "time"

// CrashForTest stops the gateway without leaving the cluster, as a crash
// would: the others find out by failure detection.
func (g *Gateway) CrashForTest() { g.close(false) }

// BackboneSessionsForTest returns how many backbone peers the gateway has
// completed a handshake with.
func (g *Gateway) BackboneSessionsForTest() int {
	st, err := g.members.BackboneStatus()
	if err != nil {
		return -1
	}
	n := 0
	for _, p := range st {
		if !p.LastHandshake.IsZero() {
			n++
		}
	}
	return n
}

// UnderLoadForTest puts the client socket's initiation check under load
// for d, as a handshake flood would: initiations need a cookie.
func (g *Gateway) UnderLoadForTest(d time.Duration) { g.admission.ForceUnderLoad(d) }

// ProbeRehandshakeForTest makes the data-path probe start its next round
// with a new handshake.
func (g *Gateway) ProbeRehandshakeForTest() { g.probe.Rehandshake() }

// RaceEnabledForTest reports whether the race detector is on (tests
// that load the machine scale down).
const RaceEnabledForTest = raceEnabled
