package main

import (
	"context"
	"io"
	"time"

	"github.com/anyguard/anyguard/internal/demo"
)

func cmdDemo(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("demo", "[flags]", "Run a gateway, a simulated private network and real WireGuard clients in this process,\nsend traffic through and print what happened. Needs no privileges. Exits non-zero if traffic did not flow.", stderr)
	clients := fs.Int("clients", 3, "number of WireGuard clients (1-200)")
	requests := fs.Int("requests", 20, "HTTP requests per client (1-10000)")
	keep := fs.Bool("keep-running", false, "keep the gateway running after the scenario until Ctrl-C")
	timeout := fs.Duration("timeout", 45*time.Second, "time limit for the scenario")
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
	if *timeout <= 0 {
		return usagef("--timeout %s: want a positive duration", *timeout)
	}
	logger, err := newLogger(stderr, "text", *logLevel)
	if err != nil {
		return usagef("%v", err)
	}
	return demo.Run(ctx, demo.Options{Clients: *clients, Requests: *requests, KeepRunning: *keep, Timeout: *timeout, Logger: logger}, stdout)
}
