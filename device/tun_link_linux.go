package device

import (
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// How the TUN follows its interface.
//
// An interface can be renamed, taken down and up, given another MTU, and
// moved to another network namespace (`ip link set NAME netns NS`, as
// container runtimes and wireguard-go's tests/netns.sh do) while its queues
// stay open in this process. A netlink subscription in our own namespace
// sees none of that once the interface has left it. wireguard-go's TUN
// keeps a netlink listener for its home namespace and, for the moved case,
// polls the TUN with an empty write every second (routineHackListener:
// EINVAL means up, EIO down), which yields up and down but not the MTU.
// Current kernels (seen on 6.18) answer EINVAL whatever the state, so that
// probe only ever says up: a moved wireguard-go interface is treated as up
// from the start and never goes down.
//
// We ask the TUN itself where its interface is (TUNGETDEVNETNS, Linux 5.2)
// and subscribe to link events in that namespace. When the interface leaves
// it (RTM_DELLINK for its index) we ask again and follow it; when the TUN
// says the interface is gone, we stop. So up, down, MTU and name are known
// at once, in any namespace. Should the subscription be impossible (an old
// kernel, or no right to enter the namespace) we fall back to the empty
// write once a second, as wireguard-go does: exact on the kernels that
// answer EIO while down, "always up" (wireguard-go's behaviour) on others.

// linkPollInterval is how often the fallback probes the interface's state,
// and how long to wait before trying to subscribe again.
const linkPollInterval = time.Second

// linkRetryDelay is the pause before locating the interface again after it
// left a namespace: a move first unlists the interface, then tells the old
// namespace, then switches it over.
const linkRetryDelay = 20 * time.Millisecond

var (
	// errLinkGone: the interface was deleted (the TUN is detached).
	errLinkGone = errors.New("interface deleted")
	// errRelocate: the interface left the namespace being watched, or the
	// subscription ended; look for it again.
	errRelocate = errors.New("interface moved")
	// errNoNetns: the kernel does not say which namespace the interface is
	// in (before Linux 5.2, or no CAP_NET_ADMIN over that namespace).
	errNoNetns = errors.New("the TUN does not tell its interface's namespace")
)

// watchLink runs on its own goroutine until Close or the interface's
// deletion, reporting every change of the interface's state.
func (t *TUN) watchLink() {
	defer t.wg.Done()
	warned := false
	for {
		err := t.followLink()
		if t.closed.Load() {
			return
		}
		if errors.Is(err, errLinkGone) {
			t.reportGone()
			return
		}
		wait := linkRetryDelay
		if !errors.Is(err, errRelocate) {
			if !warned {
				t.logger.Warn("cannot watch the TUN's namespace; probing it once a second instead",
					"interface", t.Name(), "err", err)
				warned = true
			}
			running, err := t.probeRunning()
			if errors.Is(err, errLinkGone) {
				t.reportGone()
				return
			}
			if err == nil {
				s := t.Link()
				s.Up, s.Running = running, running
				t.report(s)
			}
			wait = linkPollInterval
		}
		select {
		case <-t.done:
			return
		case <-time.After(wait):
		}
	}
}

// followLink subscribes to link events in the namespace the interface is
// in now and reports its state until it leaves that namespace (errRelocate)
// or Close.
func (t *TUN) followLink() error {
	ns, name, err := t.locate()
	if err != nil {
		return err
	}
	defer ns.Close()
	ino, err := netnsInode(ns)
	if err != nil {
		return err
	}
	updates := make(chan netlink.LinkUpdate, 64)
	stop := make(chan struct{})
	if err := inNetns(ns, ino, func(nlns netns.NsHandle) error {
		return netlink.LinkSubscribeWithOptions(updates, stop, netlink.LinkSubscribeOptions{Namespace: &nlns})
	}); err != nil {
		return fmt.Errorf("subscribe to links in the netns of %s: %w", name, err)
	}
	defer func() {
		// The subscription's goroutine closes updates once it sees stop;
		// drain so that it is never left blocked on a send.
		close(stop)
		for range updates {
		}
	}()
	// Subscribed first, read second: no change between the two is missed.
	h, link, err := lookupLink(ns, ino, name)
	if err != nil {
		var notFound netlink.LinkNotFoundError
		if errors.As(err, &notFound) {
			t.logger.Debug("TUN's interface not found where the TUN says it is", "interface", name, "netns", ino)
			return errRelocate // renamed or moved since locate: look again
		}
		return err
	}
	h.Close()
	index := link.Attrs().Index
	t.logger.Debug("following the TUN's interface", "interface", name, "index", index, "netns", ino)
	t.report(linkState(link.Attrs(), link.Attrs().RawFlags, ino))
	for {
		select {
		case <-t.done:
			return nil
		case u, ok := <-updates:
			if !ok {
				return errRelocate // the subscription failed (overrun): start again
			}
			if int(u.Index) != index {
				continue
			}
			if u.Header.Type == unix.RTM_DELLINK {
				t.logger.Debug("TUN's interface left its namespace", "interface", u.Attrs().Name, "netns", ino)
				return errRelocate
			}
			t.report(linkState(u.Attrs(), u.Flags, ino))
		}
	}
}

func linkState(a *netlink.LinkAttrs, flags uint32, netnsIno uint64) LinkState {
	return LinkState{
		Name:    a.Name,
		Index:   a.Index,
		Up:      flags&unix.IFF_UP != 0,
		Running: flags&unix.IFF_RUNNING != 0,
		MTU:     a.MTU,
		Netns:   netnsIno,
	}
}

// locate asks the TUN for its interface's network namespace (a new handle
// the caller closes) and current name. With errNoNetns it still returns the
// name.
func (t *TUN) locate() (netns.NsHandle, string, error) {
	var (
		nsfd = -1
		name string
		err  error
	)
	sc, cerr := t.queues[0].File().SyscallConn()
	if cerr == nil {
		cerr = sc.Control(func(fd uintptr) {
			if name, err = queueIfaceName(int(fd)); err != nil {
				return
			}
			if nsfd, err = unix.IoctlRetInt(int(fd), unix.TUNGETDEVNETNS); err != nil && !errors.Is(err, unix.EBADFD) {
				err = fmt.Errorf("%w: %w", errNoNetns, err)
			}
		})
	}
	switch {
	case cerr != nil: // the queue is closed
		return netns.None(), "", fmt.Errorf("TUN %s: %w", t.name, errLinkGone)
	case errors.Is(err, unix.EBADFD):
		return netns.None(), "", fmt.Errorf("TUN %s: %w", t.name, errLinkGone)
	case errors.Is(err, errNoNetns):
		return netns.None(), name, fmt.Errorf("TUN %s: %w", name, err)
	case err != nil:
		return netns.None(), "", fmt.Errorf("TUN %s: %w", t.name, err)
	}
	return netns.NsHandle(nsfd), name, nil
}

// probeRunning is wireguard-go's test for up and down across namespaces:
// an empty write fails with EINVAL (too short for the virtio-net header)
// while the interface is up and, on older kernels, with EIO while it is
// down (newer ones say EINVAL then too).
func (t *TUN) probeRunning() (bool, error) {
	var werr error
	sc, err := t.queues[0].File().SyscallConn()
	if err == nil {
		err = sc.Control(func(fd uintptr) { _, werr = unix.Write(int(fd), nil) })
	}
	switch {
	case err != nil || errors.Is(werr, unix.EBADFD):
		return false, errLinkGone
	case errors.Is(werr, unix.EINVAL):
		return true, nil
	case errors.Is(werr, unix.EIO):
		return false, nil
	}
	return false, fmt.Errorf("probe TUN %s: empty write returned %v", t.name, werr)
}

// report records s and passes it on when it differs from the last state.
// Only the watcher goroutine calls it, so reports keep their order.
func (t *TUN) report(s LinkState) {
	old := t.link.Load()
	if old != nil && *old == s {
		return
	}
	t.link.Store(&s)
	t.logger.Info("TUN interface", "interface", s.Name, "index", s.Index, "up", s.Up, "running", s.Running,
		"mtu", s.MTU, "netns", s.Netns)
	if t.onLink != nil {
		t.onLink(s)
	}
}

// reportGone records that the interface was deleted: no index, down.
func (t *TUN) reportGone() {
	s := t.Link()
	s.Index, s.Up, s.Running = 0, false, false
	t.report(s)
}

// Link returns the interface's state as last reported by the kernel; once
// the interface has been deleted, its Index is 0.
func (t *TUN) Link() LinkState {
	if s := t.link.Load(); s != nil {
		return *s
	}
	return LinkState{}
}

func netnsInode(ns netns.NsHandle) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		return 0, fmt.Errorf("stat netns: %w", err)
	}
	return st.Ino, nil
}

