package health

import (
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
)

// metricsHandler serves /metrics: at most maxScrapes at once (more get
// 503), gzip when the scraper accepts it (Prometheus does).
type metricsHandler struct {
	col  *collector
	sema chan struct{}
}

func newMetricsHandler(col *collector) *metricsHandler {
	return &metricsHandler{col: col, sema: make(chan struct{}, maxScrapes)}
}

// textContentType is the text exposition format's media type.
const textContentType = "text/plain; version=0.0.4; charset=utf-8"

func (h *metricsHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case h.sema <- struct{}{}:
		defer func() { <-h.sema }()
	default:
		http.Error(w, "too many concurrent scrapes", http.StatusServiceUnavailable)
		return
	}
	e := newExposition()
	h.col.collect(e)
	collectGo(e)
	collectProcess(e)
	w.Header().Set("Content-Type", textContentType)
	if !acceptsGzip(r.Header.Get("Accept-Encoding")) {
		e.writeTo(w)
		return
	}
	w.Header().Set("Content-Encoding", "gzip")
	w.Header().Add("Vary", "Accept-Encoding")
	gz := gzip.NewWriter(w)
	e.writeTo(gz)
	gz.Close()
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip: listed
// (or "*") without q=0.
func acceptsGzip(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(part, ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "gzip" && coding != "*" {
			continue
		}
		if q, ok := strings.CutPrefix(strings.ReplaceAll(strings.TrimSpace(params), " ", ""), "q="); ok {
			if v, err := strconv.ParseFloat(q, 64); err != nil || v <= 0 {
				continue
			}
		}
		return true
	}
	return false
}
