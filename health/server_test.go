package health

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"reflect"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/anyguard/anyguard/internal/testwait"
)

// fakeSource is a gateway as the health package sees it.
type fakeSource struct{ clients int }

func (f fakeSource) Metrics() Metrics {
	var h Histogram
	h.Observe(30 * time.Millisecond)
	h.Observe(2 * time.Second)
	m := Metrics{
		Peers:             map[string]int{"active": 1, "stale": 0, "never": 1},
		ClientsConfigured: 5,
		PeersAdded:        2,
		PeersRemoved:      map[string]uint64{"idle": 1, "reload": 0, "moved": 0},
		Initiations:       map[string]uint64{"accepted": 3, "unknown_key": 1},
		HandshakeMessages: map[string]uint64{"initiation": 3, "response": 0, "cookie_reply": 0},
		JunkDatagrams:     7,
		Paths: []PathCounters{{"client", "rx", 10, 1000}, {"client", "tx", 9, 900},
			{"backbone", "rx", 0, 0}, {"backbone", "tx", 0, 0}, {"egress", "rx", 9, 900}, {"egress", "tx", 10, 1000}},
		Drops:            []DropCounter{{"router", "no_route", 2}, {"router", "ttl_expired", 0}},
		OwnedClients:     1,
		OwnershipChanges: map[string]uint64{"handshake": 1, "data": 0, "takeover": 0, "release": 0},
		Members:          map[string]int{"alive": 1, "dead": 0, "left": 0},
		Gossip:           map[string]uint64{"received": 7, "bad": 1},
		ConfigDigest:     "abc123",
		ConfigReloads:    map[string]uint64{"success": 2, "failure": 1},
		Node:             "gw-1",
		Region:           "r1",
		Convergence:      h.Snapshot(),
		Probe:            ProbeCounters{Successes: 5, Failures: 1, LastRTT: time.Millisecond, LastSuccess: time.Now()},
	}
	for i := range f.clients {
		m.Clients = append(m.Clients, ClientCounters{Name: fmt.Sprintf("client-%04d", i), RxBytes: 1, TxBytes: 2})
	}
	return m
}

func (f fakeSource) Status() Status {
	return Status{
		Node: NodeStatus{Name: "gw-<1>", Region: "r1", Started: time.Now().Add(-time.Minute), EgressMode: "netstack",
			ListenPort: 51820, ConfigDigest: "abc123", Prefixes: []string{"10.1.0.0/16"}},
		Probe:   ProbeStatus{Target: "10.99.0.1 via netstack", OK: true, LastSuccess: time.Now(), RTTSeconds: 0.001, Successes: 5},
		Members: []MemberStatus{{Name: "gw-<1>", Region: "r1", State: "alive", Self: true, Ready: true, ConfigDigest: "abc123"}},
		Regions: []RegionStatus{{Name: "r1", Members: 1, Prefixes: []string{"10.1.0.0/16"}}},
		RefusedPrefixes: []RefusedPrefixStatus{{Member: "x<1>", Region: "evil", Prefix: "0.0.0.0/0", Reason: "default_route",
			Detail: "a default route", Since: time.Now()}},
		Clients: []ClientStatus{
			{Name: "alice", AllowedIPs: []string{"10.99.0.2/32"}, Owner: "gw-<1>", Endpoint: "192.0.2.7:4242", LastHandshake: time.Now(), RxBytes: 5 << 20, TxBytes: 12},
			{Name: "<script>bob</script>", AllowedIPs: []string{"10.99.0.3/32"}},
		},
	}
}

// switchCheck is a check whose answer the test sets.
type switchCheck struct{ err atomic.Pointer[error] }

func (c *switchCheck) set(err error) { c.err.Store(&err) }

func (c *switchCheck) check(name string) Check {
	c.set(nil)
	return Check{Name: name, Run: func(context.Context) error { return *c.err.Load() }}
}

func newTestState(t *testing.T, checks ...Check) *State {
	t.Helper()
	st := NewState(checks, StateOptions{Interval: 20 * time.Millisecond})
	t.Cleanup(st.Close)
	return st
}

