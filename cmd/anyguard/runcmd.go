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
	fs := newFlags("run", "[--config FILE] [--state-dir DIR]", "Run a gateway until SIGINT or SIGTERM, configured by the YAML file and the ANYGUARD_* environment variables over it\n(docs/configuration.md). SIGHUP reloads both.", stderr)
	cf := addConfigFlags(fs)
	format := fs.String("log-format", "", "log format, text or json (overrides log.format)")
	level := fs.String("log-level", "", "log level, debug, info, warn or error (overrides log.level)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	src := cf.source()
	cfg, err := src.load(true)
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
	logStateKeys(cfg, logger)
	// Signals are caught before the pid file tells `client add` whom to
	// send SIGHUP: its default action would end a gateway still starting.
	// A SIGHUP received during start-up reloads once serving.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, os.Interrupt)
	defer signal.Stop(sigs)
	if pf := lockStateDir(src.stateDir, logger); pf != nil {
		defer pf.Close()
	}
	g, err := gateway.New(cfg, gateway.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer g.Close()
	state, srv, err := g.ServeHealth(gateway.HealthOptions{Version: versionString(), Revision: revisionString()})
	if err != nil {
		return err
	}
	defer state.Close()
	defer srv.Close()
	sd := startSystemdNotify(notifier, state, logger)
	defer sd.close()
	return serve(ctx, sigs, g, state, sd, src, logger)
}

// logStateKeys says which keys came from the state directory; the public
// key of a client-facing key generated now is what clients need.
func logStateKeys(cfg *config.Config, logger *slog.Logger) {
	for _, sk := range cfg.StateKeys {
		switch {
		case sk.Generated && sk.Path == "clients.private_key":
			logger.Info("generated the client-facing key; clients use its public key",
				"file", sk.File, "public_key", cfg.Clients.PrivateKey.Public().String())
		case sk.Generated:
			logger.Info("generated a key", "field", sk.Path, "file", sk.File)
		default:
			logger.Debug("key from the state directory", "field", sk.Path, "file", sk.File)
		}
	}
}

// lockStateDir writes and locks the pid file of an existing state
// directory, for `anyguard client add` to find this gateway. Without one
// the gateway runs all the same (client add then says to reload by hand).
func lockStateDir(dir string, logger *slog.Logger) *pidFile {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil
	}
	pf, err := acquirePidFile(dir)
	if err != nil {
		logger.Warn("no pid file: anyguard client add cannot reload this gateway", "err", err)
		return nil
	}
	return pf
}

// serve reloads on SIGHUP and drains on the first SIGTERM or SIGINT from
// sigs (or when ctx ends); a second SIGTERM or SIGINT exits at once.
func serve(ctx context.Context, sigs <-chan os.Signal, g *gateway.Gateway, state *health.State, sd *systemdNotify, src configSource, logger *slog.Logger) error {
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
				sd.reload(func() error { return reload(g, src, logger) })
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

// reload re-reads the configuration (file, environment, state directory)
// and applies it; a bad one is logged (and returned) and the running
// configuration stays.
func reload(g *gateway.Gateway, src configSource, logger *slog.Logger) error {
	logger.Info("SIGHUP: reloading configuration", "file", src.path)
	cfg, err := src.load(true)
	if err == nil {
		err = g.Reload(cfg)
	} else {
		g.ReloadFailed()
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
