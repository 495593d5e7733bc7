package device

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"golang.zx2c4.com/wireguard/ipc"
)

// UAPIHandler serves one UAPI connection until the client is done with it.
// *WireGuard is one, and so is wireguard-go's *device.Device.
type UAPIHandler interface {
	IpcHandle(net.Conn)
}

// UAPI serves the WireGuard cross-platform UAPI for an embedded device on
// /var/run/wireguard/NAME.sock, so that stock `wg show NAME` and `wg set
// NAME ...` work against it. It is the one accept loop of the module: the
// gateway and `anyguard interface` both use it.
type UAPI struct {
	l    net.Listener
	wg   sync.WaitGroup
	done chan struct{}
	err  error // why accepting stopped; written before done is closed

	mu     sync.Mutex
	conns  map[net.Conn]struct{} // being served
	closed bool
}

// ServeUAPI opens the socket for name and serves h on it, one goroutine per
// connection, until Close or until the socket file is removed. It refuses a
// name whose socket another live process is serving. When logger is not
// nil, accepting stopped for any reason but Close is logged as a warning.
func ServeUAPI(name string, h UAPIHandler, logger *slog.Logger) (*UAPI, error) {
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		return nil, fmt.Errorf("open UAPI socket %s: %w", name, err)
	}
	l, err := ipc.UAPIListen(name, f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("listen on UAPI socket %s: %w", name, err)
	}
	u := &UAPI{l: l, done: make(chan struct{}), conns: make(map[net.Conn]struct{})}
	u.wg.Add(1)
	go u.accept(name, h, logger)
	return u, nil
}

func (u *UAPI) accept(name string, h UAPIHandler, logger *slog.Logger) {
	defer u.wg.Done()
	for {
		c, err := u.l.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) && logger != nil {
				logger.Warn("UAPI listener stopped", "device", name, "err", err)
			}
			u.err = err
			close(u.done)
			return
		}
		if !u.track(c) {
			c.Close()
			continue
		}
		u.wg.Add(1)
		go func() {
			defer u.wg.Done()
			defer u.untrack(c)
			h.IpcHandle(c)
		}()
	}
}

func (u *UAPI) track(c net.Conn) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return false
	}
	u.conns[c] = struct{}{}
	return true
}

func (u *UAPI) untrack(c net.Conn) {
	u.mu.Lock()
	delete(u.conns, c)
	u.mu.Unlock()
	c.Close()
}

// Done is closed when the UAPI stops accepting connections: after Close,
// or when its socket file was removed (which is how `anyguard interface`
// is told to stop, as wireguard-go is).
func (u *UAPI) Done() <-chan struct{} { return u.done }

// Err returns why accepting stopped, or nil while Done is open. After the
// socket file was removed it is whatever wireguard-go's watch on the file
// reported (on Linux, EINVAL from reading the inotify event, or
// fs.ErrNotExist).
func (u *UAPI) Err() error {
	select {
	case <-u.done:
		return u.err
	default:
		return nil
	}
}

// Close removes the socket, closes the connections being served and waits
// for their goroutines.
func (u *UAPI) Close() error {
	err := u.l.Close()
	u.mu.Lock()
	u.closed = true
	for c := range u.conns {
		c.Close()
	}
	u.mu.Unlock()
	u.wg.Wait()
	return err
}
