//go:build !nodev

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/anyguard/anyguard/bench/failover"
)

func cmdBenchFailover(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench failover", "[flags]",
		"Measure how long real WireGuard clients are cut off when a load balancer moves their flows: N wireguard-go\n"+
			"clients with traffic both ways, gateways in regions and a load balancer model (AWS NLB / Global Accelerator\n"+
			"parameters) in this process, unprivileged. Every scenario runs with fast recovery on and again off (the\n"+
			"gateways then behave like stock WireGuard servers sharing a key). See docs/failover.md.", stderr)
	clients := fs.Int("clients", 1000, "WireGuard clients (1 to 60000)")
	regions := fs.Int("regions", 3, "regions (2 to 5)")
	perRegion := fs.Int("per-region", 2, "gateways per region (2 to 4)")
	scenarios := fs.String("scenarios", strings.Join(failover.Scenarios, ","), "scenarios to run")
	preset := fs.String("lb", failover.PresetFast, "load balancer preset: fast (Global Accelerator, 10 s interval, threshold 1) or nlb (NLB defaults)")
	protocol := fs.String("health-check", "", "override the preset's health check: http (/readyz) or tcp (the TCP health port)")
	interval := fs.Duration("hc-interval", 0, "override the preset's health check interval")
	hcTimeout := fs.Duration("hc-timeout", 0, "override the preset's health check timeout")
	healthy := fs.Int("healthy-threshold", 0, "override the preset's healthy threshold (1 to 10)")
	unhealthy := fs.Int("unhealthy-threshold", 0, "override the preset's unhealthy threshold (1 to 10)")
	flows := fs.String("unhealthy-flows", "", "override what happens to flows of an unhealthy target: reroute or keep")
	idle := fs.Duration("udp-idle-timeout", 0, "override the preset's UDP flow idle timeout")
	dereg := fs.Duration("deregistration-delay", -1, "override the preset's deregistration delay")
	traffic := fs.Duration("interval", 100*time.Millisecond, "each client's echo period, and the private side's request to each client")
	limit := fs.Duration("limit", 60*time.Second, "a client not answered this long after its flow moved counts as not back")
	drain := fs.Duration("drain-window", 0, "the gateways' drain window (0: the load balancer's worst-case detection + 2 s)")
	connect := fs.Duration("connect-timeout", 0, "how long every client may take to have traffic answered both ways at the start of each deployment (0: 60 s + 10 ms per client)")
	modes := fs.String("modes", "fast,stock", "modes to run: fast (fast recovery on), stock (off), or both")
	svg := fs.String("svg", "", "write the outage CDF and recovery timeline as SVG to `file`")
	out := addReportFlags(fs, "failover")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	p, ok := failover.Presets[*preset]
	if !ok {
		return usagef("--lb %q: want %s or %s", *preset, failover.PresetFast, failover.PresetNLB)
	}
	if *protocol != "" {
		p.HealthProtocol = *protocol
	}
	if *interval != 0 {
		p.Interval = *interval
	}
	if *hcTimeout != 0 {
		p.Timeout = *hcTimeout
	}
	if *healthy != 0 {
		p.HealthyThreshold = *healthy
	}
	if *unhealthy != 0 {
		p.UnhealthyThreshold = *unhealthy
	}
	if *flows != "" {
		p.UnhealthyFlows = *flows
	}
	if *idle != 0 {
		p.IdleTimeout = *idle
	}
	if *dereg >= 0 {
		p.DeregistrationDelay = *dereg
	} else if *dereg != -1 {
		return usagef("--deregistration-delay %s: want 0 or more", *dereg)
	}
	if *drain < 0 {
		return usagef("--drain-window %s: want 0 or more", *drain)
	}
	opts := failover.Options{
		Clients: *clients, Regions: *regions, PerRegion: *perRegion, Params: p,
		Interval: *traffic, Limit: *limit, DrainWindow: *drain, ConnectTimeout: *connect, Progress: stderr,
	}
	if *connect < 0 {
		return usagef("--connect-timeout %s: want 0 or more", *connect)
	}
	var err error
	ms, err := listFlag("modes", *modes, []string{"fast", "stock"})
	if err != nil {
		return err
	}
	opts.OnlyFast, opts.OnlyStock = !slices.Contains(ms, "stock"), !slices.Contains(ms, "fast")
	if opts.Scenarios, err = listFlag("scenarios", *scenarios, failover.Scenarios); err != nil {
		return err
	}
	if err := failover.Check(opts); err != nil {
		if errors.Is(err, failover.ErrOptions) || errors.Is(err, failover.ErrParams) {
			return usagef("%v", err)
		}
		return err
	}
	rep, err := failover.Run(ctx, opts)
	if err != nil {
		return err
	}
	if *svg != "" {
		if err := os.WriteFile(*svg, []byte(rep.SVG()), 0o644); err != nil {
			return fmt.Errorf("--svg: %w", err)
		}
	}
	if err := out.write(stdout, rep, rep.Markdown()); err != nil {
		return err
	}
	if rep.Failed > 0 {
		return fmt.Errorf("%d of %d scenario runs failed (see the table)", rep.Failed, len(rep.Results))
	}
	return nil
}
