package failover

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// tracer keeps, per moved client, the first time of each event after its
// move: datagrams through the load balancer by direction, message type and
// target (old or new), the gateways' log lines naming the client, each
// gateway's ownership record naming the new target, and the first answer
// in each direction.
type tracer struct {
	mu     sync.Mutex
	moveAt map[int]int64
	to     map[int]int
	evs    map[int]map[string]int64 // first time of each event after the move
	count  map[int]map[string]int
}

func (tr *tracer) add(c int, what string, at int64) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	m, ok := tr.moveAt[c]
	if !ok || at < m {
		return
	}
	if tr.evs[c] == nil {
		tr.evs[c] = map[string]int64{}
		tr.count[c] = map[string]int{}
	}
	if _, ok := tr.evs[c][what]; !ok {
		tr.evs[c][what] = at
	}
	tr.count[c][what]++
}

type logHandler struct {
	h  *harness
	tr *tracer
}

func (l *logHandler) Enabled(context.Context, slog.Level) bool { return true }
func (l *logHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrHandler{l: l, attrs: as}
}
func (l *logHandler) WithGroup(string) slog.Handler                 { return l }
func (l *logHandler) Handle(_ context.Context, r slog.Record) error { return l.handle(r, nil) }

func (l *logHandler) handle(r slog.Record, pre []slog.Attr) error {
	client := -1
	gw := ""
	for _, a := range pre {
		if a.Key == "gw" {
			gw = a.Value.String()
		}
	}
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "client" {
			if s := a.Value.String(); strings.HasPrefix(s, "c") {
				if n, err := strconv.Atoi(s[1:]); err == nil {
					client = n
				}
			}
		}
		return true
	})
	if client >= 0 && l.h != nil {
		l.tr.add(client, "log:"+gw+":"+r.Message, l.h.now())
	}
	return nil
}

type attrHandler struct {
	l     *logHandler
	attrs []slog.Attr
}

func (a *attrHandler) Enabled(context.Context, slog.Level) bool { return true }
func (a *attrHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrHandler{l: a.l, attrs: append(slices.Clone(a.attrs), as...)}
}
func (a *attrHandler) WithGroup(string) slog.Handler                 { return a }
func (a *attrHandler) Handle(_ context.Context, r slog.Record) error { return a.l.handle(r, a.attrs) }

