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

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
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
	g, err := gateway.New(cfg, gateway.Options{Logger: logger})
	if err != nil {
		return err
	}
	defer g.Close()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			logger.Info("signal received, stopping")
			return nil
		case <-hup:
			reload(g, *path, logger)
		}
	}
}

// reload re-reads the configuration file and applies it; a bad file is
// logged and the running configuration stays.
func reload(g *gateway.Gateway, path string, logger *slog.Logger) {
	logger.Info("SIGHUP: reloading configuration", "file", path)
	cfg, err := config.Load(path)
	if err == nil {
		err = g.Reload(cfg)
	}
	if err != nil {
		logger.Error("reload failed, still running the previous configuration", "err", err)
	}
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
