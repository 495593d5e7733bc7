package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/keys"

	"github.com/anyguard/anyguard/internal/testwait"
)

// runMainEnv makes the test binary act as anyguard itself, so that the
// signal tests run the real main (signals, exit codes) in a subprocess.
const runMainEnv = "ANYGUARD_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runMainEnv) == "1" {
		os.Args = append([]string{"anyguard"}, os.Args[1:]...)
		main()
		return
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

type gatewayProc struct {
	cmd       *exec.Cmd
	out       *testwait.Buffer
	done      chan struct{}
	http, tcp string
	config    string // the configuration file
}

// startRun runs `anyguard run` (netstack mode, no privileges) in a
// subprocess and waits until it is ready.
func startRun(t *testing.T, drain time.Duration) *gatewayProc {
	t.Helper()
	return startRunEnv(t, drain)
}

// startRunEnv is startRun with extra environment variables.
func startRunEnv(t *testing.T, drain time.Duration, env ...string) *gatewayProc {
	t.Helper()
	k, _ := keys.Generate()
	p := &gatewayProc{http: freePort(t), tcp: freePort(t)}
	cfg := fmt.Sprintf(`node: {name: drain-gw}
clients:
  private_key: %s
  listen_port: 0
  address: 10.99.0.1/16
  uapi: false
egress:
  mode: netstack
health:
  listen: %q
  admin_listen: "127.0.0.1:0"
  tcp_listen: %q
  drain_timeout: %s
`, k, p.http, p.tcp, drain)
	path := filepath.Join(t.TempDir(), "gw.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	p.config = path
	p.cmd, p.out, p.done = startChild(t, append(append(os.Environ(), runMainEnv+"=1"), env...), "run", "--config", path)
	p.waitReadyz(t, http.StatusOK, 15*time.Second)
	return p
}

// startChild runs this test binary as `anyguard args...` with the
// environment env (which must set runMainEnv), its output going to out.
// done is closed when it exits; it is killed when t ends, and its output
// logged if t failed.
func startChild(t testing.TB, env []string, args ...string) (cmd *exec.Cmd, out *testwait.Buffer, done chan struct{}) {
	t.Helper()
	out, done = &testwait.Buffer{}, make(chan struct{})
	cmd = exec.Command(os.Args[0], args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			t.Logf("anyguard output:\n%s", out)
		}
	})
	return cmd, out, done
}

func (p *gatewayProc) readyz() int {
	hc := &http.Client{Timeout: time.Second}
	resp, err := hc.Get("http://" + p.http + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

func (p *gatewayProc) waitReadyz(t *testing.T, want int, within time.Duration) {
	t.Helper()
	testwait.Until(t, within, fmt.Sprintf("/readyz to answer %d", want), func() bool { return p.readyz() == want })
}

func (p *gatewayProc) tcpOpen() bool {
	c, err := net.DialTimeout("tcp", p.tcp, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func (p *gatewayProc) exited(within time.Duration) bool {
	select {
	case <-p.done:
		return true
	case <-time.After(within):
		return false
	}
}

func TestSIGTERMDrainsThenExitsZero(t *testing.T) {
	const drain = 3 * time.Second
	p := startRun(t, drain)
	if !p.tcpOpen() {
		t.Fatal("TCP health port closed while ready")
	}
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitReadyz(t, http.StatusServiceUnavailable, time.Second)
	if p.tcpOpen() {
		t.Error("TCP health port still accepts while draining")
	}
	hc := &http.Client{Timeout: time.Second}
	if resp, err := hc.Get("http://" + p.http + "/livez"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/livez while draining: %v", err)
	}
	if p.exited(drain - time.Second) {
		t.Fatalf("exited %v after SIGTERM, before the drain window of %v", time.Since(start), drain)
	}
	if !p.exited(10 * time.Second) {
		t.Fatal("still running 10 s after the drain window")
	}
	if took := time.Since(start); took < drain {
		t.Errorf("exited after %v, within the drain window", took)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after a drain, want 0", code)
	}
	out := p.out.String()
	for _, want := range []string{"signal terminated: draining", "drain: started", "drain: window over", "drain: done", "gateway stopped"} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q", want)
		}
	}
}

func TestSecondSIGTERMExitsAtOnce(t *testing.T) {
	p := startRun(t, time.Minute)
	p.cmd.Process.Signal(syscall.SIGTERM)
	p.waitReadyz(t, http.StatusServiceUnavailable, time.Second)
	start := time.Now()
	p.cmd.Process.Signal(syscall.SIGTERM)
	if !p.exited(5 * time.Second) {
		t.Fatal("a second SIGTERM did not end the process")
	}
	t.Logf("exited %v after the second SIGTERM", time.Since(start).Round(time.Millisecond))
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d, want 0", code)
	}
	if !strings.Contains(p.out.String(), "second signal") {
		t.Error("log does not say why it exited early")
	}
}

func TestRunRefusesTakenHealthPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	k, _ := keys.Generate()
	path := filepath.Join(t.TempDir(), "gw.yaml")
	cfg := fmt.Sprintf("clients:\n  private_key: %s\n  listen_port: 0\n  address: 10.99.0.1/16\n  uapi: false\negress:\n  mode: netstack\nhealth:\n  listen: %q\n  admin_listen: \"127.0.0.1:0\"\n  tcp_listen: \"off\"\n", k, ln.Addr())
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, errOut := runCLI(t, "", "run", "--config", path, "--log-level", "error")
	if code != 1 || !strings.Contains(errOut, "health.listen "+ln.Addr().String()) || !strings.Contains(errOut, "address already in use") {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}
