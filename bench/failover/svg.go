package failover

import (
	"fmt"
	"math"
	"strings"
)

// SVG draws, per scenario, the outage CDF of both modes on one chart
// (log time axis) and beside it the timeline of moved clients back.
func (rep *Report) SVG() string {
	type pair struct{ fast, stock *Result }
	var order []string
	rows := map[string]*pair{}
	for i := range rep.Results {
		r := &rep.Results[i]
		p := rows[r.Scenario]
		if p == nil {
			p = &pair{}
			rows[r.Scenario] = p
			order = append(order, r.Scenario)
		}
		if r.FastRecovery {
			p.fast = r
		} else {
			p.stock = r
		}
	}
	const (
		panelW, panelH = 420, 200
		left, top      = 60, 40
		gapX, gapY     = 110, 80
	)
	width := left + 2*panelW + gapX + 40
	height := top + len(order)*(panelH+gapY) + 20
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%d" y="20" font-size="14" font-weight="bold">anyguard bench failover: %d clients, load balancer %s; blue: fast recovery, red: recovery off (stock)</text>`+"\n",
		left, rep.Clients, esc(rep.Params.Name))
	colors := map[bool]string{true: "#1f77b4", false: "#d62728"}
	for row, sc := range order {
		p := rows[sc]
		y0 := top + row*(panelH+gapY) + 20
		// CDF of outages, log x from 10 ms to 100 s.
		x0 := left
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">%s: outage after the flow moved (CDF over moves)</text>`+"\n", x0, y0-8, esc(nameOr(scenarioNames, sc)))
		frame(&b, x0, y0, panelW, panelH)
		lx := func(msv float64) float64 {
			v := math.Log10(max(msv, 10)/10) / 4 // 10 ms … 100 s
			return float64(x0) + min(v, 1)*panelW
		}
		for _, t := range []struct {
			ms  float64
			lab string
		}{{10, "10 ms"}, {100, "0.1 s"}, {1000, "1 s"}, {10000, "10 s"}, {100000, "100 s"}} {
			x := lx(t.ms)
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, y0, x, y0+panelH, x, y0+panelH+15, t.lab)
		}
		yTicks(&b, x0, y0, panelH, "100 %")
		for _, r := range []*Result{p.fast, p.stock} {
			if r == nil || len(r.OutagesMs) == 0 {
				continue
			}
			var pts []string
			n := float64(len(r.OutagesMs))
			for i, v := range r.OutagesMs {
				y := float64(y0+panelH) - float64(i+1)/n*panelH
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", lx(v), float64(y0+panelH)-float64(i)/n*panelH), fmt.Sprintf("%.1f,%.1f", lx(v), y))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[r.FastRecovery], strings.Join(pts, " "))
		}
		// Timeline: moved clients back, by seconds since the event.
		x1 := left + panelW + gapX
		fmt.Fprintf(&b, `<text x="%d" y="%d" font-weight="bold">clients back (both directions) by time since the event</text>`+"\n", x1, y0-8)
		frame(&b, x1, y0, panelW, panelH)
		tmax := 1.0
		moved := 1
		for _, r := range []*Result{p.fast, p.stock} {
			if r != nil {
				if len(r.RecoveredS) > 0 {
					tmax = max(tmax, r.RecoveredS[len(r.RecoveredS)-1])
				}
				moved = max(moved, r.Moved)
			}
		}
		tmax = niceCeil(tmax)
		for i := 0; i <= 4; i++ {
			t := tmax * float64(i) / 4
			x := float64(x1) + float64(i)/4*panelW
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/><text x="%.1f" y="%d" text-anchor="middle">%g s</text>`+"\n", x, y0, x, y0+panelH, x, y0+panelH+15, t)
		}
		yTicks(&b, x1, y0, panelH, fmt.Sprint(moved))
		for _, r := range []*Result{p.fast, p.stock} {
			if r == nil {
				continue
			}
			pts := []string{fmt.Sprintf("%d,%d", x1, y0+panelH)}
			for i, t := range r.RecoveredS {
				x := float64(x1) + t/tmax*panelW
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, float64(y0+panelH)-float64(i)/float64(moved)*panelH),
					fmt.Sprintf("%.1f,%.1f", x, float64(y0+panelH)-float64(i+1)/float64(moved)*panelH))
			}
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", colors[r.FastRecovery], strings.Join(pts, " "))
		}
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func frame(b *strings.Builder, x, y, w, h int) {
	fmt.Fprintf(b, `<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="#444"/>`+"\n", x, y, w, h)
}

func yTicks(b *strings.Builder, x, y, h int, top string) {
	fmt.Fprintf(b, `<text x="%d" y="%d" text-anchor="end">%s</text><text x="%d" y="%d" text-anchor="end">0</text>`+"\n", x-4, y+4, esc(top), x-4, y+h+4)
}

// niceCeil rounds up to 1, 2 or 5 × a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
