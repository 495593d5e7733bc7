package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"

	"github.com/anyguard/anyguard/device"
)

// Environment shared with wireguard-go: WG_PROCESS_FOREGROUND=1 keeps the
// process in the foreground. readyFDEnv is ours: the daemonised child
// reports on that descriptor whether it started, so the parent exits with
// the child's outcome as wireguard-go's does.
const (
	foregroundEnv = "WG_PROCESS_FOREGROUND"
	readyFDEnv    = "ANYGUARD_INTERFACE_READY_FD"
)

const interfaceUsage = "[-f|--foreground] INTERFACE-NAME"

// cmdInterface is a drop-in for `wireguard-go [-f] NAME`: a plain userspace
// WireGuard interface configured with wg(8) and ip(8), on anyguard's
// multi-queue TUN (one queue and reader per CPU, virtio offloads).
func cmdInterface(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	foreground := os.Getenv(foregroundEnv) == "1"
	var name string
	switch {
	case len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help"):
		fmt.Fprintf(stderr, "usage: anyguard interface %s\n\n"+
			"Create the userspace WireGuard interface NAME, like wireguard-go, on a multi-queue TUN: configure it\n"+
			"with wg(8) (UAPI socket /var/run/wireguard/NAME.sock) and ip(8). Without -f it daemonises unless\n"+
			"WG_PROCESS_FOREGROUND=1. LOG_LEVEL=verbose|error|silent as for wireguard-go.\n", interfaceUsage)
		return nil
	case len(args) == 2 && (args[0] == "-f" || args[0] == "--foreground"):
		foreground, name = true, args[1]
	case len(args) == 1 && args[0] != "" && args[0][0] != '-':
		name = args[0]
	default:
		return usagef("want %s", interfaceUsage)
	}
	if !foreground {
		return daemonize(name, stderr)
	}
	return runInterface(ctx, name, stdout)
}

// daemonize starts this command again in the background and waits until
// it reports that the interface is up (exit 0) or why it failed (exit 1).
func daemonize(name string, stderr io.Writer) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	defer r.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer null.Close()
	out, errOut := null, null
	if lv := os.Getenv("LOG_LEVEL"); lv != "" && lv != "silent" {
		out, errOut = os.Stdout, os.Stderr
	}
	env := append(os.Environ(), foregroundEnv+"=1", readyFDEnv+"=3")
	p, err := os.StartProcess(exe, []string{exe, "interface", name}, &os.ProcAttr{
		Dir:   "/",
		Env:   env,
		Files: []*os.File{null, out, errOut, w},
		Sys:   &unix.SysProcAttr{Setsid: true},
	})
	w.Close()
	if err != nil {
		return fmt.Errorf("daemonize: %w", err)
	}
	msg, _ := io.ReadAll(r)
	if string(msg) == "ok\n" {
		return p.Release()
	}
	p.Wait()
	if len(msg) == 0 {
		msg = []byte("the daemon exited before reporting")
	}
	return errors.New(string(msg))
}

