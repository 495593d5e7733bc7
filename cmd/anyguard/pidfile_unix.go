//go:build unix

package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// The pid file (anyguard.pid in the state directory) is how `anyguard
// client add` and `client remove` find the gateway to reload: it sends the
// process named there SIGHUP, the same as an operator would. The gateway
// holds an exclusive flock on the file while it runs, so a pid file left
// by a gateway that is gone (whose pid may belong to another process by
// now) is recognised as such: no lock, no signal. A signal needs the
// permission to send it (the same user, or root), which is the right
// guard for "reload this gateway"; an HTTP endpoint would need its own.
const pidFileName = "anyguard.pid"

// pidFile is the running gateway's locked pid file.
type pidFile struct{ f *os.File }

// errPidFileBusy is returned when another process holds the pid file.
var errPidFileBusy = errors.New("state directory in use by another gateway")

// acquirePidFile writes this process's pid to dir's pid file and locks it
// until Close.
func acquirePidFile(dir string) (*pidFile, error) {
	name := filepath.Join(dir, pidFileName)
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		pid, _ := readPid(f)
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("pid file %s: %w (pid %d)", name, errPidFileBusy, pid)
		}
		return nil, fmt.Errorf("pid file %s: lock: %w", name, err)
	}
	if err := f.Truncate(0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file %s: %w", name, err)
	}
	if _, err := f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0); err != nil {
		f.Close()
		return nil, fmt.Errorf("pid file %s: %w", name, err)
	}
	return &pidFile{f: f}, nil
}

// Close releases the lock; the file stays, unlocked, meaning "not
// running".
func (p *pidFile) Close() error { return p.f.Close() }

func readPid(f *os.File) (int, error) {
	b, err := io.ReadAll(io.LimitReader(io.NewSectionReader(f, 0, 64), 64))
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 1 {
		return 0, fmt.Errorf("pid file holds %q, not a process id", b)
	}
	return pid, nil
}

// signalGateway sends sig to the gateway running with state directory
// dir. It returns the gateway's pid, or 0 when none runs there.
func signalGateway(dir string, sig syscall.Signal) (int, error) {
	name := filepath.Join(dir, pidFileName)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("pid file: %w", err)
	}
	defer f.Close()
	switch err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); {
	case err == nil:
		return 0, nil // nobody holds it: no gateway runs
	case !errors.Is(err, syscall.EWOULDBLOCK):
		return 0, fmt.Errorf("pid file %s: lock: %w", name, err)
	}
	pid, err := readPid(f)
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", name, err)
	}
	if err := checkLockHolder(f, pid); err != nil {
		return 0, fmt.Errorf("pid file %s: %w", name, err)
	}
	if err := syscall.Kill(pid, sig); err != nil {
		return pid, fmt.Errorf("signal gateway (pid %d from %s): %w", pid, name, err)
	}
	return pid, nil
}

// lockFile takes an exclusive flock of name (created if need be), waiting
// for it; the returned function releases it.
func lockFile(name string) (func(), error) {
	f, err := os.OpenFile(name, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}
