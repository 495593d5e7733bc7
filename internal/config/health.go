package config

import (
	"net"
	"strconv"
	"time"
)

// Health defaults.
const (
	DefaultHealthListen    = ":8080"
	DefaultHealthTCPListen = ":51819"
	// DefaultHealthAdminListen keeps /status (which names every client),
	// the status page and /metrics on loopback, off the port load
	// balancers reach: next to :8080, and free of the ports the gateway
	// itself uses (51819-51821, 7946) and of Prometheus' (9090) and the
	// exporters' (9100 and up).
	DefaultHealthAdminListen = "127.0.0.1:8081"
	// DefaultDrainTimeout outlasts an AWS NLB's health check at its
	// tightest common setting (interval 10 s × unhealthy threshold 2 = 20 s)
	// with 10 s to spare for the load balancer to act on it.
	DefaultDrainTimeout   = 30 * time.Second
	DefaultPerClientLimit = 1000
	// Off disables health.tcp_listen, and health.admin_listen (which puts
	// everything back on health.listen).
	Off = "off"
)

// Health configures the health, metrics and status listener, the TCP
// health port and draining.
type Health struct {
	// Listen is the HTTP listener's host:port for /livez, /readyz and
	// /healthz (and, with AdminListen off, /metrics, /status and the status
	// page). Default ":8080"; bind it to a private interface (e.g.
	// 10.0.1.5:8080) when the host has a public one.
	Listen string `yaml:"listen"`
	// AdminListen is a second HTTP listener's host:port for /status, the
	// status page and /metrics, so that the load balancers' port keeps
	// only /livez, /readyz and /healthz and the client list is not on it.
	// Default "127.0.0.1:8081"; ":8081" or a private address for a remote
	// Prometheus; "off" serves everything on Listen.
	AdminListen string `yaml:"admin_listen"`
	// TCPListen is a TCP port that accepts connections only while the
	// gateway is ready, for TCP health checks. Default ":51819"; "off"
	// disables it.
	TCPListen string `yaml:"tcp_listen"`
	// DrainTimeout is how long traffic keeps flowing after SIGTERM while
	// /readyz answers 503, before the gateway exits. Default 30s.
	DrainTimeout time.Duration `yaml:"drain_timeout"`
	// PerClientMetrics adds per-client series (labelled by client name)
	// to /metrics, for at most PerClientLimit clients. Default false.
	PerClientMetrics bool `yaml:"per_client_metrics"`
	PerClientLimit   int  `yaml:"per_client_limit"` // 1..100000, default 1000
}

func (h *Health) validate(v *validator) error {
	if err := checkListen(v, "health.listen", h.Listen, false); err != nil {
		return err
	}
	if err := checkListen(v, "health.tcp_listen", h.TCPListen, true); err != nil {
		return err
	}
	if err := checkListen(v, "health.admin_listen", h.AdminListen, true); err != nil {
		return err
	}
	if sameListen(h.AdminListen, h.Listen) {
		return v.errorf("health.admin_listen", ErrConflict, "%q would share its port with health.listen %q; give the admin listener its own port, or \"off\" to serve everything on health.listen", h.AdminListen, h.Listen)
	}
	if sameListen(h.TCPListen, h.Listen) {
		return v.errorf("health.tcp_listen", ErrConflict, "%q would share its port with health.listen %q", h.TCPListen, h.Listen)
	}
	if sameListen(h.TCPListen, h.AdminListen) {
		return v.errorf("health.tcp_listen", ErrConflict, "%q would share its port with health.admin_listen %q", h.TCPListen, h.AdminListen)
	}
	if h.DrainTimeout < 0 || h.DrainTimeout > time.Hour {
		return v.errorf("health.drain_timeout", ErrInvalidValue, "%s is out of range 0s..1h", h.DrainTimeout)
	}
	if h.PerClientLimit < 1 || h.PerClientLimit > 100000 {
		return v.errorf("health.per_client_limit", ErrInvalidValue, "%d is out of range 1..100000", h.PerClientLimit)
	}
	return nil
}

// sameListen reports whether two checked TCP listen addresses would claim
// the same port: the same non-zero port on the same host, or with either on
// every address ("", 0.0.0.0, ::). Port 0 picks a free one and never
// conflicts.
func sameListen(a, b string) bool {
	if a == Off || b == Off {
		return false
	}
	ha, pa, errA := net.SplitHostPort(a)
	hb, pb, errB := net.SplitHostPort(b)
	if errA != nil || errB != nil {
		return false
	}
	na, _ := strconv.ParseUint(pa, 10, 16)
	nb, _ := strconv.ParseUint(pb, 10, 16)
	if na == 0 || na != nb {
		return false
	}
	norm := func(h string) string {
		if h == "localhost" {
			return "127.0.0.1"
		}
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() {
				return ""
			}
			return ip.String()
		}
		return h
	}
	ha, hb = norm(ha), norm(hb)
	return ha == "" || hb == "" || ha == hb
}

// checkListen checks a host:port listen address; "off" is accepted when
// the listener is optional.
func checkListen(v *validator, path, s string, optional bool) error {
	if optional && s == Off {
		return nil
	}
	host, port, err := net.SplitHostPort(s)
	if err != nil || port == "" {
		return v.errorf(path, ErrInvalidValue, "%q is not a host:port listen address such as :8080 or 10.0.1.5:8080", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return v.errorf(path, ErrInvalidValue, "%q: port %q is not a number in 0..65535", s, port)
	}
	if host != "" {
		if ip := net.ParseIP(host); ip == nil && host != "localhost" {
			return v.errorf(path, ErrInvalidValue, "%q: host %q is not an IP address; give an address of this machine's interfaces or leave it empty for all", s, host)
		}
	}
	return nil
}
