package config

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"go.yaml.in/yaml/v3"

	"github.com/anyguard/anyguard/internal/keys"
)

// Egress modes.
const (
	ModeTUN      = "tun"      // forward to the private networks through a kernel TUN device
	ModeNetstack = "netstack" // terminate client flows in a userspace TCP/IP stack
)

// Defaults applied by [Default] and [Parse].
const (
	DefaultRegion     = "default"
	DefaultListenPort = 51820
	DefaultMTU        = 1420
	DefaultTunName    = "ag0"
	DefaultLogLevel   = "info"
	DefaultLogFormat  = "text"
)

// Config is the whole configuration of one gateway. It is built once by
// [Load] or [Parse] (or in Go, starting from [Default]) and then treated as
// immutable; a reload builds a new one.
type Config struct {
	Node     Node     `yaml:"node"`
	Clients  Clients  `yaml:"clients"`
	Egress   Egress   `yaml:"egress"`
	Health   Health   `yaml:"health"`
	Backbone Backbone `yaml:"backbone"`
	Cluster  Cluster  `yaml:"cluster"`
	Log      Log      `yaml:"log"`

	// Path is the file the configuration was loaded from ("" for Parse,
	// and for a configuration from the environment alone).
	Path string `yaml:"-"`
	// Env maps each field that an environment variable set (by path, e.g.
	// "clients.mtu") to the variable; nil when the environment was not
	// read.
	Env map[string]string `yaml:"-"`
	// StateDir is the state directory that [LoadWith] was given, and
	// StateKeys the keys it took from there.
	StateDir  string     `yaml:"-"`
	StateKeys []StateKey `yaml:"-"`
}

// Node identifies this gateway in its cluster.
type Node struct {
	Name   string `yaml:"name"`   // default: os.Hostname(); [A-Za-z0-9._-]{1,63}
	Region string `yaml:"region"` // default "default"; [A-Za-z0-9._-]{1,63}
}

// Clients is the WireGuard interface that clients connect to. It is
// identical on every gateway, so a client may connect to any of them.
type Clients struct {
	// PrivateKey comes from private_key (base64) or private_key_file (a path,
	// relative to the configuration file's directory).
	PrivateKey keys.Key `yaml:"private_key" config:"file"`
	// ListenPort is the UDP port; 0 picks a random one (for tests).
	ListenPort uint16 `yaml:"listen_port"`
	// Address is the gateway's own address on the client network, with the
	// network's prefix length (e.g. 10.99.0.1/16): at most one IPv4 and one
	// IPv6 prefix. In YAML a single string or a list.
	Address []netip.Prefix `yaml:"address" config:"one"`
	MTU     int            `yaml:"mtu"`  // 1280..9000, default 1420
	UAPI    bool           `yaml:"uapi"` // expose a wg(8)-compatible UAPI socket; default true
	// Peers are the clients: those of clients.peers, then those of the
	// peers file, if any.
	Peers []Peer `yaml:"peers"`
	// PeersFile names a file of further clients, one per line (see
	// parsePeersFile), relative to the configuration file's directory.
	// Load replaces it by the path it read and appends its clients to
	// Peers; [Config.Validate] does not read it.
	PeersFile string `yaml:"peers_file"`
	// Endpoint is where clients send to, HOST:PORT or HOST (the anycast
	// name or address; the port defaults to ListenPort). Only `anyguard
	// client add` uses it, for the client's configuration.
	Endpoint string `yaml:"endpoint"`
	// FilePeers is how many of Peers, at their end, came from PeersFile.
	FilePeers int `yaml:"-"`
}

// Peer is one client.
type Peer struct {
	Name      string   `yaml:"name"` // unique, [A-Za-z0-9._@+-]{1,64}
	PublicKey keys.Key `yaml:"public_key"`
	// PresharedKey comes from preshared_key or preshared_key_file; zero
	// means none.
	PresharedKey keys.Key       `yaml:"preshared_key" config:"file"`
	AllowedIPs   []netip.Prefix `yaml:"allowed_ips"`
}

// Egress is the way out to the private networks this gateway serves.
type Egress struct {
	Mode     string         `yaml:"mode"`     // ModeTUN (default) or ModeNetstack
	TunName  string         `yaml:"tun_name"` // Linux interface name, default "ag0"
	Queues   int            `yaml:"queues"`   // 0..256; 0 (default) means one per CPU
	Prefixes []netip.Prefix `yaml:"prefixes"` // canonical, not overlapping
}

// Log configures the process logger.
type Log struct {
	Level  string `yaml:"level"`  // debug, info (default), warn or error
	Format string `yaml:"format"` // text (default) or json
}

