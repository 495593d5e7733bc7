package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	qrcode "github.com/skip2/go-qrcode"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/keys"
)

const clientUsage = "add NAME [--address A] [--public-key K] [--qr] | list | remove NAME  [--config FILE] [--state-dir DIR]"

// Clients on demand. `client add` appends one line to the peers file
// (clients.peers_file, or the state directory's clients.peers), under an
// flock of PEERSFILE.lock so that concurrent adds neither corrupt the file
// nor hand out one address twice: the configuration is re-read under the
// lock, the new file written under a temporary name and renamed into
// place, so the gateway reads the old file or the new one, never half of
// it. Then the running gateway is sent SIGHUP (see pidfile_unix.go).
//
// The client's private key is generated here and printed once, in the
// client's wg-quick file; it is stored nowhere. With --public-key the
// client keeps its own.

func cmdClient(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("want a subcommand: add, list or remove")
	}
	switch args[0] {
	case "add":
		return cmdClientAdd(args[1:], stdout, stderr)
	case "list", "ls":
		return cmdClientList(args[1:], stdout, stderr)
	case "remove", "rm":
		return cmdClientRemove(args[1:], stdout, stderr)
	case "-h", "--help", "-help", "help":
		fmt.Fprintf(stderr, "usage: anyguard client %s\n\nRun 'anyguard client add --help' for a subcommand's flags.\n", clientUsage)
		return flag.ErrHelp
	}
	return usagef("unknown subcommand %q: want add, list or remove", args[0])
}

// parseWithName parses args that hold one NAME anywhere among the flags.
func parseWithName(fs *flag.FlagSet, args []string) (string, error) {
	var names []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return "", err
			}
			return "", usagef("%v", err)
		}
		if fs.NArg() == 0 {
			break
		}
		names = append(names, fs.Arg(0))
		args = fs.Args()[1:]
	}
	switch {
	case len(names) == 0:
		return "", usagef("NAME is required")
	case len(names) > 1:
		return "", usagef("unexpected argument %q", names[1])
	}
	if err := config.CheckClientName(names[0]); err != nil {
		return "", usagef("client %v", err)
	}
	return names[0], nil
}

func cmdClientAdd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("client add", "NAME [--address A] [--public-key K] [--allowed-ips LIST] [--qr] [--no-reload]",
		"Add a client: the next free address of the client network (or --address), a new key pair (or --public-key),\n"+
			"one line in the peers file, a reload of the running gateway; print the client's wg-quick file\n"+
			"(and with --qr its QR code). The private key is printed once and stored nowhere.", stderr)
	cf := addConfigFlags(fs)
	var wanted []netip.Addr
	fs.Func("address", "the client's `address` in the client network (one per family); default: the next free one", func(s string) error {
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimSuffix(s, "/32"), "/128"))
		if err != nil {
			return fmt.Errorf("%q is not an IP address", s)
		}
		wanted = append(wanted, a.Unmap())
		return nil
	})
	pubText := fs.String("public-key", "", "the client's public `key` (base64), if it made its own key pair; default: generate one")
	allowed := fs.String("allowed-ips", "", "the client's AllowedIPs, comma-separated `prefixes`; default: egress.prefixes and the client network")
	qr := fs.Bool("qr", false, "also print the configuration as a QR code (for the WireGuard mobile apps)")
	noReload := fs.Bool("no-reload", false, "do not signal the running gateway")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	var priv, pub keys.Key
	if *pubText != "" {
		if pub, err = keys.Parse(*pubText); err != nil {
			return usagef("--public-key: %v", err)
		}
		if pub.IsZero() {
			return usagef("--public-key: an all-zero key is not a key")
		}
	} else {
		if priv, err = keys.Generate(); err != nil {
			return err
		}
		pub = priv.Public()
	}
	var clientAllowed []netip.Prefix
	if *allowed != "" {
		for s := range strings.SplitSeq(*allowed, ",") {
			p, err := netip.ParsePrefix(strings.TrimSpace(s))
			if err != nil {
				return usagef("--allowed-ips: %q is not an IP prefix", s)
			}
			clientAllowed = append(clientAllowed, p.Masked())
		}
	}
	src := cf.source()
	var cfg *config.Config
	var peer config.Peer
	file, err := editPeersFile(src, func(c *config.Config, lines []string) ([]string, error) {
		if i := slices.IndexFunc(c.Clients.Peers, func(p config.Peer) bool { return p.Name == name }); i >= 0 {
			return nil, fmt.Errorf("client %q exists already", name)
		}
		if i := slices.IndexFunc(c.Clients.Peers, func(p config.Peer) bool { return p.PublicKey == pub }); i >= 0 {
			return nil, fmt.Errorf("--public-key: client %q has this public key already", c.Clients.Peers[i].Name)
		}
		addrs, err := clientAddresses(c, wanted)
		if err != nil {
			return nil, err
		}
		peer = config.Peer{Name: name, PublicKey: pub, AllowedIPs: addrs}
		// Validate the result as the gateway will, before writing it.
		next := *c
		next.Clients.Peers = append(slices.Clip(c.Clients.Peers), peer)
		if err := next.Validate(); err != nil {
			return nil, err
		}
		cfg = c
		return append(lines, config.PeersFileLine(peer)), nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "anyguard client add: %s (%s) added to %s\n", name, joinPrefixes(peer.AllowedIPs, ", "), file)
	if !*noReload {
		reportReload(src, name, stderr)
	}
	conf, warn := clientConf(cfg, peer, priv, clientAllowed)
	if warn != "" {
		fmt.Fprintf(stderr, "anyguard client add: %s\n", warn)
	}
	if _, err := io.WriteString(stdout, conf); err != nil {
		return err
	}
	if *qr {
		// The QR code without the comment line: smaller, easier to scan.
		_, body, _ := strings.Cut(conf, "\n")
		q, err := qrcode.New(body, qrcode.Medium)
		if err != nil {
			return fmt.Errorf("QR code: %w", err)
		}
		if _, err := io.WriteString(stdout, "\n"+q.ToSmallString(false)); err != nil {
			return err
		}
	}
	return nil
}

