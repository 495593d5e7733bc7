package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/health"
)

func sampleStatus(ready bool) health.Status {
	now := time.Now()
	return health.Status{
		Schema: 1,
		Node: health.NodeStatus{Name: "use1-a", Region: "us-east-1", Version: "v1", Started: now.Add(-time.Hour),
			Ready: ready, EgressMode: "netstack", ListenPort: 51820, Prefixes: []string{"10.1.0.0/16"}},
		Checks: []health.CheckResult{{Name: "dataplane", OK: ready, Error: map[bool]string{false: "no echo reply"}[ready]},
			{Name: "clocks", Advisory: true, Error: "records refused from gw-2 (10m0s ahead)"}},
		Probe: health.ProbeStatus{Target: "10.99.0.1 via netstack", OK: ready, RTTSeconds: 0.0004, Successes: 9},
		Members: []health.MemberStatus{{Name: "use1-a", Region: "us-east-1", State: "alive", Self: true, Ready: ready,
			ConfigDigest: "0123456789abcdef"}},
		Regions: []health.RegionStatus{{Name: "us-east-1", Members: 1, Prefixes: []string{"10.1.0.0/16"}}},
		RefusedPrefixes: []health.RefusedPrefixStatus{{Member: "x1\x1b[2J", Region: "evil", Prefix: "0.0.0.0/0",
			Reason: "default_route", Detail: "a default route", Since: now.Add(-5 * time.Minute)}},
		Clients: []health.ClientStatus{
			{Name: "alice", AllowedIPs: []string{"10.99.0.2/32"}, Owner: "use1-a", Endpoint: "198.51.100.7:4500",
				LastHandshake: now.Add(-30 * time.Second), RxBytes: 3 << 20, TxBytes: 2048},
			{Name: "bob\x1b[2J", AllowedIPs: []string{"10.99.0.3/32"}},
		},
	}
}

// fakeGateway serves /readyz and /status like a gateway's health listener.
func fakeGateway(t *testing.T, ready bool) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if !ready {
			w.WriteHeader(503)
			io.WriteString(w, "[+] clients ok\n[-] dataplane failed: no echo reply\nreadyz check failed\n")
			return
		}
		io.WriteString(w, "[+] dataplane ok\n[!] clocks warning: records refused from gw-2\nreadyz check passed\n")
	})
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(sampleStatus(ready))
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestHealthcheckExitCodes(t *testing.T) {
	up := fakeGateway(t, true)
	down := fakeGateway(t, false)
	if code, out, _ := runCLI(t, "", "healthcheck", "--addr", up); code != 0 || out != "ready\n" {
		t.Errorf("ready gateway: exit %d, %q", code, out)
	}
	if code, out, _ := runCLI(t, "", "healthcheck", "--quiet", "--addr", up); code != 0 || out != "" {
		t.Errorf("--quiet: exit %d, %q", code, out)
	}
	code, _, errOut := runCLI(t, "", "healthcheck", "--addr", down)
	if code != 1 || !strings.Contains(errOut, "not ready") || !strings.Contains(errOut, "dataplane failed: no echo reply") {
		t.Errorf("unready gateway: exit %d, %q", code, errOut)
	}
	// Nothing listening.
	code, _, errOut = runCLI(t, "", "healthcheck", "--addr", "127.0.0.1:1", "--timeout", "2s")
	if code != 1 || !strings.Contains(errOut, "not ready") {
		t.Errorf("no gateway: exit %d, %q", code, errOut)
	}
	for _, args := range [][]string{{"--addr", "nope"}, {"--addr", "http://x:1/"}, {"--timeout", "0s"}, {"extra"}} {
		if code, _, _ := runCLI(t, "", append([]string{"healthcheck"}, args...)...); code != 2 {
			t.Errorf("healthcheck %v: exit %d, want 2", args, code)
		}
	}
}

