package main

import (
	"context"
	"fmt"
	"io"
)

func cmdCheck(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("check", "[--config FILE] [--state-dir DIR] [--quiet]",
		"Load the configuration exactly as run would (file, ANYGUARD_* variables, key files, state directory,\n"+
			"peers file), print the effective configuration with secrets redacted, and exit 0 if it is valid,\n"+
			"1 with the error if not. Nothing is created: keys run would generate are reported.", stderr)
	cf := addConfigFlags(fs)
	quiet := fs.Bool("quiet", false, "print nothing when the configuration is valid")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	src := cf.source()
	cfg, err := src.load(false)
	if err != nil {
		return err
	}
	if *quiet {
		return nil
	}
	out, err := cfg.Effective()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "# anyguard check: valid; from %s, state directory %s\n", src.describe(), src.stateDir)
	pending := false
	for _, sk := range cfg.StateKeys {
		if sk.Pending {
			fmt.Fprintf(stdout, "# %s: none given; run will generate %s\n", sk.Path, sk.File)
			pending = pending || sk.Path == "clients.private_key"
		}
	}
	if cfg.Clients.PeersFile != "" {
		fmt.Fprintf(stdout, "# %d clients, %d of them from %s\n", len(cfg.Clients.Peers), cfg.Clients.FilePeers, cfg.Clients.PeersFile)
	}
	if !pending {
		fmt.Fprintf(stdout, "# client-facing public key: %s\n", cfg.Clients.PrivateKey.Public())
	}
	_, err = stdout.Write(out)
	return err
}
