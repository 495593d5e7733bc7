//go:build linux

package e2e

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
	"github.com/anyguard/anyguard/internal/e2etest"
)

// requiredTools are the programs the tests run; all come from Debian's
// wireguard-tools, wireguard-go, iperf3, iproute2 and iputils-ping.
var requiredTools = []string{"ip", "ss", "wg", "wg-quick", "wireguard-go", "iperf3", "ping"}

// runDir is where every test of this run keeps files that outlive one test
// (the anyguard binary). TestMain makes and removes it.
var runDir string

func TestMain(m *testing.M) {
	if os.Getenv(skewChildEnv) != "" {
		os.Exit(runSkewMember()) // the test binary re-executed as a gossip member (skew_test.go)
	}
	flag.Parse()
	if f := flag.Lookup("test.list"); f != nil && f.Value.String() != "" {
		os.Exit(m.Run()) // listing tests (make fuzz): touch nothing
	}
	bnetns.AddSbinToPath()
	if os.Geteuid() == 0 {
		sweepStaleNetns()
	}
	dir, err := os.MkdirTemp("", "anyguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	runDir = dir
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// requireE2E skips t because of why, or fails it when ANYGUARD_E2E=require,
// where a test that cannot run must not pass silently.
func requireE2E(t testing.TB, why string) {
	t.Helper()
	e2etest.Skip(t, "skipping end-to-end test: "+why)
}

var (
	privOnce   sync.Once
	privReason string
)

// requirePrivileged checks once per run that the tests can create network
// namespaces, TUN devices and run the Debian tools, and calls requireE2E
// when they cannot.
func requirePrivileged(t testing.TB) {
	t.Helper()
	if testing.Short() {
		requireE2E(t, "-short given")
	}
	privOnce.Do(func() { privReason = probePrivileges() })
	if privReason != "" {
		requireE2E(t, privReason)
	}
}

// probePrivileges returns why the tests cannot run here, or "".
func probePrivileges() string {
	if os.Geteuid() != 0 {
		return "needs root for network namespaces and TUN devices"
	}
	var missing []string
	for _, tool := range requiredTools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Sprintf("missing tools %s (run `make deps` as root, or apt-get install wireguard-tools wireguard-go iperf3 iproute2 iputils-ping)",
			strings.Join(missing, ", "))
	}
	f, err := os.OpenFile("/dev/net/tun", os.O_RDWR, 0)
	if err != nil {
		return fmt.Sprintf("cannot open /dev/net/tun: %v", err)
	}
	f.Close()
	name := bnetns.Name(nsPrefix, "probe")
	if out, err := runCmd(cmdTimeout, "ip", "netns", "add", name); err != nil {
		return fmt.Sprintf("cannot create a network namespace: %v: %s", err, out)
	}
	if out, err := runCmd(cmdTimeout, "ip", "netns", "del", name); err != nil {
		return fmt.Sprintf("cannot delete network namespace %s: %v: %s", name, err, out)
	}
	return ""
}

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// anyguardBinary returns the anyguard binary, building it from ./cmd/anyguard
// the first time a test asks, so that tests that do not need it (the stock
// baseline) run even while it does not build.
func anyguardBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("ANYGUARD_BIN"); p != "" {
			binPath = p
			return
		}
		root, err := repoRoot()
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(runDir, "anyguard")
		start := time.Now()
		// As `make build` does: a static binary, which the container
		// image (FROM scratch) needs and the other tests do not mind.
		ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
		defer cancel()
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", binPath, "./cmd/anyguard")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		out, err := cmd.CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("CGO_ENABLED=0 go build ./cmd/anyguard in %s: %w\n%s", root, err, out)
			return
		}
		t.Logf("built anyguard from %s in %v", root, time.Since(start).Round(time.Millisecond))
	})
	if buildErr != nil {
		t.Fatalf("anyguard binary: %v", buildErr)
	}
	return binPath
}

// repoRoot finds the module root from the package directory go test runs in.
func repoRoot() (string, error) {
	out, err := runCmd(cmdTimeout, "go", "env", "GOMOD")
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w: %s", err, out)
	}
	gomod := strings.TrimSpace(out)
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	return filepath.Dir(gomod), nil
}
