package device

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"golang.zx2c4.com/wireguard/ipc"
)

// UAPI serves the WireGuard cross-platform UAPI for an embedded device on
// /var/run/wireguard/NAME.sock, so that stock `wg show NAME` and `wg set
// NAME ...` work against it.
type UAPI struct {
	l  net.Listener
	wg sync.WaitGroup
}

// ServeUAPI opens the socket for name and serves w on it until Close. It
// refuses a name whose socket another live process is serving.
func ServeUAPI(name string, w *WireGuard, logger *slog.Logger) (*UAPI, error) {
	f, err := ipc.UAPIOpen(name)
	if err != nil {
		return nil, fmt.Errorf("open UAPI socket %s: %w", name, err)
	}
	l, err := ipc.UAPIListen(name, f)
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("listen on UAPI socket %s: %w", name, err)
	}
	u := &UAPI{l: l}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) && logger != nil {
					logger.Warn("UAPI listener stopped", "device", name, "err", err)
				}
				return
			}
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				w.Device().IpcHandle(c)
			}()
		}
	}()
	return u, nil
}

// Close removes the socket and waits for the connections being served.
func (u *UAPI) Close() error {
	err := u.l.Close()
	u.wg.Wait()
	return err
}
