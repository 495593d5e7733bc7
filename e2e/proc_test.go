//go:build linux

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// maxLogDump caps how much of a process log goes into the test log.
const maxLogDump = 64 << 10

// proc is a long-running process a test started (a gateway, iperf3 -s).
// Its output goes to a file that is copied into the test log when the
// test fails.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, valid once done is closed
}

// startProc starts args with extra environment env. When t ends the process
// gets SIGTERM, then SIGKILL after a grace period.
func startProc(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	logPath := filepath.Join(t.TempDir(), name+".log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// Do not outlive a test binary that is killed (the namespace sweep
	// of the next run is only best effort).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.stop(5 * time.Second)
		if t.Failed() {
			t.Logf("--- log of %s (%s), exit: %v ---\n%s", p.name, strings.Join(args, " "), p.err, p.log())
		}
	})
	return p
}

// alive reports whether the process is still running.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// stop sends SIGTERM, waits up to grace, then SIGKILLs, and waits for exit.
func (p *proc) stop(grace time.Duration) {
	if !p.alive() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return
	case <-time.After(grace):
	}
	p.cmd.Process.Kill()
	<-p.done
}

// log returns the process output so far (the tail, when long).
func (p *proc) log() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	if len(b) > maxLogDump {
		return fmt.Sprintf("(first %d bytes cut)\n%s", len(b)-maxLogDump, b[len(b)-maxLogDump:])
	}
	return string(b)
}

// waitFor polls cond every 50 ms until it holds, p exits (when p is not
// nil) or timeout passes, and fails t with what.
func waitFor(t testing.TB, p *proc, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && !p.alive() {
			t.Fatalf("waiting for %s: %s exited (%v); its log follows", what, p.name, p.err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: not done after %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
