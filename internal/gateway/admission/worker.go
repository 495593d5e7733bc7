package admission

import (
	"time"

	"github.com/anyguard/anyguard/device/handshake"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
)

func (a *Admission) work() {
	defer a.wg.Done()
	var in handshake.Initiation
	for {
		// The probe's initiation first: it waits for one queued
		// initiation at most, not for the queue (probe.go).
		select {
		case <-a.stop:
			return
		case p := <-a.probeHeld:
			a.handleProbe(&p, &in)
			continue
		default:
		}
		select {
		case <-a.stop:
			return
		case p := <-a.probeHeld:
			a.handleProbe(&p, &in)
		case h := <-a.queue:
			if !a.deviceReady() {
				return
			}
			if a.tooOld(&h, time.Now()) {
				continue
			}
			a.handle(&h, &in)
		}
	}
}

// deviceReady waits while the device is under load (clients' responses
// to its own initiations, takeovers among them, fill its queue too): an
// initiation released then would get the device's cookie, and its
// client's retry would carry a mac2 that the gateway's check refuses.
// It reports false when the Admission stops.
func (a *Admission) deviceReady() bool {
	for a.dev.UnderLoad() {
		a.deviceBusy.Add(1)
		select {
		case <-a.stop:
			return false
		case <-time.After(deviceLoadPoll):
		}
	}
	return true
}

// deviceLoadPoll is how often the worker looks whether the device is
// still under load.
const deviceLoadPoll = 10 * time.Millisecond

// tooOld reports (and counts) whether h waited longer than maxWait: its
// client has moved on to a new initiation.
func (a *Admission) tooOld(h *heldInitiation, now time.Time) bool {
	if now.UnixNano()-h.at <= int64(maxWait) {
		return false
	}
	a.stale.Add(1)
	return true
}

// handle decides one held initiation: release it to the device (adding
// the client's peer first if need be) or drop it.
func (a *Admission) handle(h *heldInitiation, in *handshake.Initiation) {
	if a.tryFast(h) {
		return
	}
	if err := a.reader.Read(h.msg[:], in); err != nil {
		// Not for this key, or not decryptable: the device would drop it.
		a.unreadable.Add(1)
		return
	}
	client := in.Static
	a.mu.Lock()
	peer, configured := a.index.Peer(client)
	if !configured {
		live := a.dev.HasPeer(client) // the probe, or one set with wg(8)
		a.mu.Unlock()
		if live {
			a.release(h)
			return
		}
		a.unknown.Add(1)
		return
	}
	s, err := a.seenLocked(client)
	if err != nil {
		a.mu.Unlock()
		a.notAuthentic.Add(1)
		return
	}
	a.catchUpLocked(client, s)
	ts, err := in.Authenticate(&s.secret)
	if err != nil {
		a.mu.Unlock()
		a.notAuthentic.Add(1)
		return
	}
	if !ts.After(s.lastTS) {
		a.mu.Unlock()
		a.replays.Add(1)
		return
	}
	s.lastTS = ts
	now := time.Now()
	s.lastInit = now
	err = a.addLocked(peer, s, now)
	if err == nil {
		a.fast.learn(endpointAddr(h.from), client, now)
	}
	a.mu.Unlock()
	if err != nil {
		a.logger.Error("cannot add a connecting client to the device", "client", peer.Name, "err", err)
		return
	}
	if a.sessions != nil {
		// Not a claim yet: the client must first prove its session with
		// data (package recovery). Registered before the release, which
		// the device may answer at once.
		a.sessions.ExpectConfirmation(in.Sender, client, endpointAddr(h.from))
	}
	a.release(h)
}

// release hands h to the device, reporting whether the bind took it.
func (a *Admission) release(h *heldInitiation) bool {
	a.pace()
	if !a.bind.Release(h.msg[:], h.from) {
		return false
	}
	a.accepted.Add(1)
	a.released++
	return true
}

// pace waits while the device has releaseWindow released initiations it
// has not answered, at most releaseStall.
func (a *Admission) pace() {
	b := a.bind
	var since time.Time
	for {
		waiting := int64(a.released + a.answeredBase - b.Answered())
		if waiting < releaseWindow {
			if waiting < 0 { // answers to initiations not released here
				a.answeredBase = b.Answered() - a.released
			}
			return
		}
		now := time.Now()
		if since.IsZero() {
			since = now
		} else if now.Sub(since) >= releaseStall {
			a.answeredBase = b.Answered() - a.released // dropped by the device
			return
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// seenLocked returns the client's record, computing its static-static
// secret the first time (one X25519).
func (a *Admission) seenLocked(client keys.Key) (*clientSeen, error) {
	if s, ok := a.seen[client]; ok {
		return s, nil
	}
	secret, err := a.reader.SharedSecret(client)
	if err != nil {
		return nil, err
	}
	s := &clientSeen{secret: secret}
	a.seen[client] = s
	return s, nil
}

// addLocked makes the configured client a device peer if it is not one.
func (a *Admission) addLocked(peer config.Peer, s *clientSeen, now time.Time) error {
	added, err := a.dev.AddPeer(clientPeer(peer))
	if err != nil {
		return err
	}
	if added {
		a.added.Add(1)
		if s != nil {
			s.added = now
		}
	}
	return nil
}
