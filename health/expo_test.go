package health

import (
	"bytes"
	"compress/gzip"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

func parseText(t testing.TB, r io.Reader) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		t.Fatalf("not valid Prometheus text: %v", err)
	}
	return fams
}

// TestExpositionEscapes: label values come from outside (client names
// from the peers file, node names from gossip); quotes, backslashes,
// newlines and invalid UTF-8 must still give text Prometheus parses, with
// the value intact (invalid bytes as U+FFFD).
func TestExpositionEscapes(t *testing.T) {
	d := gaugeDesc("t_value", "help with \\ and\nnewline", "v")
	values := []string{`plain`, `q"uote`, `back\slash`, "new\nline", "bad\xffutf8", `\n literal`, "", `}{,=`}
	e := newExposition()
	for i, v := range values {
		e.gauge(d, float64(i), v)
	}
	var buf bytes.Buffer
	if err := e.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	f := parseText(t, &buf)["t_value"]
	if f.GetHelp() != "help with \\ and\nnewline" {
		t.Errorf("help = %q", f.GetHelp())
	}
	got := map[string]float64{}
	for _, m := range f.Metric {
		got[m.Label[0].GetValue()] = m.GetGauge().GetValue()
	}
	for i, v := range values {
		want := strings.ToValidUTF8(v, "\uFFFD")
		if g, ok := got[want]; !ok || g != float64(i) {
			t.Errorf("value %q: got %v (present %v) in %v", want, g, ok, got)
		}
	}
}

// TestExpositionOrderAndHistogram: families sorted by name, series by
// label values, whatever the order they were added in; a histogram has
// sorted cumulative buckets, +Inf equal to the count, _sum and _count.
func TestExpositionOrderAndHistogram(t *testing.T) {
	b := counterDesc("b_total", "b", "k")
	a := gaugeDesc("a", "a")
	h := histogramDesc("h_seconds", "h")
	e := newExposition()
	e.counter(b, 2, "y")
	e.histogram(h, HistogramSnapshot{Count: 5, Sum: 1.5, Buckets: map[float64]uint64{1: 3, 0.5: 1, math.Inf(1): 5}})
	e.gauge(a, math.NaN())
	e.counter(b, 1, "x")
	var buf bytes.Buffer
	if err := e.writeTo(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	ia, ib, ih := strings.Index(out, "# HELP a "), strings.Index(out, "# HELP b_total"), strings.Index(out, "# HELP h_seconds")
	if ia < 0 || ia > ib || ib > ih {
		t.Errorf("families not sorted by name:\n%s", out)
	}
	if strings.Index(out, `b_total{k="x"} 1`) > strings.Index(out, `b_total{k="y"} 2`) {
		t.Errorf("series not sorted by label value:\n%s", out)
	}
	fams := parseText(t, strings.NewReader(out))
	if fams["b_total"].GetType() != dto.MetricType_COUNTER || fams["a"].GetType() != dto.MetricType_GAUGE {
		t.Errorf("types: %v %v", fams["b_total"].GetType(), fams["a"].GetType())
	}
	if !math.IsNaN(fams["a"].Metric[0].GetGauge().GetValue()) {
		t.Errorf("NaN gauge = %v", fams["a"].Metric[0].GetGauge().GetValue())
	}
	hist := fams["h_seconds"].Metric[0].GetHistogram()
	if hist.GetSampleCount() != 5 || hist.GetSampleSum() != 1.5 {
		t.Errorf("count %d sum %v", hist.GetSampleCount(), hist.GetSampleSum())
	}
	var bounds []float64
	var counts []uint64
	for _, bk := range hist.Bucket {
		bounds = append(bounds, bk.GetUpperBound())
		counts = append(counts, bk.GetCumulativeCount())
	}
	// The snapshot's own +Inf bucket and the one writeTo adds: the parser
	// keeps both only if they are written twice, which they must not be.
	if len(bounds) != 3 || bounds[0] != 0.5 || bounds[1] != 1 || !math.IsInf(bounds[2], 1) || counts[2] != 5 {
		t.Errorf("buckets %v %v, want 0.5 1 +Inf with +Inf = 5\n%s", bounds, counts, out)
	}
}

// TestExpositionWrongLabelsPanics: a series with the wrong number of label
// values is a programmer error and must not reach a scraper.
func TestExpositionWrongLabelsPanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	newExposition().gauge(gaugeDesc("x", "x", "a", "b"), 1, "only one")
}

func FuzzExpositionLabel(f *testing.F) {
	for _, s := range []string{"alice", `a"b`, `a\b`, "a\nb", "\xff", "", "\\\"\n"} {
		f.Add(s)
	}
	// Help texts are constants here; label values come from outside.
	f.Fuzz(func(t *testing.T, value string) {
		e := newExposition()
		e.gauge(gaugeDesc("f", "help", "l"), 1, value)
		var buf bytes.Buffer
		if err := e.writeTo(&buf); err != nil {
			t.Fatal(err)
		}
		fam := parseText(t, &buf)["f"]
		if got, want := fam.Metric[0].Label[0].GetValue(), strings.ToValidUTF8(value, "\uFFFD"); got != want {
			t.Errorf("label %q came back as %q", want, got)
		}
	})
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"":                       false,
		"gzip":                   true,
		"GZIP":                   true,
		"identity":               false,
		"br, gzip;q=0.5":         true,
		"gzip;q=0":               false,
		"gzip; q=0.0, identity":  false,
		"*":                      true,
		"gzip;q=x":               false,
		"deflate, gzip ;q=1.0 ,": true,
	} {
		if got := acceptsGzip(header); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}