// httpGet returns the status code and body of a GET of url.
func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestReadyzChecksAndDrain(t *testing.T) {
	var sw switchCheck
	st := newTestState(t, sw.check("dataplane"))
	srv := httptest.NewServer(NewHandler(Config{State: st}))
	defer srv.Close()
	get := func(path string) (int, string) { return httpGet(t, srv.URL+path) }
	testwait.Until(t, 5*time.Second, "ready", st.Ready)
	for _, p := range []string{"/readyz", "/healthz"} {
		if code, body := get(p); code != 200 || body != "ok\n" {
			t.Errorf("%s = %d %q", p, code, body)
		}
	}
	sw.set(errors.New("no echo reply"))
	testwait.Until(t, 5*time.Second, "not ready", func() bool { return !st.Ready() })
	code, body := get("/readyz?verbose")
	if code != 503 || !strings.Contains(body, "[-] dataplane failed: no echo reply") || !strings.Contains(body, "readyz check failed") {
		t.Errorf("/readyz?verbose = %d %q", code, body)
	}
	if code, _ := get("/livez"); code != 200 {
		t.Errorf("/livez = %d while unready", code)
	}
	sw.set(nil)
	testwait.Until(t, 5*time.Second, "ready again", st.Ready)
	st.StartDrain()
	if st.Ready() {
		t.Fatal("ready right after StartDrain")
	}
	if code, body := get("/readyz?verbose"); code != 503 || !strings.Contains(body, "[-] draining:") {
		t.Errorf("draining: /readyz?verbose = %d %q", code, body)
	}
}

// TestAdvisoryCheck: a failing advisory check is listed as a warning
// and leaves the gateway ready; a failing readiness check does not.
func TestAdvisoryCheck(t *testing.T) {
	var dp, clocks switchCheck
	adv := clocks.check("clocks")
	adv.Advisory = true
	st := newTestState(t, dp.check("dataplane"), adv)
	srv := httptest.NewServer(NewHandler(Config{State: st}))
	defer srv.Close()
	get := func() (int, string) { return httpGet(t, srv.URL+"/readyz?verbose") }
	clocks.set(errors.New("member gw-2's clock is 10m0s ahead"))
	testwait.Until(t, 5*time.Second, "the advisory check to have run", func() bool {
		_, body := get()
		return strings.Contains(body, "[!] clocks warning: member gw-2's clock is 10m0s ahead")
	})
	if code, body := get(); code != 200 || !st.Ready() || !strings.Contains(body, "[+] dataplane ok") || !strings.Contains(body, "readyz check passed") {
		t.Fatalf("with only an advisory check failing: %d %q", code, body)
	}
	dp.set(errors.New("no echo reply"))
	testwait.Until(t, 5*time.Second, "not ready", func() bool { return !st.Ready() })
	for _, r := range st.Results() {
		if r.Name == "clocks" && (!r.Advisory || r.OK) {
			t.Fatalf("clocks result %+v", r)
		}
	}
}

