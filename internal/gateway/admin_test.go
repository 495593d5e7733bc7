package gateway_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestServeHealthAdminSplit: with health.admin_listen set (its default is
// 127.0.0.1:8081) the load balancers' listener answers the probes only and
// the client list is on the admin listener; "off" puts it back.
func TestServeHealthAdminSplit(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	he := startHealthGateway(t, srv)
	if he.srv.AdminAddr() == nil {
		t.Fatal("no admin listener with health.admin_listen 127.0.0.1:0")
	}
	admin := "http://" + he.srv.AdminAddr().String()
	for _, tc := range []struct {
		url  string
		want int
	}{
		{he.base + "/status", http.StatusNotFound},
		{he.base + "/metrics", http.StatusNotFound},
		{he.base + "/", http.StatusNotFound},
		{he.base + "/livez", http.StatusOK},
		{admin + "/status", http.StatusOK},
		{admin + "/metrics", http.StatusOK},
	} {
		resp, err := http.Get(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET %s = %d, want %d", tc.url, resp.StatusCode, tc.want)
		}
	}

	gwKey, _ := keys.Generate()
	cliKey, _ := keys.Generate()
	cfg := testConfig(gwKey, cliKey, netip.MustParsePrefix("10.1.0.0/16"))
	cfg.Health.AdminListen = config.Off
	gw, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	st, hs, err := gw.ServeHealth(gateway.HealthOptions{Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	defer hs.Close()
	if hs.AdminAddr() != nil {
		t.Errorf("admin_listen off: an admin listener on %v", hs.AdminAddr())
	}
	resp, err := http.Get("http://" + hs.Addr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("admin_listen off: /status on health.listen = %d", resp.StatusCode)
	}
}

func (he *healthEnv) readyz(t *testing.T) (int, string) {
	t.Helper()
	resp, err := http.Get(he.base + "/readyz?verbose")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// tcpOpen reports whether the TCP health port accepts a connection.
func (he *healthEnv) tcpOpen() bool {
	c, err := net.DialTimeout("tcp", he.srv.TCPAddr().String(), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// waitReady waits until /readyz answers want and the TCP port agrees.
func (he *healthEnv) waitReady(t *testing.T, want int, why string) string {
	t.Helper()
	var body string
	testwait.NoError(t, 10*time.Second, fmt.Sprintf("%s: /readyz to answer %d", why, want), func() error {
		var code int
		code, body = he.readyz(t)
		if open := he.tcpOpen(); code != want || open != (want == http.StatusOK) {
			return fmt.Errorf("/readyz = %d (TCP port open: %v):\n%s", code, open, body)
		}
		return nil
	})
	return body
}