// TestMetricsGzipAndRuntime: what Prometheus sends (Accept-Encoding gzip)
// gets the same families compressed; the Go runtime's and the process's
// series are there under client_golang's names.
func TestMetricsGzipAndRuntime(t *testing.T) {
	st := newTestState(t)
	h := NewHandler(Config{State: st, Metrics: fakeSource{clients: 2}})
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 || rec.Header().Get("Content-Encoding") != "gzip" || rec.Header().Get("Content-Type") != textContentType {
		t.Fatalf("code %d, headers %v", rec.Code, rec.Header())
	}
	zr, err := gzip.NewReader(rec.Body)
	if err != nil {
		t.Fatal(err)
	}
	fams := parseText(t, zr)
	if _, ok := fams["anyguard_build_info"]; !ok {
		t.Error("no anyguard_build_info in the gzipped body")
	}
	if v := fams["go_goroutines"].GetMetric()[0].GetGauge().GetValue(); v < 1 {
		t.Errorf("go_goroutines = %v", v)
	}
	if v := fams["go_memstats_heap_inuse_bytes"].GetMetric()[0].GetGauge().GetValue(); v <= 0 {
		t.Errorf("go_memstats_heap_inuse_bytes = %v", v)
	}
	if gi := fams["go_info"].GetMetric()[0].GetLabel()[0].GetValue(); gi != runtime.Version() {
		t.Errorf("go_info version %q", gi)
	}
	if runtime.GOOS != "linux" {
		return
	}
	if v := fams["process_resident_memory_bytes"].GetMetric()[0].GetGauge().GetValue(); v < 1<<20 {
		t.Errorf("process_resident_memory_bytes = %v", v)
	}
	if v := fams["process_open_fds"].GetMetric()[0].GetGauge().GetValue(); v < 3 {
		t.Errorf("process_open_fds = %v", v)
	}
	if fams["process_max_fds"].GetMetric()[0].GetGauge().GetValue() < 1 {
		t.Error("process_max_fds < 1")
	}
	start := fams["process_start_time_seconds"].GetMetric()[0].GetGauge().GetValue()
	if age := float64(time.Now().Unix()) - start; age < 0 || age > 3600 {
		t.Errorf("process_start_time_seconds %v is %v s ago", start, age)
	}
	if fams["process_cpu_seconds_total"].GetMetric()[0].GetCounter().GetValue() <= 0 {
		t.Error("process_cpu_seconds_total <= 0")
	}
}

// TestMetricsScrapeLimit: beyond maxScrapes at once, a scrape gets 503.
func TestMetricsScrapeLimit(t *testing.T) {
	h := newMetricsHandler(&collector{limit: 1})
	for range maxScrapes {
		h.sema <- struct{}{}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("scrape %d over the limit = %d, want 503", maxScrapes+1, rec.Code)
	}
	<-h.sema
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != 200 {
		t.Errorf("scrape with a free slot = %d", rec.Code)
	}
}

func TestParseProcStat(t *testing.T) {
	// proc(5): pid (comm) state ppid ... utime(14) stime(15) ... starttime(22) vsize(23) rss(24) ...
	line := "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 9 0 555 123456 789 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0"
	st, err := parseProcStat(line)
	if err != nil {
		t.Fatal(err)
	}
	if st != (procStat{cpuTicks: 10, startTicks: 555, vsize: 123456, rssPages: 789}) {
		t.Errorf("got %+v", st)
	}
	for _, bad := range []string{"", "42 (x", "42 (x) S 1 2 3", strings.Replace(line, " 7 3 ", " 7 -3 ", 1)} {
		if _, err := parseProcStat(bad); err == nil {
			t.Errorf("parseProcStat(%q): no error", bad)
		}
	}
	if b, err := parseBootTime("cpu 1 2\nbtime 1700000000\nprocesses 5\n"); err != nil || b != 1700000000 {
		t.Errorf("btime = %d, %v", b, err)
	}
	for _, bad := range []string{"", "cpu 1\n", "btime x\n"} {
		if _, err := parseBootTime(bad); err == nil {
			t.Errorf("parseBootTime(%q): no error", bad)
		}
	}
	if runtime.GOOS == "linux" {
		b, err := os.ReadFile("/proc/self/stat")
		if err != nil {
			t.Fatal(err)
		}
		if st, err := parseProcStat(string(b)); err != nil || st.rssPages == 0 {
			t.Errorf("own /proc/self/stat: %+v, %v", st, err)
		}
	}
}

func FuzzParseProcStat(f *testing.F) {
	f.Add("42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 7 3 0 0 20 0 9 0 555 123456 789 18446744073709551615 1 1")
	f.Add("1 (init) S 0 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 1 2 3")
	f.Add(")")
	f.Fuzz(func(t *testing.T, s string) {
		parseProcStat(s) // must not panic
		parseBootTime(s)
	})
}