// runInterface runs the interface in this process until SIGINT/SIGTERM, the
// removal of its UAPI socket or of the interface itself.
func runInterface(ctx context.Context, name string, stdout io.Writer) (err error) {
	ready := readyPipe()
	defer func() {
		if ready != nil {
			if err != nil {
				fmt.Fprint(ready, err)
			}
			ready.Close()
		}
	}()
	// wireguard-go's levels for its logger; the TUN's own messages (how it
	// follows the interface) go to stderr at the matching level.
	level, tunLog := wgdevice.LogLevelError, slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	switch os.Getenv("LOG_LEVEL") {
	case "verbose", "debug":
		level = wgdevice.LogLevelVerbose
		tunLog = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	case "silent":
		level, tunLog = wgdevice.LogLevelSilent, slog.New(slog.DiscardHandler)
	}
	logger := wgdevice.NewLogger(level, fmt.Sprintf("(%s) ", name))

	mtu := wgdevice.DefaultMTU
	var mq *device.TUN
	port := device.NewPort(name, mtu, func(bufs [][]byte, offset int) {
		if err := mq.Deliver(bufs, offset); err != nil {
			logger.Verbosef("TUN write: %v", err)
		}
	})
	tdev := newLinkTUN(port, mtu, logger)
	// Like wireguard-go's, the interface starts down: ip link set up.
	mq, err = device.OpenTUN(device.TUNConfig{Name: name, MTU: mtu, StartDown: true, OnLink: tdev.update,
		Logger: tunLog},
		func(bufs [][]byte, offset int) { port.Deliver(bufs, offset) })
	if err != nil {
		tdev.Close()
		return fmt.Errorf("create TUN device %s: %w", name, err)
	}
	defer mq.Close()
	dev := wgdevice.NewDevice(tdev, conn.NewDefaultBind(), logger)
	defer dev.Close()
	uapi, err := device.ServeUAPI(name, dev, nil)
	if err != nil {
		return err
	}
	defer uapi.Close()
	logger.Verbosef("Device started (anyguard interface, multi-queue TUN)")
	if ready != nil {
		fmt.Fprint(ready, "ok\n")
		ready.Close()
		ready = nil
	}
	term := make(chan os.Signal, 1)
	signal.Notify(term, unix.SIGTERM, os.Interrupt)
	defer signal.Stop(term)
	select {
	case <-ctx.Done():
	case <-term:
	case <-uapi.Done(): // the socket was removed
	case <-dev.Wait():
	case <-mq.Stopped(): // the interface was deleted
	}
	logger.Verbosef("Shutting down")
	return nil
}

// readyPipe is the descriptor a daemonising parent waits on, or nil.
func readyPipe() *os.File {
	fd, err := strconv.Atoi(os.Getenv(readyFDEnv))
	if err != nil {
		return nil
	}
	os.Unsetenv(readyFDEnv)
	unix.CloseOnExec(fd)
	return os.NewFile(uintptr(fd), "ready")
}

// linkTUN is the Port as the wireguard-go device's tun.Device, with the
// events a kernel TUN would give it: up and down follow the interface's
// running state and MTU changes made with ip(8) reach the device, wherever
// the interface has been moved to (device.TUN follows it).
type linkTUN struct {
	*device.Port
	logger *wgdevice.Logger
	mtu    atomic.Int32
	events chan tun.Event
	done   chan struct{} // closed by Close: wakes a send waiting for the device
	stop   sync.Once

	// Only update (on the TUN's watcher goroutine) uses these.
	running bool
	name    string
	netns   uint64

	mu     sync.Mutex // guards closed and sends on events
	closed bool
}

func newLinkTUN(port *device.Port, mtu int, logger *wgdevice.Logger) *linkTUN {
	t := &linkTUN{Port: port, logger: logger, events: make(chan tun.Event, 4), done: make(chan struct{})}
	t.mtu.Store(int32(mtu))
	return t
}

// update turns the interface's state into the device's events. It is
// device.TUNConfig.OnLink.
func (t *linkTUN) update(s device.LinkState) {
	if s.Name != t.name || s.Netns != t.netns {
		if t.name != "" {
			t.logger.Verbosef("Interface is now %s (index %d) in network namespace %d", s.Name, s.Index, s.Netns)
		}
		t.name, t.netns = s.Name, s.Netns
	}
	if s.MTU > 0 && int32(s.MTU) != t.mtu.Load() {
		t.mtu.Store(int32(s.MTU))
		t.send(tun.EventMTUUpdate)
	}
	if s.Running != t.running {
		t.running = s.Running
		if s.Running {
			t.send(tun.EventUp)
		} else {
			t.send(tun.EventDown)
		}
	}
}

// send hands ev to the device's event reader, or gives up once Close has
// begun (before the device exists, nothing reads the events).
func (t *linkTUN) send(ev tun.Event) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	select {
	case t.events <- ev:
	case <-t.done:
	}
}

// Events implements tun.Device.
func (t *linkTUN) Events() <-chan tun.Event { return t.events }

// MTU implements tun.Device: the interface's current MTU.
func (t *linkTUN) MTU() (int, error) { return int(t.mtu.Load()), nil }

// Close implements tun.Device: it ends the events and closes the port (the
// device calls it once, when it closes).
func (t *linkTUN) Close() error {
	t.stop.Do(func() { close(t.done) })
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return nil
	}
	t.closed = true
	close(t.events)
	t.mu.Unlock()
	return t.Port.Close()
}