// Default returns a Config with every default filled in and no keys or
// peers; it does not pass Validate until those are set.
func Default() *Config {
	host, _ := os.Hostname()
	return &Config{
		Node:     Node{Name: host, Region: DefaultRegion},
		Clients:  Clients{ListenPort: DefaultListenPort, MTU: DefaultMTU, UAPI: true},
		Egress:   Egress{Mode: ModeTUN, TunName: DefaultTunName},
		Backbone: Backbone{ListenPort: DefaultBackbonePort},
		Cluster:  Cluster{Bind: "0.0.0.0:7946", Profile: DefaultProfile, ReconnectTimeout: DefaultReconnectTimeout},
		Health: Health{Listen: DefaultHealthListen, AdminListen: DefaultHealthAdminListen, TCPListen: DefaultHealthTCPListen,
			DrainTimeout: DefaultDrainTimeout, PerClientLimit: DefaultPerClientLimit},
		Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
	}
}

// Load reads and parses the configuration file at path. Relative key file
// paths in it resolve against the file's directory.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := parse(data, filepath.Dir(path))
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", path, err)
	}
	c.Path = path
	return c, nil
}

// Options name the sources of a configuration besides its file, for
// [LoadWith].
type Options struct {
	// Env is the environment, as os.Environ returns it. Its ANYGUARD_
	// variables (see [EnvVars]) override the file's fields.
	Env []string
	// StateDir, if set, is the state directory (see statedir.go): it
	// supplies the keys that neither file nor environment give, and the
	// peers file `anyguard client add` writes when clients.peers_file is
	// not set.
	StateDir string
	// GenerateKeys creates the missing keys in StateDir (as `anyguard run`
	// does). Without it a missing key is replaced by a throwaway one, so
	// that the rest can be checked (as `anyguard check` does), and listed
	// in StateKeys as pending.
	GenerateKeys bool
}

// LoadWith loads the configuration as `anyguard run` does: the file at
// path (or none, if path is ""), then the environment over it, then the
// state directory for the keys and the peers file neither names; and
// validates the result. Every error names the file and line, or the
// variable, or the state directory's file it comes from.
func LoadWith(path string, o Options) (*Config, error) {
	var data []byte
	dir := ""
	if path != "" {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dir = filepath.Dir(path)
	}
	// Generate nothing for a configuration that fails anyway: load it
	// first with throwaway keys in place of missing ones, and again,
	// generating them, only if some are missing (a full configuration is
	// parsed once).
	dry := o
	dry.GenerateKeys = false
	c, err := parseWith(data, path != "", dir, &dry)
	if err == nil && o.GenerateKeys && slices.ContainsFunc(c.StateKeys, func(k StateKey) bool { return k.Pending }) {
		c, err = parseWith(data, path != "", dir, &o)
	}
	if err != nil {
		return nil, wrapLoadError(path, err)
	}
	c.Path = path
	return c, nil
}

func wrapLoadError(path string, err error) error {
	if path != "" {
		return fmt.Errorf("config %s: %w", path, err)
	}
	return fmt.Errorf("config: %w", err)
}

// Parse parses a configuration from data, applies defaults to the fields
// it leaves out, reads the key files it names (relative paths resolve
// against baseDir) and validates the result.
func Parse(data []byte, baseDir string) (*Config, error) {
	c, err := parse(data, baseDir)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return c, nil
}

func parse(data []byte, baseDir string) (*Config, error) {
	return parseWith(data, true, baseDir, nil)
}

// parseWith parses data (if hasFile), then applies the environment and
// the state directory of o (if not nil), then reads the peers file and
// validates.
func parseWith(data []byte, hasFile bool, baseDir string, o *Options) (*Config, error) {
	c := Default()
	var root *yaml.Node
	if hasFile {
		var err error
		if root, err = decode(data, baseDir, c); err != nil {
			return nil, err
		}
	}
	// Validation finds lines in the parsed YAML tree, which is dropped
	// afterwards: a table of every field's line would cost tens of MB at
	// 100k clients, for errors that are almost always found here.
	v := &validator{root: root}
	var err error
	if o != nil {
		if v.env, err = applyEnv(c, o.Env); err != nil {
			return nil, err
		}
		c.Env = v.env
		if err := c.useStateDir(v, o); err != nil {
			return nil, err
		}
	}
	if v.peers, err = c.Clients.loadPeersFile(v, baseDir); err != nil {
		return nil, err
	}
	if err := c.validate(v); err != nil {
		return nil, err
	}
	return c, nil
}