func TestTCPPortFollowsReadiness(t *testing.T) {
	var sw switchCheck
	st := newTestState(t, sw.check("x"))
	sw.set(errors.New("not yet"))
	s, err := Listen(Config{Listen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", State: st})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	open := func() bool {
		c, err := net.DialTimeout("tcp", s.TCPAddr().String(), time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	}
	testwait.Until(t, 5*time.Second, "TCP port closed while unready", func() bool { return !open() })
	sw.set(nil)
	testwait.Until(t, 5*time.Second, "TCP port open while ready", open)
	sw.set(errors.New("broken"))
	testwait.Until(t, 5*time.Second, "TCP port closed again", func() bool { return !open() })
	sw.set(nil)
	testwait.Until(t, 5*time.Second, "TCP port open again", open)
	st.StartDrain()
	testwait.Until(t, 5*time.Second, "TCP port closed while draining", func() bool { return !open() })
}

func TestListenErrorsNameTheField(t *testing.T) {
	st := newTestState(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	_, err = Listen(Config{Listen: ln.Addr().String(), State: st})
	if !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), "health.listen") {
		t.Errorf("HTTP port in use: %v", err)
	}
	_, err = Listen(Config{Listen: "127.0.0.1:0", TCPListen: ln.Addr().String(), State: st})
	if !errors.Is(err, ErrListen) || !strings.Contains(err.Error(), "health.tcp_listen") {
		t.Errorf("TCP port in use: %v", err)
	}
}

// wantFamilies are the metric names and types /metrics must offer.
var wantFamilies = map[string]dto.MetricType{
	"anyguard_build_info":                           dto.MetricType_GAUGE,
	"anyguard_ready":                                dto.MetricType_GAUGE,
	"anyguard_draining":                             dto.MetricType_GAUGE,
	"anyguard_check_ok":                             dto.MetricType_GAUGE,
	"anyguard_peers":                                dto.MetricType_GAUGE,
	"anyguard_clients_configured":                   dto.MetricType_GAUGE,
	"anyguard_peers_added_total":                    dto.MetricType_COUNTER,
	"anyguard_peers_removed_total":                  dto.MetricType_COUNTER,
	"anyguard_initiations_total":                    dto.MetricType_COUNTER,
	"anyguard_handshake_messages_received_total":    dto.MetricType_COUNTER,
	"anyguard_junk_datagrams_total":                 dto.MetricType_COUNTER,
	"anyguard_packets_total":                        dto.MetricType_COUNTER,
	"anyguard_bytes_total":                          dto.MetricType_COUNTER,
	"anyguard_dropped_packets_total":                dto.MetricType_COUNTER,
	"anyguard_owned_clients":                        dto.MetricType_GAUGE,
	"anyguard_ownership_changes_total":              dto.MetricType_COUNTER,
	"anyguard_gossip_members":                       dto.MetricType_GAUGE,
	"anyguard_gossip_events_total":                  dto.MetricType_COUNTER,
	"anyguard_convergence_seconds":                  dto.MetricType_HISTOGRAM,
	"anyguard_config_info":                          dto.MetricType_GAUGE,
	"anyguard_config_digest_mismatch":               dto.MetricType_GAUGE,
	"anyguard_node_info":                            dto.MetricType_GAUGE,
	"anyguard_config_reloads_total":                 dto.MetricType_COUNTER,
	"anyguard_probes_total":                         dto.MetricType_COUNTER,
	"anyguard_probe_rtt_seconds":                    dto.MetricType_GAUGE,
	"anyguard_probe_last_success_timestamp_seconds": dto.MetricType_GAUGE,
}

var perClientFamilies = map[string]dto.MetricType{
	"anyguard_client_receive_bytes_total":              dto.MetricType_COUNTER,
	"anyguard_client_transmit_bytes_total":             dto.MetricType_COUNTER,
	"anyguard_client_last_handshake_timestamp_seconds": dto.MetricType_GAUGE,
	"anyguard_client_series_omitted":                   dto.MetricType_GAUGE,
}

func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Fatalf("/metrics = %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		t.Fatalf("/metrics is not valid Prometheus text: %v", err)
	}
	return fams
}

func TestMetricsNamesAndTypes(t *testing.T) {
	var sw switchCheck
	st := newTestState(t, sw.check("dataplane"))
	testwait.Until(t, 5*time.Second, "ready", st.Ready)
	fams := scrape(t, NewHandler(Config{State: st, Metrics: fakeSource{clients: 5}, Version: "v9", Revision: "abc123"}))
	for name, typ := range wantFamilies {
		f, ok := fams[name]
		if !ok {
			t.Errorf("missing %s", name)
			continue
		}
		if f.GetType() != typ {
			t.Errorf("%s is a %v, want %v", name, f.GetType(), typ)
		}
		if !strings.HasPrefix(name, "anyguard_") || f.GetHelp() == "" {
			t.Errorf("%s: no prefix or help", name)
		}
	}
	for name, f := range fams {
		if !strings.HasPrefix(name, "anyguard_") {
			continue
		}
		if _, ok := perClientFamilies[name]; ok {
			t.Errorf("%s exported with per-client metrics off", name)
		}
		// Prometheus naming: counters end in _total; nothing else does.
		if (f.GetType() == dto.MetricType_COUNTER) != strings.HasSuffix(name, "_total") {
			t.Errorf("%s: a %v with a name that breaks the _total rule", name, f.GetType())
		}
	}
	if v := fams["anyguard_ready"].Metric[0].GetGauge().GetValue(); v != 1 {
		t.Errorf("anyguard_ready = %v", v)
	}
	bi := fams["anyguard_build_info"].Metric[0]
	if labels(bi)["version"] != "v9" || labels(bi)["revision"] != "abc123" || labels(bi)["goversion"] != runtime.Version() {
		t.Errorf("build info labels %v", labels(bi))
	}
	h := fams["anyguard_convergence_seconds"].Metric[0].GetHistogram()
	if h.GetSampleCount() != 2 || len(h.Bucket) < len(ConvergenceBuckets) {
		t.Errorf("convergence histogram: %v", h)
	}
	var paths []string
	for _, m := range fams["anyguard_packets_total"].Metric {
		paths = append(paths, labels(m)["path"]+"/"+labels(m)["direction"])
	}
	sort.Strings(paths)
	if want := []string{"backbone/rx", "backbone/tx", "client/rx", "client/tx", "egress/rx", "egress/tx"}; !reflect.DeepEqual(paths, want) {
		t.Errorf("packet paths %v, want %v", paths, want)
	}
}