// reportReload asks the running gateway to reload and says what happened.
func reportReload(src configSource, name string, stderr io.Writer) {
	pid, err := signalGateway(src.stateDir, syscall.SIGHUP)
	switch {
	case err != nil:
		fmt.Fprintf(stderr, "anyguard client: could not reload the gateway: %v; send it SIGHUP\n", err)
	case pid == 0:
		fmt.Fprintf(stderr, "anyguard client: no gateway runs with state directory %s; reload it by hand (SIGHUP) if it runs elsewhere, or it sees %s at its next start\n", src.stateDir, name)
	default:
		fmt.Fprintf(stderr, "anyguard client: asked the gateway (pid %d) to reload\n", pid)
	}
}

// clientConf returns the client's wg-quick file, and a warning if it
// lacks something the configuration should give.
func clientConf(cfg *config.Config, p config.Peer, priv keys.Key, allowed []netip.Prefix) (string, string) {
	var b strings.Builder
	var warn string
	fmt.Fprintf(&b, "# anyguard client %s: wg-quick configuration (save as /etc/wireguard/NAME.conf, mode 0600)\n", p.Name)
	b.WriteString("[Interface]\n")
	if priv.IsZero() {
		fmt.Fprintf(&b, "# The private key of %s, which the client holds:\nPrivateKey = CLIENT_PRIVATE_KEY\n", p.PublicKey)
	} else {
		fmt.Fprintf(&b, "PrivateKey = %s\n", priv)
	}
	fmt.Fprintf(&b, "Address = %s\n\n[Peer]\n", joinPrefixes(p.AllowedIPs, ", "))
	fmt.Fprintf(&b, "PublicKey = %s\n", cfg.Clients.PrivateKey.Public())
	ep, _ := cfg.Clients.EndpointHostPort()
	if ep == "" {
		b.WriteString("Endpoint = GATEWAY_HOST:" + fmt.Sprint(cfg.Clients.ListenPort) + "\n")
		warn = "clients.endpoint (ANYGUARD_CLIENTS_ENDPOINT) is not set: replace GATEWAY_HOST with the address clients reach the gateway at"
	} else {
		fmt.Fprintf(&b, "Endpoint = %s\n", ep)
	}
	if len(allowed) == 0 {
		allowed = append(slices.Clone(cfg.Egress.Prefixes), clientNetworks(cfg)...)
	}
	fmt.Fprintf(&b, "AllowedIPs = %s\n", joinPrefixes(allowed, ", "))
	b.WriteString("PersistentKeepalive = 25\n")
	return b.String(), warn
}

