package device

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anyguard/anyguard/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/tun"
)

// tunOffset is the headroom TUN queues read at: the virtio-net header needs
// 10 bytes, and 16 matches what wireguard-go's devices use.
const tunOffset = 16

// TUN is a Linux multi-queue TUN interface: each queue is its own file
// descriptor with IFF_VNET_HDR offloads (TSO/GSO and checksum), read by its
// own goroutine, and packets written back are spread over the queues by
// flow so that each flow stays in order.
type TUN struct {
	name    string
	queues  []tun.Device
	forward ForwardFunc
	logger  *slog.Logger
	wg      sync.WaitGroup
	closed  atomic.Bool
	done    chan struct{} // closed by Close: stops the link watcher
	once    sync.Once
	vnetHdr bool

	onLink func(LinkState)
	link   atomic.Pointer[LinkState] // as last reported; written by the watcher only

	readErrors atomic.Uint64
	lastLog    atomic.Int64
	running    atomic.Int32  // readers still reading
	stopped    chan struct{} // closed when the last reader stops

	routesMu sync.Mutex
	routes   map[netip.Prefix]bool // kernel routes we added
}

// OpenTUN creates the interface, configures its MTU, addresses and routes
// through netlink, brings it up (unless cfg.StartDown) and starts one reader
// per queue, which hand packets to forward, and a watcher that follows the
// interface's state wherever it goes (cfg.OnLink). On error nothing is left
// behind.
func OpenTUN(cfg TUNConfig, forward ForwardFunc) (_ *TUN, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	n := cfg.Queues
	if n <= 0 {
		n = runtime.NumCPU()
	}
	if _, err := netlink.LinkByName(cfg.Name); err == nil {
		return nil, fmt.Errorf("create TUN %s: %w", cfg.Name, ErrTUNExists)
	}
	t := &TUN{name: cfg.Name, forward: forward, logger: cfg.Logger, routes: make(map[netip.Prefix]bool),
		done: make(chan struct{}), onLink: cfg.OnLink}
	defer func() {
		if err != nil {
			for _, q := range t.queues {
				q.Close()
			}
		}
	}()
	for i := range n {
		q, vnet, err := openQueue(cfg.Name)
		if err != nil {
			return nil, fmt.Errorf("create TUN %s queue %d: %w", cfg.Name, i, err)
		}
		t.queues = append(t.queues, q)
		t.vnetHdr = vnet
	}
	if err := configureLink(cfg); err != nil {
		return nil, fmt.Errorf("configure TUN %s: %w", cfg.Name, err)
	}
	if err := t.SetRoutes(cfg.Routes); err != nil {
		return nil, fmt.Errorf("configure TUN %s: %w", cfg.Name, err)
	}
	// The interface is where we made it, in this thread's namespace: read
	// it there, without setns (see inNetns).
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return nil, fmt.Errorf("read TUN %s: %w", cfg.Name, err)
	}
	here, err := netnsOf("/proc/thread-self/ns/net")
	if err != nil {
		return nil, fmt.Errorf("read TUN %s: %w", cfg.Name, err)
	}
	st := linkState(link.Attrs(), link.Attrs().RawFlags, here)
	t.link.Store(&st)
	t.stopped = make(chan struct{})
	t.running.Store(int32(len(t.queues)))
	for _, q := range t.queues {
		t.wg.Add(1)
		go t.readLoop(q)
	}
	t.wg.Add(1)
	go t.watchLink()
	cfg.Logger.Info("TUN egress up", "interface", cfg.Name, "queues", n, "mtu", cfg.MTU, "offloads", t.vnetHdr)
	return t, nil
}

// openQueue attaches one more queue to the named multi-queue TUN, creating
// the interface on the first call.
func openQueue(name string) (tun.Device, bool, error) {
	fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, false, err
	}
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		unix.Close(fd)
		return nil, false, err
	}
	ifr.SetUint16(unix.IFF_TUN | unix.IFF_NO_PI | unix.IFF_MULTI_QUEUE | unix.IFF_VNET_HDR)
	if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
		unix.Close(fd)
		return nil, false, fmt.Errorf("TUNSETIFF: %w", err)
	}
	// CreateUnmonitoredTUNFromFD negotiates TSO/checksum (and USO where the
	// kernel has it) because IFF_VNET_HDR is set, and owns fd from here on.
	dev, _, err := tun.CreateUnmonitoredTUNFromFD(fd)
	if err != nil {
		unix.Close(fd)
		return nil, false, err
	}
	return dev, dev.BatchSize() > 1, nil
}

