//go:build linux

package netns

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// CmdTimeout bounds the short commands (ip, wg, ss) run here.
const CmdTimeout = 30 * time.Second

var counter atomic.Int64

// Name returns a namespace name prefix<pid>-<n>-<role>, unique in this
// process; the pid lets a later run's Sweep tell names left behind by a
// process that is gone.
func Name(prefix, role string) string {
	return fmt.Sprintf("%s%d-%d-%s", prefix, os.Getpid(), counter.Add(1), role)
}

// Run runs a command with a timeout and returns its combined output.
func Run(timeout time.Duration, name string, args ...string) (string, error) {
	return RunIn("", timeout, name, args...)
}

// RunIn is Run in directory dir.
func RunIn(dir string, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.WaitDelay = time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("%s: timed out after %v: %w", name, timeout, err)
	}
	return out.String(), err
}

// NS is a network namespace this process created.
type NS struct {
	Name string
}

// New creates the namespace Name(prefix, role) with loopback up. The caller
// removes it with Remove.
func New(prefix, role string) (*NS, error) {
	ns := &NS{Name: Name(prefix, role)}
	if out, err := Run(CmdTimeout, "ip", "netns", "add", ns.Name); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %w: %s", ns.Name, err, out)
	}
	if _, err := ns.IP("link", "set", "lo", "up"); err != nil {
		Remove(ns.Name)
		return nil, err
	}
	return ns, nil
}

// Remove ends the processes left in the namespace and deletes it.
func (ns *NS) Remove() error { return Remove(ns.Name) }

// IP runs `ip -n NS args...`.
func (ns *NS) IP(args ...string) (string, error) {
	out, err := Run(CmdTimeout, "ip", append([]string{"-n", ns.Name}, args...)...)
	if err != nil {
		return out, fmt.Errorf("ip -n %s %s: %w: %s", ns.Name, strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	return out, nil
}

// Exec runs a command inside the namespace (ip netns exec).
func (ns *NS) Exec(timeout time.Duration, args ...string) (string, error) {
	return Run(timeout, "ip", append([]string{"netns", "exec", ns.Name}, args...)...)
}

// MustExec is Exec with CmdTimeout whose error carries the command and its
// output.
func (ns *NS) MustExec(args ...string) (string, error) {
	out, err := ns.Exec(CmdTimeout, args...)
	if err != nil {
		return out, fmt.Errorf("in %s: %s: %w: %s", ns.Name, strings.Join(args, " "), err, strings.TrimSpace(out))
	}
	return out, nil
}

// Command returns args as a command to run inside the namespace.
func (ns *NS) Command(args ...string) []string {
	return append([]string{"ip", "netns", "exec", ns.Name}, args...)
}

// Sysctl sets a sysctl inside the namespace without needing procps.
func (ns *NS) Sysctl(key, value string) error {
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	_, err := ns.MustExec("sh", "-c", fmt.Sprintf("echo %s > %s", value, path))
	return err
}

// Do runs fn on an OS thread that has entered the namespace: sockets fn
// opens belong to it and keep working after Do returns. The thread goes
// back to its own namespace afterwards; if it cannot, it is never given
// back to the Go scheduler.
func (ns *NS) Do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns.Name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns.Name, err)
			return
		}
		err = fn()
		// Go back: this may be the main thread, which the runtime cannot
		// end, and while it stays in ns `ip netns pids` lists this process.
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr == nil {
			runtime.UnlockOSThread()
		} else if err == nil {
			err = fmt.Errorf("setns back from %s: %w", ns.Name, rerr)
		}
		errc <- err
	}()
	return <-errc
}

// Remove ends every process still inside the namespace name (SIGTERM, then
// SIGKILL) and deletes it. A namespace outlives `ip netns del` while a
// process (a daemonised wireguard-go, say) is still in it.
func Remove(name string) error {
	for i := 0; ; i++ {
		pids := Pids(name)
		if len(pids) == 0 {
			break
		}
		sig := syscall.SIGTERM
		if i >= 20 { // 2 s
			sig = syscall.SIGKILL
		}
		if i >= 50 {
			return fmt.Errorf("namespace %s: processes %v survive SIGKILL", name, pids)
		}
		if i == 0 || i >= 20 {
			for _, pid := range pids {
				syscall.Kill(pid, sig)
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := Run(CmdTimeout, "ip", "netns", "del", name); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, out)
	}
	return nil
}

// Pids lists the processes in a namespace, never this one.
func Pids(name string) []int {
	out, err := Run(CmdTimeout, "ip", "netns", "pids", name)
	if err != nil {
		return nil
	}
	var pids []int
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid != os.Getpid() {
			pids = append(pids, pid)
		}
	}
	return pids
}

// Sweep removes namespaces named by Name with prefix whose creating process
// is gone (a crashed or killed earlier run), calling report for each. Best
// effort.
func Sweep(prefix string, report func(name string, err error)) {
	out, err := Run(CmdTimeout, "ip", "netns", "list")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], prefix) {
			continue
		}
		name := fields[0]
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, prefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || processExists(pid) {
			continue
		}
		report(name, Remove(name))
	}
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// AddSbinToPath makes sure ip, ss and sysctl are found (and found by
// wg-quick) when the caller's PATH is a non-root one.
func AddSbinToPath() {
	path := os.Getenv("PATH")
	have := map[string]bool{}
	for _, d := range strings.Split(path, ":") {
		have[d] = true
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/sbin", "/sbin"} {
		if !have[d] {
			path += ":" + d
		}
	}
	os.Setenv("PATH", path)
}
