package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// defaultHealthAddr is where healthcheck looks by default: the health
// listener's default port on this host. defaultAdminAddr is where status
// looks: health.admin_listen's default, which serves /status.
const (
	defaultHealthAddr = "127.0.0.1:8080"
	defaultAdminAddr  = "127.0.0.1:8081"
)

// errNotReady is the healthcheck's failure: the gateway answered, not ready.
var errNotReady = errors.New("not ready")

// healthURL turns --addr (HOST:PORT, :PORT or [V6]:PORT) into a URL of
// the health listener. An empty or unspecified host means this host.
func healthURL(addr, path string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err == nil {
		_, err = strconv.ParseUint(port, 10, 16)
	}
	if err != nil || !validHost(host) {
		return "", usagef("--addr %q: want HOST:PORT, e.g. 127.0.0.1:8080", addr)
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port) + path, nil
}

// validHost accepts an IP address (without zone), a DNS name or "".
func validHost(h string) bool {
	if ip, err := netip.ParseAddr(h); err == nil {
		return ip.Zone() == ""
	}
	if len(h) > 253 {
		return false
	}
	for _, r := range h {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// fetch GETs url and returns the status and up to limit bytes of body.
func fetch(ctx context.Context, url string, timeout time.Duration, limit int64) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return 0, nil, err
	}
	if int64(len(body)) > limit {
		return 0, nil, fmt.Errorf("%s: answer larger than %d bytes", url, limit)
	}
	return resp.StatusCode, body, nil
}

func cmdHealthcheck(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("healthcheck", "[--addr HOST:PORT] [--timeout D]",
		"Ask a gateway's /readyz. Exit 0 when it is ready, 1 when it is not or does not answer\n(for Docker HEALTHCHECK in images without curl).", stderr)
	addr := fs.String("addr", defaultHealthAddr, "the gateway's health listener (health.listen)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	quiet := fs.Bool("quiet", false, "print nothing when ready")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("--timeout %s: want a positive duration", *timeout)
	}
	url, err := healthURL(*addr, "/readyz?verbose")
	if err != nil {
		return err
	}
	code, body, err := fetch(ctx, url, *timeout, 64<<10)
	if err != nil {
		return fmt.Errorf("%w: %v", errNotReady, err)
	}
	if code != http.StatusOK {
		return fmt.Errorf("%w: %s answered %d: %s", errNotReady, url, code, failingLines(string(body)))
	}
	if !*quiet {
		fmt.Fprintln(stdout, "ready")
	}
	return nil
}

// failingLines picks the failed checks out of a /readyz?verbose body.
func failingLines(body string) string {
	var out []string
	for line := range strings.SplitSeq(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "[-] "); ok {
			out = append(out, rest)
		}
	}
	if len(out) == 0 {
		return strings.TrimSpace(body)
	}
	return strings.Join(out, "; ")
}
