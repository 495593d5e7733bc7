package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/anyguard/anyguard/health"
)

func cmdStatus(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("status", "[--addr HOST:PORT] [--timeout D]", "Show a gateway's /status as tables: node, checks, members, regions and clients.", stderr)
	addr := fs.String("addr", defaultAdminAddr, "the gateway's admin listener (health.admin_listen; health.listen if that is off)")
	timeout := fs.Duration("timeout", 5*time.Second, "give up after this long")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *timeout <= 0 {
		return usagef("--timeout %s: want a positive duration", *timeout)
	}
	url, err := healthURL(*addr, "/status")
	if err != nil {
		return err
	}
	code, body, err := fetch(ctx, url, *timeout, 64<<20)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w: is the gateway running, and is %s its health.admin_listen? With admin_listen off, /status is on health.listen: --addr 127.0.0.1:8080", err, *addr)
		}
		return err
	}
	if code == http.StatusNotFound {
		return fmt.Errorf("%s answered 404: that is health.listen, which leaves /status to health.admin_listen (default %s); give --addr that address", url, defaultAdminAddr)
	}
	if code != http.StatusOK {
		return fmt.Errorf("%s answered %d", url, code)
	}
	st, err := parseStatus(body)
	if err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return printStatus(stdout, st, time.Now())
}

// parseStatus decodes a /status document.
func parseStatus(body []byte) (*health.Status, error) {
	var st health.Status
	if err := json.Unmarshal(body, &st); err != nil {
		return nil, fmt.Errorf("not a /status document: %w", err)
	}
	if st.Schema != 1 {
		return nil, fmt.Errorf("/status schema %d, this anyguard reads schema 1", st.Schema)
	}
	return &st, nil
}

// printStatus writes the status as a header and aligned tables.
func printStatus(w io.Writer, st *health.Status, now time.Time) error {
	ready := "READY"
	if !st.Node.Ready {
		ready = "NOT READY"
	}
	if st.Node.Draining {
		ready += ", DRAINING"
	}
	fmt.Fprintf(w, "node %s  region %s  version %s  egress %s  port %d  up %s  %s\n",
		clean(st.Node.Name), clean(st.Node.Region), clean(st.Node.Version), clean(st.Node.EgressMode),
		st.Node.ListenPort, since(st.Node.Started, now), ready)
	var checks []string
	for _, c := range st.Checks {
		switch {
		case c.OK:
			checks = append(checks, clean(c.Name)+" ok")
		case c.Advisory: // does not make the gateway unready
			checks = append(checks, clean(c.Name)+" WARNING ("+clean(c.Error)+")")
		default:
			checks = append(checks, clean(c.Name)+" FAILED ("+clean(c.Error)+")")
		}
	}
	fmt.Fprintf(w, "checks: %s\n", strings.Join(checks, ", "))
	probe := "ok"
	if !st.Probe.OK {
		probe = "FAILING: " + clean(st.Probe.Error)
	}
	fmt.Fprintf(w, "probe: %s to %s, rtt %.2fms, %d ok, %d failed\n", probe, clean(st.Probe.Target), st.Probe.RTTSeconds*1000, st.Probe.Successes, st.Probe.Failures)
	if st.Convergence.Observations > 0 {
		fmt.Fprintf(w, "convergence: %d observed, p50 %.0fms, p99 %.0fms\n", st.Convergence.Observations, st.Convergence.P50Seconds*1000, st.Convergence.P99Seconds*1000)
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "MEMBER\tREGION\tADDRESS\tSTATE\tREADY\tCLIENT SET")
	for _, m := range st.Members {
		name := clean(m.Name)
		if m.Self {
			name += " (self)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", name, clean(m.Region), dash(m.Address), clean(m.State), yesNo(m.Ready), short(m.ConfigDigest))
	}
	tw.Flush()

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "REGION\tMEMBERS\tPREFIXES")
	for _, r := range st.Regions {
		fmt.Fprintf(tw, "%s\t%d\t%s\n", clean(r.Name), r.Members, dash(strings.Join(r.Prefixes, ",")))
	}
	tw.Flush()

	if len(st.RefusedPrefixes) > 0 { // see docs/security.md
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "REFUSED PREFIX\tMEMBER\tREGION\tREASON\tDETAIL\tSINCE")
		for _, r := range st.RefusedPrefixes {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", clean(r.Prefix), clean(r.Member), clean(r.Region), clean(r.Reason),
				dash(r.Detail), since(r.Since, now))
		}
		tw.Flush()
	}

	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CLIENT\tADDRESSES\tOWNER\tENDPOINT\tHANDSHAKE\tRX\tTX")
	for _, c := range st.Clients {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", clean(c.Name), dash(strings.Join(c.AllowedIPs, ",")), dash(c.Owner),
			dash(c.Endpoint), since(c.LastHandshake, now), size(c.RxBytes), size(c.TxBytes))
	}
	if len(st.Clients) == 0 {
		fmt.Fprintln(tw, "(none)")
	}
	return tw.Flush()
}

// clean keeps a server-supplied string on one line of printable text, so
// a hostile answer cannot move the cursor or break the table.
func clean(s string) string {
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == '\t' {
			return '?'
		}
		return r
	}, s)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return clean(s)
}

func short(s string) string {
	if len(s) > 12 {
		s = s[:12]
	}
	return dash(s)
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// since says how long ago t was, "never" for zero.
func since(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t)
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Minute:
		return d.Round(time.Second).String() + " ago"
	case d < 48*time.Hour:
		return d.Round(time.Minute).String() + " ago"
	}
	return fmt.Sprintf("%dd ago", int(d.Hours()/24))
}

func size(n uint64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	case n < 1<<30:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
	return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
}