// linkHandle opens netlink in the namespace the interface is in now and
// looks the interface up there. The caller closes the handle. Where the
// kernel does not say which namespace that is, it looks in our own.
func (t *TUN) linkHandle() (*netlink.Handle, netlink.Link, error) {
	ns, name, err := t.locate()
	if errors.Is(err, errNoNetns) {
		return lookupLinkHere(netns.None(), name)
	}
	if err != nil {
		return nil, nil, err
	}
	defer ns.Close()
	ino, err := netnsInode(ns)
	if err != nil {
		return nil, nil, err
	}
	return lookupLink(ns, ino, name)
}

// inNetns calls fn, which opens netlink sockets, with the namespace to
// open them in to reach ns (whose inode is ino): none, so no setns, when
// the calling thread is in ns already. A process with CAP_NET_ADMIN but
// without CAP_SYS_ADMIN (a container) so needs setns only to follow its
// interface into another namespace. The thread stays locked meanwhile, so
// that the check holds for fn.
func inNetns(ns netns.NsHandle, ino uint64, fn func(netns.NsHandle) error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if here, err := netnsOf("/proc/thread-self/ns/net"); err == nil && here == ino {
		return fn(netns.None())
	}
	return fn(ns)
}

// netnsOf returns the inode of the network namespace at path
// (/proc/thread-self/ns/net: the calling thread's).
func netnsOf(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Ino, nil
}

// lookupLink opens netlink in ns (whose inode is ino) and finds the
// interface name there. The caller closes the handle.
func lookupLink(ns netns.NsHandle, ino uint64, name string) (h *netlink.Handle, link netlink.Link, err error) {
	err = inNetns(ns, ino, func(nlns netns.NsHandle) (err error) {
		h, link, err = lookupLinkHere(nlns, name)
		return err
	})
	return h, link, err
}

// lookupLinkHere opens netlink in ns (none: where the calling thread is)
// and finds the interface name there. The caller closes the handle.
func lookupLinkHere(ns netns.NsHandle, name string) (*netlink.Handle, netlink.Link, error) {
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, nil, fmt.Errorf("netlink in the netns of %s: %w", name, err)
	}
	link, err := h.LinkByName(name)
	if err != nil {
		h.Close()
		return nil, nil, err
	}
	return h, link, nil
}