func configureLink(cfg TUNConfig) error {
	link, err := netlink.LinkByName(cfg.Name)
	if err != nil {
		return err
	}
	if err := netlink.LinkSetMTU(link, cfg.MTU); err != nil {
		return fmt.Errorf("set MTU %d: %w", cfg.MTU, err)
	}
	for _, a := range cfg.Addresses {
		if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: ipNet(a)}); err != nil {
			return fmt.Errorf("add address %s: %w", a, err)
		}
	}
	if cfg.StartDown {
		return nil
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("set up: %w", err)
	}
	return nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func (t *TUN) readLoop(q tun.Device) {
	defer t.wg.Done()
	defer func() {
		if t.running.Add(-1) == 0 {
			close(t.stopped)
		}
	}()
	batch := q.BatchSize()
	bufs := make([][]byte, batch)
	pkts := make([][]byte, batch)
	sizes := make([]int, batch)
	for i := range bufs {
		bufs[i] = make([]byte, tunOffset+65535)
	}
	for {
		n, err := q.Read(bufs, sizes, tunOffset)
		for i := range n {
			pkts[i] = bufs[i][:tunOffset+sizes[i]]
		}
		if n > 0 {
			t.forward(pkts[:n], tunOffset)
		}
		if err != nil {
			// A deleted interface detaches its queues: reads then fail
			// with EBADFD or, once the poller has seen the error, with
			// "not pollable"; ask the queue which it is.
			if t.closed.Load() || errors.Is(err, os.ErrClosed) || queueDetached(q) {
				return
			}
			t.readErrors.Add(1)
			if now := time.Now().Unix(); t.lastLog.Swap(now) != now {
				t.logger.Warn("TUN read failed", "interface", t.name, "err", err)
			}
		}
	}
}

// queueDetached reports whether q no longer belongs to an interface: the
// interface was deleted, or q was closed.
func queueDetached(q tun.Device) bool {
	sc, err := q.File().SyscallConn()
	if err != nil {
		return true
	}
	var ierr error
	if err := sc.Control(func(fd uintptr) { _, ierr = queueIfaceName(int(fd)) }); err != nil {
		return true
	}
	return errors.Is(ierr, unix.EBADFD)
}

// queueIfaceName asks a TUN queue for its interface's current name; EBADFD
// means the interface is gone.
func queueIfaceName(fd int) (string, error) {
	ifr, err := unix.NewIfreq("")
	if err != nil {
		return "", err
	}
	if err := unix.IoctlIfreq(fd, unix.TUNGETIFF, ifr); err != nil {
		return "", err
	}
	return ifr.Name(), nil
}

// Deliver writes packets into the kernel through one queue, chosen by the
// first packet's addresses so that a flow keeps its order; wireguard-go's
// TUN writer coalesces TCP and UDP segments (GRO) when offloads are on.
func (t *TUN) Deliver(bufs [][]byte, offset int) error {
	if len(bufs) == 0 {
		return nil
	}
	q := t.queues[packet.FlowHash(bufs[0][offset:])%uint32(len(t.queues))]
	_, err := q.Write(bufs, offset)
	return err
}

// Name returns the interface's current name (it may have been renamed).
func (t *TUN) Name() string {
	if s := t.link.Load(); s != nil {
		return s.Name
	}
	return t.name
}

// Stopped is closed once every queue's reader has stopped: after Close, or
// when the interface was deleted from outside (the kernel then detaches
// every queue). Moving the interface to another network namespace, taking
// it down or renaming it does not stop them.
func (t *TUN) Stopped() <-chan struct{} { return t.stopped }

// ReadErrors returns how many reads from the kernel failed.
func (t *TUN) ReadErrors() uint64 { return t.readErrors.Load() }

// Close closes every queue, which removes the interface, and waits for the
// readers to stop.
func (t *TUN) Close() error {
	var err error
	t.once.Do(func() {
		t.closed.Store(true)
		close(t.done)
		for _, q := range t.queues {
			err = errors.Join(err, q.Close())
		}
		t.wg.Wait()
	})
	return err
}

// SetRoutes makes the kernel routes into the TUN beyond its connected
// networks exactly prefixes: missing ones are added, others removed. It
// acts in the namespace the interface is in now, under its current name.
func (t *TUN) SetRoutes(prefixes []netip.Prefix) error {
	t.routesMu.Lock()
	defer t.routesMu.Unlock()
	h, link, err := t.linkHandle()
	if err != nil {
		return fmt.Errorf("routes of TUN %s: %w", t.Name(), err)
	}
	defer h.Close()
	want := make(map[netip.Prefix]bool, len(prefixes))
	for _, p := range prefixes {
		want[p.Masked()] = true
	}
	var errs error
	for p := range t.routes {
		if !want[p] {
			rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(p), Scope: netlink.SCOPE_LINK}
			if err := h.RouteDel(rt); err != nil && !errors.Is(err, unix.ESRCH) {
				errs = errors.Join(errs, fmt.Errorf("delete route %s: %w", p, err))
				continue
			}
			delete(t.routes, p)
		}
	}
	// Replace every wanted route, not only the ones we think are missing:
	// the kernel deletes routes when the link loses its address or goes
	// down, and a call after that must put them back.
	for p := range want {
		rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: ipNet(p), Scope: netlink.SCOPE_LINK}
		if err := h.RouteReplace(rt); err != nil {
			errs = errors.Join(errs, fmt.Errorf("add route %s: %w", p, err))
			continue
		}
		t.routes[p] = true
	}
	return errs
}