// TestRebalanceTimeline is a diagnostic, not a check: with
// ANYGUARD_TIMELINE_CLIENTS=N it deploys N clients with fast recovery,
// moves 10 % of the flows and prints, per step of the recovery, how long
// after the move the moved clients reached it (p10/p50/p90/max), the
// unmoved clients' round trips (the queueing floor) and three clients'
// timelines. It is how issue #13's 2.5 s at 1,000 clients was taken apart.
//
//	ANYGUARD_TIMELINE_CLIENTS=500 go test ./bench/failover -run TestRebalanceTimeline -v -count=1
func TestRebalanceTimeline(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("ANYGUARD_TIMELINE_CLIENTS"))
	if n == 0 {
		t.Skip("set ANYGUARD_TIMELINE_CLIENTS to the number of clients to run the timeline")
	}
	tr := &tracer{moveAt: map[int]int64{}, to: map[int]int{}, evs: map[int]map[string]int64{}, count: map[int]map[string]int{}}
	lh := &logHandler{tr: tr}
	opts := Options{Clients: n, Logger: slog.New(lh)}
	opts.defaults()
	ks, err := newKeySet(n)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	h, err := deploy(ctx, opts, true, ks)
	if err != nil {
		t.Fatal(err)
	}
	defer h.close()
	lh.h = h
	var fn traceFunc = func(c int, dir, typ byte, target int, at int64) {
		tr.mu.Lock()
		to, ok := tr.to[c]
		tr.mu.Unlock()
		if !ok {
			return
		}
		where := "new"
		if target != to {
			where = "old"
		}
		tr.add(c, fmt.Sprintf("lb:%c:type%d:%s", dir, typ, where), at)
	}
	h.lb.trace.Store(&fn)
	t0 := h.now()
	for _, c := range h.clients {
		c.echoes.start(t0)
		c.pings.start(t0)
	}
	time.Sleep(3 * time.Second)
	tr.mu.Lock()
	at := h.now()
	rng := rand.New(rand.NewPCG(uint64(at), 1))
	h.lb.rebalance(0.1, rng)
	for i := range h.clients {
		ms := h.lb.movesOf(i)
		if len(ms) > 0 && ms[len(ms)-1].at >= at {
			tr.moveAt[i] = ms[len(ms)-1].at
			tr.to[i] = ms[len(ms)-1].to
		}
	}
	tr.mu.Unlock()
	name := map[int]string{}
	for _, g := range h.running() {
		name[g.target] = g.name
	}
	// Poll ownership on every gateway.
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		now := h.now()
		for c, to := range tr.to {
			k := h.clientKeys[c].Public()
			for _, g := range h.running() {
				if rec, ok := g.g.Cluster().Owner(k); ok && rec.Owner == name[to] {
					tr.add(c, "owner@"+g.name+func() string {
						if g.target == to {
							return "(self)"
						}
						return ""
					}(), now)
				}
			}
			cl := h.clients[c]
			if cl.echoes.answeredSince(tr.moveAt[c]) {
				tr.add(c, "zz:echo answered", now)
			}
			if cl.pings.answeredSince(tr.moveAt[c]) {
				tr.add(c, "zz:ping answered", now)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.lb.trace.Store(nil)
	var rtt, rttD []float64
	for i, c := range h.clients {
		if _, moved := tr.moveAt[i]; moved {
			continue
		}
		_, as := c.echoes.snapshot()
		for _, a := range as {
			rtt = append(rtt, float64(a.recv-a.sent)/1e6)
		}
		_, as = c.pings.snapshot()
		for _, a := range as {
			rttD = append(rttD, float64(a.recv-a.sent)/1e6)
		}
	}
	fmt.Printf("unmoved RTT up p50 %.1f p90 %.1f p99 %.1f max %.1f ms; down p50 %.1f p90 %.1f p99 %.1f max %.1f ms; harness drops %d\n",
		pct(rtt, 50), pct(rtt, 90), pct(rtt, 99), pct(rtt, 100), pct(rttD, 50), pct(rttD, 90), pct(rttD, 99), pct(rttD, 100), h.dropsQueue.Load())
	// Summarise: per event, p50/p90/max of (first - move) over clients.
	tr.mu.Lock()
	defer tr.mu.Unlock()
	per := map[string][]float64{}
	cnt := map[string]int{}
	for c, m := range tr.moveAt {
		for w, x := range tr.evs[c] {
			key := w
			if strings.HasPrefix(w, "owner@") {
				key = "owner@" + map[bool]string{true: "self", false: "others"}[strings.HasSuffix(w, "(self)")]
				// keep the last gateway's time as "all"
			}
			per[key] = append(per[key], float64(x-m)/1e6)
			cnt[key] += tr.count[c][w]
		}
	}
	keys := make([]string, 0, len(per))
	for k := range per {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	fmt.Printf("moved %d of %d clients; uptime %s\n", len(tr.moveAt), n, uptime())
	for _, k := range keys {
		v := per[k]
		slices.Sort(v)
		fmt.Printf("%-70s n=%4d count=%6d p10 %6.0f p50 %6.0f p90 %6.0f max %6.0f ms\n", k, len(v), cnt[k], pct(v, 10), pct(v, 50), pct(v, 90), pct(v, 100))
	}
	// Three example timelines.
	i := 0
	for c, m := range tr.moveAt {
		if i++; i > 3 {
			break
		}
		type kv struct {
			k string
			v int64
		}
		var l []kv
		for w, x := range tr.evs[c] {
			l = append(l, kv{w, x - m})
		}
		slices.SortFunc(l, func(a, b kv) int { return int(a.v - b.v) })
		fmt.Printf("client %d → %s\n", c, name[tr.to[c]])
		for _, e := range l {
			fmt.Printf("   %7.1f ms %s (x%d)\n", float64(e.v)/1e6, e.k, tr.count[c][e.k])
		}
	}
}

func uptime() string {
	b, _ := os.ReadFile("/proc/loadavg")
	return strings.TrimSpace(string(b))
}