func labels(m *dto.Metric) map[string]string {
	out := map[string]string{}
	for _, l := range m.Label {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func TestPerClientMetricsCapped(t *testing.T) {
	st := newTestState(t)
	fams := scrape(t, NewHandler(Config{State: st, Metrics: fakeSource{clients: 30}, PerClientMetrics: true, PerClientLimit: 10}))
	for name, typ := range perClientFamilies {
		if f, ok := fams[name]; !ok || f.GetType() != typ {
			t.Errorf("%s missing or not a %v", name, typ)
		}
	}
	if n := len(fams["anyguard_client_receive_bytes_total"].Metric); n != 10 {
		t.Errorf("%d per-client series, want the cap of 10", n)
	}
	if v := fams["anyguard_client_series_omitted"].Metric[0].GetGauge().GetValue(); v != 20 {
		t.Errorf("omitted = %v, want 20", v)
	}
	if got := labels(fams["anyguard_client_receive_bytes_total"].Metric[0])["client"]; got != "client-0000" {
		t.Errorf("first client series is %q, want the first by name", got)
	}
}

// TestStatusSchema checks /status against the documented schema: every
// field present with its JSON type, no others, lists never null.
func TestStatusSchema(t *testing.T) {
	var sw switchCheck
	st := newTestState(t, sw.check("dataplane"))
	testwait.Until(t, 5*time.Second, "ready", st.Ready)
	for _, src := range []StatusSource{fakeSource{}, nil} {
		rec := httptest.NewRecorder()
		NewHandler(Config{State: st, Status: src, Version: "v9"}).ServeHTTP(rec, httptest.NewRequest("GET", "/status", nil))
		if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
			t.Fatalf("/status = %d %q", rec.Code, rec.Header().Get("Content-Type"))
		}
		var doc any
		if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
			t.Fatal(err)
		}
		checkSchema(t, "status", doc, statusSchema)
		if src != nil && (!strings.Contains(rec.Body.String(), `"name": "alice"`) || !strings.Contains(rec.Body.String(), `"ready": true`)) {
			t.Errorf("status body:\n%s", rec.Body)
		}
	}
}

// Schema notation: a map is an object with exactly those keys; a
// one-element slice is an array of that; strings name JSON types.
var (
	timeT        = "time"
	checkSchemaT = map[string]any{"name": "string", "ok": "bool", "error?": "string", "since": timeT, "checked": timeT}
	statusSchema = map[string]any{
		"schema": "number",
		"node": map[string]any{"name": "string", "region": "string", "version": "string", "started": timeT,
			"ready": "bool", "draining": "bool", "egress_mode": "string", "listen_port": "number",
			"config_digest": "string", "prefixes": []any{"string"}},
		"checks": []any{checkSchemaT},
		"probe": map[string]any{"target": "string", "ok": "bool", "error?": "string", "last_success": timeT,
			"rtt_seconds": "number", "successes": "number", "failures": "number"},
		"members": []any{map[string]any{"name": "string", "region": "string", "address": "string", "state": "string",
			"self": "bool", "ready": "bool", "config_digest": "string"}},
		"regions": []any{map[string]any{"name": "string", "members": "number", "prefixes": []any{"string"}}},
		"refused_prefixes": []any{map[string]any{"member": "string", "region": "string", "prefix": "string",
			"reason": "string", "detail": "string", "since": timeT}},
		"clients_configured": "number",
		"peers_live":         "number",
		"clients": []any{map[string]any{"name": "string", "allowed_ips": []any{"string"}, "owner": "string",
			"endpoint": "string", "last_handshake": timeT, "rx_bytes": "number", "tx_bytes": "number"}},
		"convergence": map[string]any{"observations": "number", "p50_seconds": "number", "p99_seconds": "number"},
	}
)

