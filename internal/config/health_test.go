package config

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestHealthDefaultsAndValues(t *testing.T) {
	c := mustParse(t, head, "")
	if c.Health.Listen != ":8080" || c.Health.AdminListen != "127.0.0.1:8081" || c.Health.TCPListen != ":51819" || c.Health.DrainTimeout != 30*time.Second ||
		c.Health.PerClientMetrics || c.Health.PerClientLimit != 1000 {
		t.Errorf("defaults: %+v", c.Health)
	}
	c = mustParse(t, head+"health:\n  listen: 10.0.1.5:9090\n  tcp_listen: \"off\"\n  drain_timeout: 1m30s\n  per_client_metrics: true\n  per_client_limit: 5\n", "")
	want := Health{Listen: "10.0.1.5:9090", AdminListen: "127.0.0.1:8081", TCPListen: "off", DrainTimeout: 90 * time.Second, PerClientMetrics: true, PerClientLimit: 5}
	if c.Health != want {
		t.Errorf("got %+v, want %+v", c.Health, want)
	}
	// off: everything on listen, as before admin_listen existed; port 0
	// (tests starting many gateways) never conflicts.
	for _, admin := range []string{"off", ":8081", "10.0.1.5:8080", "[::1]:8080", "127.0.0.1:0"} {
		c = mustParse(t, head+"health:\n  listen: \"127.0.0.1:0\"\n  tcp_listen: \"127.0.0.1:0\"\n  admin_listen: \""+admin+"\"\n", "")
		if c.Health.AdminListen != admin {
			t.Errorf("admin_listen %q parsed as %q", admin, c.Health.AdminListen)
		}
	}
	c = mustParse(t, head+"health:\n  listen: \"[::1]:0\"\n  drain_timeout: 0s\n", "")
	if c.Health.Listen != "[::1]:0" || c.Health.DrainTimeout != 0 {
		t.Errorf("got %+v", c.Health)
	}
}

func TestHealthErrors(t *testing.T) {
	for _, tc := range []struct {
		yaml, path, text string
		line             int
	}{
		{"health:\n  drain_timeout: 30\n", "health.drain_timeout", "write 30s for seconds", 6},
		{"health:\n  drain_timeout: soon\n", "health.drain_timeout", `"soon" is not a duration`, 6},
		{"health:\n  drain_timeout: -1s\n", "health.drain_timeout", "out of range", 6},
		{"health:\n  drain_timeout: 2h\n", "health.drain_timeout", "out of range", 6},
		{"health:\n  drain_timeout: [1s]\n", "health.drain_timeout", "expected a string, got a list", 6},
		{"health:\n  listen: 8080\n", "health.listen", "not a host:port", 6},
		{"health:\n  listen: \":http\"\n", "health.listen", "is not a number", 6},
		{"health:\n  listen: \"off\"\n", "health.listen", "not a host:port", 6},
		{"health:\n  listen: \"example.com:80\"\n", "health.listen", "not an IP address", 6},
		{"health:\n  tcp_listen: \":99999\"\n", "health.tcp_listen", "is not a number", 6},
		{"health:\n  admin_listen: 8081\n", "health.admin_listen", "not a host:port", 6},
		{"health:\n  admin_listen: \"\"\n", "health.admin_listen", "not a host:port", 6},
		{"health:\n  admin_listen: \"localhost:http\"\n", "health.admin_listen", "is not a number", 6},
		{"health:\n  admin_listen: \"admin.internal:8081\"\n", "health.admin_listen", "not an IP address", 6},
		{"health:\n  admin_listen: [\":8081\"]\n", "health.admin_listen", "expected a string, got a list", 6},
		// Ports that the listeners would fight over.
		{"health:\n  admin_listen: \":8080\"\n", "health.admin_listen", `would share its port with health.listen ":8080"`, 6},
		{"health:\n  admin_listen: \"127.0.0.1:8080\"\n", "health.admin_listen", "would share its port with health.listen", 6},
		{"health:\n  listen: \"10.0.1.5:8081\"\n  admin_listen: \"0.0.0.0:8081\"\n", "health.admin_listen", "would share its port", 7},
		{"health:\n  listen: \"127.0.0.1:9000\"\n  admin_listen: \"localhost:9000\"\n", "health.admin_listen", "would share its port", 7},
		{"health:\n  tcp_listen: \"127.0.0.1:8081\"\n", "health.tcp_listen", `would share its port with health.admin_listen "127.0.0.1:8081"`, 6},
		{"health:\n  tcp_listen: \"[::]:8080\"\n", "health.tcp_listen", "would share its port with health.listen", 6},
		{"health:\n  per_client_limit: 0\n", "health.per_client_limit", "out of range 1..100000", 6},
		{"health:\n  drain_timeot: 1s\n", "health.drain_timeot", "did you mean drain_timeout?", 6},
	} {
		_, err := Parse([]byte(fill(head+tc.yaml)), "")
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Path != tc.path || fe.Line != tc.line || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%q: got %v (%+v), want %s on line %d containing %q", tc.yaml, err, fe, tc.path, tc.line, tc.text)
		}
	}
}
