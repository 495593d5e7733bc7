package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/anyguard/anyguard/health"
	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/sdnotify"
)

func cmdRun(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := newFlags("run", "--config FILE", "Run a gateway with the YAML configuration in FILE until SIGINT or SIGTERM.", stderr)
	path := fs.String("config", "", "configuration `file` (YAML)")
	format := fs.String("log-format", "", "log format, text or json (overrides log.format)")
	level := fs.String("log-level", "", "log level, debug, info, warn or error (overrides log.level)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *path == "" {
		return usagef("--config is required")
	}
	cfg, err := config.Load(*path)
	if err != nil {
		return err
	}
	if *format != "" {
		cfg.Log.Format = *format
	}
	if *level != "" {
		cfg.Log.Level = *level
	}
	logger, err := newLogger(stderr, cfg.Log.Format, cfg.Log.Level)
	if err != nil {
		return usagef("%v", err)
	}
	notifier, err := sdnotify.FromEnv(os.Getenv, os.Getpid())
	if err != nil {
		return err
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer g.Close()
	state, srv, err := g.ServeHealth(gateway.HealthOptions{Version: versionString()})
	if err != nil {
		return err
	}
	defer state.Close()
	defer srv.Close()
	sd := startSystemdNotify(notifier, state, logger)
	defer sd.close()
	return serve(ctx, g, state, sd, *path, logger)
}

// serve reloads on SIGHUP and drains on the first SIGTERM or SIGINT (or
// when ctx ends); a second SIGTERM or SIGINT exits at once.
func serve(ctx context.Context, g *gateway.Gateway, state *health.State, sd *systemdNotify, path string, logger *slog.Logger) error {
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	stops := 0
	drainCtx, abort := context.WithCancel(context.Background())
	defer abort()
	drained := make(chan error, 1)
	// One SIGTERM arrives both through ctx (main's NotifyContext) and
	// through sigs: start the drain once, and name the signal (sigs), not
	// whichever of the two the select happened to take first.
	draining := false
	startDrain := func(why string) {
		if !draining && !state.Draining() {
			draining = true
			logger.Info(why+": draining", "drain_timeout", g.Config().Health.DrainTimeout)
			sd.draining()
			g.BeginDrain()
			go func() {
				drained <- health.Drain(drainCtx, state, g.Config().Health.DrainTimeout, g.DrainSteps(), logger)
			}()
		}
	}
	done := ctx.Done()
	for {
		select {
		case <-done:
			done = nil
			if context.Cause(ctx) != ctx.Err() {
				// NotifyContext's cause: a signal, which signal.Notify
				// delivers on sigs too.
				continue
			}
			startDrain("stop requested")
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				sd.reload(func() error { return reload(g, path, logger) })
				continue
			}
			stops++
			if stops == 1 {
				startDrain("signal " + sig.String())
				continue
			}
			logger.Warn("second signal: exiting without waiting for the drain", "signal", sig.String())
			abort()
			return nil
		case <-drained:
			logger.Info("stopping")
			return nil
		}
	}
}

// reload re-reads the configuration file and applies it; a bad file is
// logged (and returned) and the running configuration stays.
func reload(g *gateway.Gateway, path string, logger *slog.Logger) error {
	logger.Info("SIGHUP: reloading configuration", "file", path)
	cfg, err := config.Load(path)
	if err == nil {
		err = g.Reload(cfg)
	}
	if err != nil {
		logger.Error("reload failed, still running the previous configuration", "err", err)
	}
	return err
}

// newLogger returns a slog logger writing text or JSON to w.
func newLogger(w io.Writer, format, level string) (*slog.Logger, error) {
	var lv slog.Level
	switch strings.ToLower(level) {
	case "", "info":
		lv = slog.LevelInfo
	case "debug":
		lv = slog.LevelDebug
	case "warn", "warning":
		lv = slog.LevelWarn
	case "error":
		lv = slog.LevelError
	default:
		return nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("log format %q: want text or json", format)
}
