//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// TestSignalOnlyTheLockHolder: whoever can write the state directory may
// hold the pid file's lock and write another process's pid into it;
// client add must not send that process SIGHUP (which would end it).
func TestSignalOnlyTheLockHolder(t *testing.T) {
	dir := t.TempDir()
	victim := exec.Command("sleep", "60")
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Process.Kill(); victim.Wait() })

	// This process holds the lock, but the file names the victim.
	f, err := os.OpenFile(filepath.Join(dir, pidFileName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	f.WriteString(strconv.Itoa(victim.Process.Pid) + "\n")
	pid, err := signalGateway(dir, syscall.SIGHUP)
	if err == nil || pid != 0 || !strings.Contains(err.Error(), "does not hold the pid file's lock") {
		t.Errorf("signalGateway = %d, %v; want a refusal", pid, err)
	}
	if err := victim.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("the victim is gone: %v", err)
	}

	// Garbage and a stale (unlocked) file: no signal, no crash.
	f.Truncate(0)
	f.WriteAt([]byte("-5\n"), 0)
	if _, err := signalGateway(dir, syscall.SIGHUP); err == nil || !strings.Contains(err.Error(), "not a process id") {
		t.Errorf("garbage pid: %v", err)
	}
	f.Close()
	if pid, err := signalGateway(dir, syscall.SIGHUP); pid != 0 || err != nil {
		t.Errorf("stale pid file: %d, %v; want no gateway and no error", pid, err)
	}
}
