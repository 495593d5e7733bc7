//go:build !nodev

package main

import (
	"context"
	"io"
	"time"

	"github.com/anyguard/anyguard/internal/demo"
)

func cmdDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "[flags]", "Run a whole deployment in this process: regions with private networks, two gateways each in one\nencrypted cluster, a UDP load balancer in front and real WireGuard clients. Clients reach every region,\nare moved between gateways while traffic flows, and a gateway stops; the report shows owners,\nrecovery and convergence times. Needs no privileges. Exits non-zero if any check failed.", stderr)
	clients := fs.Int("clients", 4, "number of WireGuard clients (1-200)")
	requests := fs.Int("requests", 5, "HTTP requests per client and region in the first phase (1-10000)")
	regions := fs.Int("regions", 3, "number of regions (1-3)")
	perRegion := fs.Int("per-region", 2, "gateways per region (1-2)")
	keep := fs.Bool("keep-running", false, "keep the gateway running after the scenario until Ctrl-C")
	timeout := fs.Duration("timeout", 60*time.Second, "time limit for the scenario")
	logLevel := fs.String("log-level", "warn", "gateway log level: debug, info, warn or error")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *clients < 1 || *clients > 200 {
		return usagef("--clients %d: want 1 to 200", *clients)
	}
	if *requests < 1 || *requests > 10000 {
		return usagef("--requests %d: want 1 to 10000", *requests)
	}
	if *regions < 1 || *regions > 3 {
		return usagef("--regions %d: want 1 to 3", *regions)
	}
	if *perRegion < 1 || *perRegion > 2 {
		return usagef("--per-region %d: want 1 or 2", *perRegion)
	}
	if *timeout <= 0 {
		return usagef("--timeout %s: want a positive duration", *timeout)
	}
	logger, err := newLogger(stderr, "text", *logLevel)
	if err != nil {
		return usagef("%v", err)
	}
	return demo.Run(ctx, demo.Options{Clients: *clients, Requests: *requests, Regions: *regions, PerRegion: *perRegion, KeepRunning: *keep, Timeout: *timeout, Logger: logger}, stdout)
}
