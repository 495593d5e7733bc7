//go:build linux

package netns

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// MaxLogDump caps how much of a process log Log returns.
const MaxLogDump = 64 << 10

// Proc is a long-running process (a gateway, iperf3 -s) whose output goes
// to a file.
type Proc struct {
	Name    string
	Args    []string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed when the process has exited
	err     error         // exit status, valid once done is closed
}

// Start runs args with extra environment env, its output appended to
// logPath. The process is killed if this one dies; stop it with Stop.
func Start(name, logPath string, env []string, args ...string) (*Proc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), env...)
	// Do not outlive a parent that is killed (the namespace sweep of the
	// next run is only best effort).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Args: args, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Pid is the process id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Alive reports whether the process is still running.
func (p *Proc) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Err is the exit status once the process has exited.
func (p *Proc) Err() error {
	if p.Alive() {
		return nil
	}
	return p.err
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM, waits up to grace, then SIGKILLs, and waits for exit.
func (p *Proc) Stop(grace time.Duration) {
	if !p.Alive() {
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

// Log returns the process output so far (the tail, when long).
func (p *Proc) Log() string {
	b, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(reading log: %v)", err)
	}
	if len(b) > MaxLogDump {
		return fmt.Sprintf("(first %d bytes cut)\n%s", len(b)-MaxLogDump, b[len(b)-MaxLogDump:])
	}
	return string(b)
}

// CPUTime returns the user plus system CPU time the process has used so
// far, from /proc/PID/stat.
func (p *Proc) CPUTime() (time.Duration, error) { return ProcessCPU(p.Pid()) }

// WaitFor polls cond every 50 ms until it holds, p exits (when p is not
// nil) or timeout passes, and says which in its error.
func WaitFor(p *Proc, timeout time.Duration, what string, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if p != nil && !p.Alive() {
			return fmt.Errorf("waiting for %s: %s exited (%v)", what, p.Name, p.err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("waiting for %s: not done after %v", what, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}
