//go:build linux

package e2e

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
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// nsPrefix starts the name of every namespace these tests create:
	// agt-<pid>-<n>-<role>. The pid lets a later run tell stale ones.
	nsPrefix = "agt-"

	cmdTimeout   = 30 * time.Second
	buildTimeout = 10 * time.Minute
)

var nsCounter atomic.Int64

func nsName(role string) string {
	return fmt.Sprintf("%s%d-%d-%s", nsPrefix, os.Getpid(), nsCounter.Add(1), role)
}

// runCmd runs a command with a timeout and returns its combined output.
func runCmd(timeout time.Duration, name string, args ...string) (string, error) {
	return runCmdIn("", timeout, name, args...)
}

func runCmdIn(dir string, timeout time.Duration, name string, args ...string) (string, error) {
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

// netns is a network namespace made by a test and removed when it ends.
type netns struct {
	name string
}

// newNetns creates a namespace with loopback up; it and every process left
// in it are removed when t ends, failed or not.
func newNetns(t testing.TB, role string) *netns {
	t.Helper()
	ns := &netns{name: nsName(role)}
	if out, err := runCmd(cmdTimeout, "ip", "netns", "add", ns.name); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", ns.name, err, out)
	}
	t.Cleanup(func() {
		if err := removeNetns(ns.name); err != nil {
			t.Errorf("removing namespace: %v", err)
		}
	})
	ns.ip(t, "link", "set", "lo", "up")
	return ns
}

// ip runs `ip -n NS args...` and fails t on error.
func (ns *netns) ip(t testing.TB, args ...string) string {
	t.Helper()
	out, err := runCmd(cmdTimeout, "ip", append([]string{"-n", ns.name}, args...)...)
	if err != nil {
		t.Fatalf("ip -n %s %s: %v: %s", ns.name, strings.Join(args, " "), err, out)
	}
	return out
}

// exec runs a command inside the namespace (ip netns exec).
func (ns *netns) exec(timeout time.Duration, args ...string) (string, error) {
	return runCmd(timeout, "ip", append([]string{"netns", "exec", ns.name}, args...)...)
}

// mustExec is exec that fails t on error.
func (ns *netns) mustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.exec(cmdTimeout, args...)
	if err != nil {
		t.Fatalf("in %s: %s: %v: %s", ns.name, strings.Join(args, " "), err, out)
	}
	return out
}

// sysctl sets a sysctl inside the namespace without needing procps.
func (ns *netns) sysctl(t testing.TB, key, value string) {
	t.Helper()
	path := "/proc/sys/" + strings.ReplaceAll(key, ".", "/")
	ns.mustExec(t, "sh", "-c", fmt.Sprintf("echo %s > %s", value, path))
}

// do runs fn on an OS thread that has entered the namespace: sockets fn
// opens belong to it and keep working after do returns. The thread goes
// back to its own namespace afterwards; if it cannot, it is never given
// back to the Go scheduler.
func (ns *netns) do(fn func() error) error {
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
		target, err := os.Open("/var/run/netns/" + ns.name)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns.name, err)
			return
		}
		err = fn()
		// Go back: this may be the main thread, which the runtime cannot
		// end, and while it stays in ns `ip netns pids` lists this process.
		if rerr := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); rerr == nil {
			runtime.UnlockOSThread()
		} else if err == nil {
			err = fmt.Errorf("setns back from %s: %w", ns.name, rerr)
		}
		errc <- err
	}()
	return <-errc
}

// removeNetns ends every process still inside the namespace (SIGTERM, then
// SIGKILL) and deletes it. A namespace outlives `ip netns del` while a
// process (a daemonised wireguard-go, say) is still in it.
func removeNetns(name string) error {
	for i := 0; ; i++ {
		pids := netnsPids(name)
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
	if out, err := runCmd(cmdTimeout, "ip", "netns", "del", name); err != nil {
		return fmt.Errorf("ip netns del %s: %w: %s", name, err, out)
	}
	return nil
}

// netnsPids lists the processes in a namespace, never this one.
func netnsPids(name string) []int {
	out, err := runCmd(cmdTimeout, "ip", "netns", "pids", name)
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

// sweepStaleNetns removes namespaces with our prefix whose creating test
// process is gone (a crashed or killed earlier run). Best effort.
func sweepStaleNetns() {
	out, err := runCmd(cmdTimeout, "ip", "netns", "list")
	if err != nil {
		return
	}
	for _, line := range strings.Split(out, "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 || !strings.HasPrefix(fields[0], nsPrefix) {
			continue
		}
		name := fields[0]
		pidStr, _, _ := strings.Cut(strings.TrimPrefix(name, nsPrefix), "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() || processExists(pid) {
			continue
		}
		if err := removeNetns(name); err != nil {
			fmt.Fprintf(os.Stderr, "e2e: stale namespace %s: %v\n", name, err)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: removed stale namespace %s\n", name)
		}
	}
}

func processExists(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