func joinPrefixes(ps []netip.Prefix, sep string) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, sep)
}

func cmdClientList(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("client list", "[--config FILE] [--state-dir DIR]", "List the configured clients: name, addresses, public key and where each is configured.", stderr)
	cf := addConfigFlags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := cf.source().load(false)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tADDRESSES\tPUBLIC KEY\tFROM")
	inline := len(cfg.Clients.Peers) - cfg.Clients.FilePeers
	for i, p := range cfg.Clients.Peers {
		from := "clients.peers"
		if i >= inline {
			from = cfg.Clients.PeersFile
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", p.Name, joinPrefixes(p.AllowedIPs, ","), p.PublicKey, from)
	}
	return tw.Flush()
}

func cmdClientRemove(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("client remove", "NAME [--no-reload] [--config FILE] [--state-dir DIR]", "Remove a client from the peers file and reload the running gateway.", stderr)
	cf := addConfigFlags(fs)
	noReload := fs.Bool("no-reload", false, "do not signal the running gateway")
	name, err := parseWithName(fs, args)
	if err != nil {
		return err
	}
	src := cf.source()
	file, err := editPeersFile(src, func(c *config.Config, lines []string) ([]string, error) {
		inline := len(c.Clients.Peers) - c.Clients.FilePeers
		if i := slices.IndexFunc(c.Clients.Peers[:inline], func(p config.Peer) bool { return p.Name == name }); i >= 0 {
			return nil, fmt.Errorf("client %q is in the configuration file's clients.peers, not in the peers file: remove it there", name)
		}
		out := slices.DeleteFunc(lines, func(l string) bool { return config.PeersFileName(l) == name })
		if len(out) == len(lines) {
			return nil, fmt.Errorf("no client %q", name)
		}
		return out, nil
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "anyguard client remove: %s removed from %s\n", name, file)
	if !*noReload {
		reportReload(src, name, stderr)
	}
	return nil
}

// editPeersFile runs edit on the lines of the peers file, under its lock,
// with the configuration read under the lock, and replaces the file with
// the lines edit returns. It returns the file's name.
func editPeersFile(src configSource, edit func(*config.Config, []string) ([]string, error)) (string, error) {
	cfg, err := src.load(true)
	if err != nil {
		return "", err
	}
	file := cfg.Clients.PeersFile
	if file == "" {
		if err := os.MkdirAll(src.stateDir, 0o700); err != nil {
			return "", fmt.Errorf("state directory: %w", err)
		}
		file = filepath.Join(src.stateDir, config.StatePeersFile)
	}
	unlock, err := lockFile(file + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	// Again under the lock: another client add may have changed the file,
	// or created the state directory's.
	if cfg, err = src.load(true); err != nil {
		return "", err
	}
	if cfg.Clients.PeersFile != "" && cfg.Clients.PeersFile != file {
		return "", fmt.Errorf("the peers file moved from %s to %s while waiting for its lock", file, cfg.Clients.PeersFile)
	}
	old, err := os.ReadFile(file)
	mode := os.FileMode(0o640)
	switch {
	case err == nil:
		if st, err := os.Stat(file); err == nil {
			mode = st.Mode().Perm()
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		return "", fmt.Errorf("peers file: %w", err)
	}
	text := strings.TrimSuffix(string(old), "\n")
	var lines []string
	if text != "" {
		lines = strings.Split(text, "\n")
	}
	lines, err = edit(cfg, lines)
	if err != nil {
		return "", err
	}
	if err := replaceFile(file, []byte(strings.Join(lines, "\n")+"\n"), mode); err != nil {
		return "", fmt.Errorf("peers file: %w", err)
	}
	return file, nil
}

// replaceFile writes data to a temporary file next to name and renames it
// into place.
func replaceFile(name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := config.OwnLikeDir(tmp.Name(), filepath.Dir(name)); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
