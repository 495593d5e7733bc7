package demo

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

func (d *deployment) printClients(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "client\taddress\towner after each phase (all gateways agreed after)\tmove: traffic back after\tstop: traffic back after\tHTTP ok\tHTTP p50\tresult")
	for _, c := range d.clients {
		var owners []string
		for i, o := range c.owners {
			owners = append(owners, fmt.Sprintf("%s (%s)", o, ms(c.agreed[i])))
		}
		status := "ok"
		if c.err != nil {
			status = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d/%d\t%s\t%s\n", c.name, c.addr, strings.Join(owners, " → "),
			c.recovery("move"), c.recovery("stop"), c.ok, c.requests, ms(percentile(c.latencies, 50)), status)
	}
	tw.Flush()
}

func (c *client) recovery(phase string) string {
	for _, m := range c.moves {
		if m.phase == phase {
			return fmt.Sprintf("%s (%s→%s)", ms(m.recovery), m.from, m.to)
		}
	}
	return "-"
}

func (d *deployment) printGateways(out io.Writer) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "gateway\tregion\tstate\towns\tclient pkts in/out\tbackbone pkts in/out\tegress pkts in/out\tdrops")
	for i, g := range d.gws {
		if g == nil {
			fmt.Fprintf(tw, "%s\t%s\tstopped\t-\t-\t-\t-\t-\n", d.names[i], d.regions[d.regionOf[i]].name)
			continue
		}
		owns := 0
		for _, c := range d.clients {
			if rec, ok := g.Cluster().Owner(c.key.Public()); ok && rec.Owner == d.names[i] {
				owns++
			}
		}
		st := g.Router().Stats()
		cols := map[string]string{}
		for _, p := range st.Ports {
			cols[p.Name] = fmt.Sprintf("%d/%d", p.RxPackets, p.TxPackets)
		}
		var drops uint64
		for _, n := range st.Drops {
			drops += n
		}
		fmt.Fprintf(tw, "%s\t%s\trunning\t%d\t%s\t%s\t%s\t%d\n", d.names[i], d.regions[d.regionOf[i]].name, owns,
			cols["clients"], cols["backbone"], cols["egress"], drops)
	}
	tw.Flush()
}

func (d *deployment) printSummary(out io.Writer) {
	var moves, stops, agreed []time.Duration
	for _, c := range d.clients {
		for _, m := range c.moves {
			if m.phase == "move" {
				moves = append(moves, m.recovery)
			} else {
				stops = append(stops, m.recovery)
			}
		}
		agreed = append(agreed, c.agreed...)
	}
	fmt.Fprintf(out, "traffic flowing again after a load-balancer move: p50 %s, max %s (%d moves)\n", ms(percentile(moves, 50)), ms(percentile(moves, 100)), len(moves))
	if len(stops) > 0 {
		fmt.Fprintf(out, "traffic flowing again after its gateway stopped:  p50 %s, max %s (%d clients)\n", ms(percentile(stops, 50)), ms(percentile(stops, 100)), len(stops))
	}
	fmt.Fprintf(out, "all gateways agreeing on the owner, from the start of a phase: p50 %s, max %s\n", ms(percentile(agreed, 50)), ms(percentile(agreed, 100)))
}
