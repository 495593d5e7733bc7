package main

import (
	"errors"
	"flag"
	"io/fs"
	"os"

	"github.com/anyguard/anyguard/internal/config"
)

// Where run, check and client find the configuration.
const (
	// defaultConfigPath is read when --config and ANYGUARD_CONFIG name no
	// file and it exists (the image's mount point, and the packages').
	defaultConfigPath = "/etc/anyguard/anyguard.yaml"
	configEnv         = "ANYGUARD_CONFIG"
	stateDirEnv       = "ANYGUARD_STATE_DIR"
)

// configFlags are the flags of every command that loads the configuration
// as `run` does.
type configFlags struct {
	path, stateDir *string
}

func addConfigFlags(fs *flag.FlagSet) configFlags {
	stateDefault := config.DefaultStateDir
	if d := os.Getenv(stateDirEnv); d != "" {
		stateDefault = d
	}
	return configFlags{
		path: fs.String("config", "", "configuration `file` (YAML); default $"+configEnv+", or "+defaultConfigPath+
			" if it exists, or none: the ANYGUARD_* environment variables alone"),
		stateDir: fs.String("state-dir", stateDefault, "`directory` of generated keys, the client add peers file and the pid file (default $"+stateDirEnv+" or "+config.DefaultStateDir+")"),
	}
}

// configSource is a resolved configFlags.
type configSource struct {
	path     string // "" for the environment alone
	stateDir string
}

// source resolves the flags: --config, else $ANYGUARD_CONFIG, else the
// default path if it exists.
func (f configFlags) source() configSource {
	s := configSource{path: *f.path, stateDir: *f.stateDir}
	if s.path == "" {
		s.path = os.Getenv(configEnv)
	}
	if s.path == "" {
		if _, err := os.Stat(defaultConfigPath); !errors.Is(err, fs.ErrNotExist) {
			s.path = defaultConfigPath
		}
	}
	return s
}

// load loads the configuration as `run` does: the file, the environment
// over it, the state directory; generate creates missing state keys.
func (s configSource) load(generate bool) (*config.Config, error) {
	return config.LoadWith(s.path, config.Options{Env: os.Environ(), StateDir: s.stateDir, GenerateKeys: generate})
}

// describe names the sources for messages.
func (s configSource) describe() string {
	if s.path == "" {
		return "the environment"
	}
	return s.path + " and the environment"
}