func TestStatusTable(t *testing.T) {
	code, out, errOut := runCLI(t, "", "status", "--addr", fakeGateway(t, true))
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"node use1-a  region us-east-1", "READY", "checks: dataplane ok", "clocks WARNING (records refused from gw-2 (10m0s ahead))",
		"MEMBER", "use1-a (self)", "0123456789ab",
		"REGION", "10.1.0.0/16",
		"REFUSED PREFIX", "0.0.0.0/0", "x1?[2J", "evil", "default_route", "a default route", "5m0s ago",
		"CLIENT", "alice", "10.99.0.2/32", "198.51.100.7:4500", "30s ago", "3.0 MiB", "2.0 KiB",
		"bob?[2J", "never",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("status output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "\x1b") {
		t.Error("an escape sequence from the server reached the terminal")
	}
	code, out, _ = runCLI(t, "", "status", "--addr", fakeGateway(t, false))
	if code != 0 || !strings.Contains(out, "NOT READY") || !strings.Contains(out, "dataplane FAILED (no echo reply)") {
		t.Errorf("unready: exit %d:\n%s", code, out)
	}
	// Nothing there: the error says where /status lives.
	if code, _, errOut := runCLI(t, "", "status", "--addr", "127.0.0.1:1", "--timeout", "1s"); code != 1 || !strings.Contains(errOut, "health.admin_listen") {
		t.Errorf("no gateway: exit %d %q", code, errOut)
	}
	// The load balancers' listener leaves /status out (404): say so.
	probesOnly := httptest.NewServer(http.NotFoundHandler())
	defer probesOnly.Close()
	if code, _, errOut := runCLI(t, "", "status", "--addr", probesOnly.Listener.Addr().String()); code != 1 ||
		!strings.Contains(errOut, "answered 404: that is health.listen") || !strings.Contains(errOut, "127.0.0.1:8081") {
		t.Errorf("health.listen instead of the admin listener: exit %d %q", code, errOut)
	}
	// By default status asks the admin listener's default address,
	// healthcheck the health listener's.
	if _, _, errOut := runCLI(t, "", "status", "--help"); !strings.Contains(errOut, `(default "127.0.0.1:8081")`) {
		t.Errorf("status --help:\n%s", errOut)
	}
	if _, _, errOut := runCLI(t, "", "healthcheck", "--help"); !strings.Contains(errOut, `(default "127.0.0.1:8080")`) {
		t.Errorf("healthcheck --help:\n%s", errOut)
	}
}

// FuzzStatus feeds arbitrary /status bodies to the table printer: it must
// never panic, and what it prints must hold no control characters but
// newlines.
func FuzzStatus(f *testing.F) {
	b, _ := json.Marshal(sampleStatus(true))
	f.Add(b)
	f.Add([]byte(`{"schema":1}`))
	f.Add([]byte(`{"schema":1,"clients":[{"name":"\u001b[31m"}],"members":null}`))
	f.Add([]byte(`{"schema":2}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, body []byte) {
		st, err := parseStatus(body)
		if err != nil {
			return
		}
		var sb strings.Builder
		if err := printStatus(&sb, st, time.Unix(1e9, 0)); err != nil {
			t.Fatal(err)
		}
		for _, r := range sb.String() {
			if r < 0x20 && r != '\n' {
				t.Fatalf("control character %q in output", r)
			}
		}
	})
}

// FuzzHealthURL: any --addr either is refused or makes a URL to /readyz
// on the host and port given.
func FuzzHealthURL(f *testing.F) {
	for _, s := range []string{"127.0.0.1:8080", ":8080", "[::1]:8080", "0.0.0.0:1", "x", "a:b:c", "h:1/../x", "u@h:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		u, err := healthURL(addr, "/readyz")
		if err != nil {
			return
		}
		req, err := http.NewRequestWithContext(context.Background(), "GET", u, nil)
		if err != nil || req.URL.Path != "/readyz" || req.URL.User != nil || req.URL.RawQuery != "" {
			t.Fatalf("--addr %q made URL %q (%v)", addr, u, err)
		}
	})
}
