package health

import (
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"
)

// tcpPort listens only while the State is ready: a TCP health check's
// connection is accepted (and closed at once) when ready and refused when
// not, since a listener that accepted while unready would pass any check
// that only completes the handshake.
type tcpPort struct {
	addr  *net.TCPAddr // resolved on the first bind, reused to re-open
	state *State
	log   *slog.Logger

	mu     sync.Mutex
	ln     *net.TCPListener // nil while closed
	closed bool

	stop chan struct{}
	wg   sync.WaitGroup
}

// newTCPPort binds addr once, so a bad address or a taken port fails at
// start, then follows the State.
func newTCPPort(addr string, st *State, log *slog.Logger) (*tcpPort, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	t := &tcpPort{addr: ln.Addr().(*net.TCPAddr), state: st, log: log, stop: make(chan struct{})}
	t.ln = ln.(*net.TCPListener)
	t.wg.Add(2)
	go t.accept(t.ln)
	go t.follow()
	return t, nil
}

// Addr is the port's address.
func (t *tcpPort) Addr() net.Addr { return t.addr }

// Listening reports whether the port accepts connections now.
func (t *tcpPort) Listening() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ln != nil
}

// follow opens and closes the listener as readiness changes. When the port
// cannot be re-opened (taken meanwhile), it retries every second.
func (t *tcpPort) follow() {
	defer t.wg.Done()
	retry := time.NewTicker(time.Second)
	defer retry.Stop()
	for {
		changed := t.state.Changed()
		t.sync(t.state.Ready())
		select {
		case <-t.stop:
			return
		case <-changed:
		case <-retry.C:
		}
	}
}

func (t *tcpPort) sync(ready bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.closed:
	case ready && t.ln == nil:
		ln, err := net.ListenTCP("tcp", t.addr)
		if err != nil {
			t.log.Error("TCP health port: cannot listen while ready", "tcp_listen", t.addr.String(), "err", err)
			return
		}
		t.ln = ln
		t.wg.Add(1)
		go t.accept(ln)
		t.log.Info("TCP health port open", "tcp_listen", t.addr.String())
	case !ready && t.ln != nil:
		t.ln.Close()
		t.ln = nil
		t.log.Info("TCP health port closed: not ready", "tcp_listen", t.addr.String())
	}
}

// accept answers each connection by closing it: the handshake is the
// answer.
func (t *tcpPort) accept(ln *net.TCPListener) {
	defer t.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. EMFILE; do not spin
			continue
		}
		c.Close()
	}
}

// Close closes the listener for good and waits for its goroutines.
func (t *tcpPort) Close() {
	t.mu.Lock()
	if !t.closed {
		t.closed = true
		close(t.stop)
		if t.ln != nil {
			t.ln.Close()
			t.ln = nil
		}
	}
	t.mu.Unlock()
	t.wg.Wait()
}
