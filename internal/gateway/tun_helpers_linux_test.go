//go:build linux

package gateway_test

import (
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/e2etest"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"

	"github.com/anyguard/anyguard/internal/testwait"
)

const inNetnsEnv = "ANYGUARD_TEST_IN_NETNS"

// inOwnNetns re-executes the test binary to run test name alone in a new
// network namespace (unshare --net) and reports whether this is that run.
// In the parent it fails t unless the re-executed test passed.
func inOwnNetns(t *testing.T, name string, tools ...string) bool {
	t.Helper()
	if os.Getenv(inNetnsEnv) != "" {
		return true
	}
	e2etest.RequireRoot(t, "a TUN in a network namespace")
	e2etest.RequireTools(t, append([]string{"unshare"}, tools...)...)
	cmd := exec.Command("unshare", "--net", "--", os.Args[0], "-test.run=^"+name+"$", "-test.v")
	cmd.Env = append(os.Environ(), inNetnsEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("in a new network namespace: %v\n%s", err, out)
	}
	t.Logf("in a new network namespace:\n%s", out)
	return false
}

// startTUNGateway starts a tun-mode gateway whose TUN is tunName (address
// 10.99.0.1/16, two queues, a readiness probe every 200 ms) with its health
// server, all closed when t ends. waitReady polls /readyz until it answers
// want and fails t with why after 10 s.
func startTUNGateway(t *testing.T, tunName string) (waitReady func(want int, why string)) {
	t.Helper()
	gwKey, _ := keys.Generate()
	cfg := config.Default()
	cfg.Node.Name = "tun-gw"
	cfg.Clients.PrivateKey = gwKey
	cfg.Clients.ListenPort = 0
	cfg.Clients.UAPI = false
	cfg.Clients.Address = []netip.Prefix{netip.MustParsePrefix("10.99.0.1/16")}
	cfg.Egress.Mode = config.ModeTUN
	cfg.Egress.TunName = tunName
	cfg.Egress.Queues = 2
	cfg.Health.Listen = "127.0.0.1:0"
	cfg.Health.AdminListen = config.Off
	cfg.Health.TCPListen = "off"
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	gw, err := gateway.New(cfg, gateway.Options{ProbeInterval: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gw.Close() })
	st, srv, err := gw.ServeHealth(gateway.HealthOptions{CheckInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(); st.Close() })
	return func(want int, why string) {
		t.Helper()
		testwait.NoError(t, 10*time.Second, fmt.Sprintf("%s: /readyz to answer %d", why, want), func() error {
			resp, err := http.Get("http://" + srv.Addr().String() + "/readyz?verbose")
			if err != nil {
				return err
			}
			resp.Body.Close()
			if resp.StatusCode != want {
				return fmt.Errorf("/readyz = %d", resp.StatusCode)
			}
			return nil
		})
	}
}
