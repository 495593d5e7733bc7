//go:build !nodev

package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/anyguard/anyguard/bench"
)

func cmdBenchHandshakes(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("bench handshakes", "[flags]",
		"Measure the WireGuard handshakes per second a gateway completes from a storm of distinct initiators\n"+
			"(one socket and 127.x.y.z address each, cookie replies answered with mac2 as real clients do), the gateway's\n"+
			"CPU time for them (it runs in a child process), and the echo latency of an established session meanwhile;\n"+
			"against stock wireguard-go with the same peers. Unprivileged, UDP on loopback.", stderr)
	targets := fs.String("targets", strings.Join(bench.AllHSTargets, ","), "gateways to compare")
	clients := fs.Int("clients", 5000, "configured clients (one is the established session, the rest initiators)")
	rates := fs.String("rates", "500,1000,2000,4000,8000", "comma-separated offered handshake attempts per second, one step each")
	duration := fs.Duration("duration", 5*time.Second, "length of each step")
	senders := fs.Int("senders", 2, "goroutines sending initiations")
	repeat := fs.Int("repeat", 1, "run every step this many times, the gateways taking turns, for paired ratios")
	contacts := fs.String("contact", bench.HSContactLive+","+bench.HSContactFirst,
		"initiators to measure: live (device peers of the gateway already), first (first contact, a fresh gateway per step), mixed (one gateway, first contact then live)")
	out := addReportFlags(fs, "handshakes")
	child := fs.String("child", "", "internal: run this gateway (stock or gateway) until stdin closes")
	childConfig := fs.String("child-config", "", "internal: the child's config `file`")
	childProfile := fs.String("child-profile", "", "internal: write the child's CPU profile to `file`")
	profile := fs.String("profile", "", "write a CPU profile of each gateway child (TARGET-CONTACT[-RATE].pprof) into `dir`")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *child != "" {
		return bench.HandshakeChild(*child, *childConfig, *childProfile, stdin, stdout)
	}
	opts := bench.HandshakeOptions{
		Clients: *clients, Duration: *duration, Senders: *senders, Progress: stderr, ProfileDir: *profile, Repeat: *repeat,
	}
	var err error
	if opts.Targets, err = listFlag("targets", *targets, bench.AllHSTargets); err != nil {
		return err
	}
	if opts.Contacts, err = listFlag("contact", *contacts, bench.AllHSContacts); err != nil {
		return err
	}
	for _, s := range strings.Split(*rates, ",") {
		var r float64
		if _, err := fmt.Sscan(strings.TrimSpace(s), &r); err != nil || r <= 0 || r > 1e6 {
			return usagef("--rates: %q is not a rate from 1 to 1000000", s)
		}
		opts.Rates = append(opts.Rates, r)
	}
	if *clients < 2 || *clients > 60000 || *senders < 1 || *duration < time.Second || *repeat < 1 || *repeat > 100 {
		return usagef("--clients must be 2..60000, --senders ≥ 1, --duration ≥ 1s, --repeat 1..100")
	}
	rep, err := bench.RunHandshakes(ctx, opts)
	if err != nil {
		return err
	}
	return out.write(stdout, rep, rep.Markdown())
}
