package health

import (
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
)

// TestAdminListener: with AdminListen set, the load balancers' port keeps
// the probes only, and the client list, the page and the metrics are on
// the admin port alone.
func TestAdminListener(t *testing.T) {
	st := newTestState(t)
	s, err := Listen(Config{Listen: "127.0.0.1:0", AdminListen: "127.0.0.1:0", State: st, Metrics: fakeSource{clients: 2}, Status: fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func(addr net.Addr, path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatalf("GET %s%s: %v", addr, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, path := range []string{"/livez", "/readyz", "/healthz"} {
		if code, _ := get(s.Addr(), path); code != 200 && code != 503 {
			t.Errorf("public %s: %d", path, code)
		}
		if code, _ := get(s.AdminAddr(), path); code != 200 && code != 503 {
			t.Errorf("admin %s: %d", path, code)
		}
	}
	for _, path := range []string{"/status", "/", "/metrics"} {
		if code, body := get(s.Addr(), path); code != http.StatusNotFound || strings.Contains(body, "gw-<1>") {
			t.Errorf("public %s: %d, want 404", path, code)
		}
	}
	if code, body := get(s.AdminAddr(), "/status"); code != 200 || !strings.Contains(body, `"gw-\u003c1\u003e"`) {
		t.Errorf("admin /status: %d %s", code, body)
	}
	if code, body := get(s.AdminAddr(), "/metrics"); code != 200 || !strings.Contains(body, "anyguard_clients_configured 5") {
		t.Errorf("admin /metrics: %d", code)
	}
	if code, _ := get(s.AdminAddr(), "/"); code != 200 {
		t.Errorf("admin /: %d", code)
	}
}

// TestAdminListenerUnset: without AdminListen everything stays on Listen,
// as before, and there is no admin address.
func TestAdminListenerUnset(t *testing.T) {
	s, err := Listen(Config{Listen: "127.0.0.1:0", State: newTestState(t), Status: fakeSource{}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.AdminAddr() != nil {
		t.Errorf("admin address %v without AdminListen", s.AdminAddr())
	}
	resp, err := http.Get("http://" + s.Addr().String() + "/status")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/status on the one listener: %v", err)
	}
	resp.Body.Close()
}

func TestAdminListenErrorNamesTheField(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(Config{Listen: "127.0.0.1:0", AdminListen: ln.Addr().String(), State: newTestState(t)})
	if !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), "health.admin_listen") {
		t.Errorf("admin port in use: %v", err)
	}
}