func checkSchema(t *testing.T, path string, v any, schema any) {
	t.Helper()
	switch s := schema.(type) {
	case map[string]any:
		obj, ok := v.(map[string]any)
		if !ok {
			t.Errorf("%s: %T, want an object", path, v)
			return
		}
		for k, sub := range s {
			name, optional := strings.CutSuffix(k, "?")
			val, ok := obj[name]
			if !ok {
				if !optional {
					t.Errorf("%s.%s missing", path, name)
				}
				continue
			}
			checkSchema(t, path+"."+name, val, sub)
		}
		for k := range obj {
			if _, ok := s[k]; !ok {
				if _, ok := s[k+"?"]; !ok {
					t.Errorf("%s.%s: not in the schema", path, k)
				}
			}
		}
	case []any:
		arr, ok := v.([]any)
		if !ok {
			t.Errorf("%s: %T, want an array (never null)", path, v)
			return
		}
		for i, e := range arr {
			checkSchema(t, fmt.Sprintf("%s[%d]", path, i), e, s[0])
		}
	case string:
		ok := false
		switch s {
		case "string":
			_, ok = v.(string)
		case "number":
			_, ok = v.(float64)
		case "bool":
			_, ok = v.(bool)
		case "time":
			str, isStr := v.(string)
			_, err := time.Parse(time.RFC3339Nano, str)
			ok = isStr && err == nil
		}
		if !ok {
			t.Errorf("%s: %v (%T), want %s", path, v, v, s)
		}
	}
}

func TestPageEscapesAndIsSelfContained(t *testing.T) {
	st := newTestState(t)
	rec := httptest.NewRecorder()
	NewHandler(Config{State: st, Status: fakeSource{}}).ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	body := rec.Body.String()
	if rec.Code != 200 || !strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("/ = %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	if strings.Contains(body, "<script>") || !strings.Contains(body, "&lt;script&gt;bob&lt;/script&gt;") {
		t.Error("client name not escaped")
	}
	if !strings.Contains(body, `<table id="refused">`) || !strings.Contains(body, "<td>x&lt;1&gt;</td><td>evil</td><td>0.0.0.0/0</td>") {
		t.Error("refused prefixes missing from the page, or a member name not escaped")
	}
	for _, ext := range []string{"http://", "https://", "src=", "@import"} {
		if strings.Contains(body, ext) {
			t.Errorf("page refers to something outside itself: %q", ext)
		}
	}
}

// TestBadRequests: unknown paths, wrong methods, bodies, long URLs and
// huge headers get 4xx; the listener keeps answering.
func TestBadRequests(t *testing.T) {
	st := newTestState(t)
	s, err := Listen(Config{Listen: "127.0.0.1:0", State: st})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	base := "http://" + s.Addr().String()
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/nope", "", 404},
		{"GET", "/readyz/x", "", 404},
		{"GET", "/../etc/passwd", "", 404},
		{"POST", "/readyz", "", 405},
		{"DELETE", "/metrics", "", 405},
		{"PUT", "/status", "x", 405},
		{"GET", "/status", "a body", 413},
		{"GET", "/readyz?" + strings.Repeat("a", 5000), "", 414},
		{"HEAD", "/livez", "", 200},
	} {
		req, _ := http.NewRequest(tc.method, base+tc.path, strings.NewReader(tc.body))
		if tc.body == "" {
			req.Body = nil
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Errorf("%s %s: %v", tc.method, tc.path, err)
			continue
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s %.40s = %d, want %d", tc.method, tc.path, resp.StatusCode, tc.want)
		}
	}
	// Huge headers: 431 without reading them all.
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /livez HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 1<<20))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if !strings.Contains(line, "431") {
		t.Errorf("1 MiB header: %q, want 431", line)
	}
	if resp, err := http.Get(base + "/livez"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("listener stopped answering: %v", err)
	}
}

// TestSlowClientsBoundedMemory opens many connections that send headers
// a byte at a time: they take no more than a bounded share of memory, and
// the listener answers others meanwhile.
func TestSlowClientsBoundedMemory(t *testing.T) {
	st := newTestState(t)
	s, err := Listen(Config{Listen: "127.0.0.1:0", State: st})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	var conns []net.Conn
	for range 200 {
		c, err := net.Dial("tcp", s.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Write([]byte("GET /livez HTTP/1.1\r\nX-Slow: "))
		conns = append(conns, c)
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range 3 {
		for _, c := range conns {
			c.Write([]byte("a"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	if grow := int64(after.HeapInuse) - int64(before.HeapInuse); grow > 32<<20 {
		t.Errorf("200 slow clients grew the heap by %d MiB", grow>>20)
	}
	hc := &http.Client{Timeout: 5 * time.Second}
	if resp, err := hc.Get("http://" + s.Addr().String() + "/livez"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("listener does not answer beside slow clients: %v", err)
	}
}
