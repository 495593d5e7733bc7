package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/anyguard/anyguard/internal/keys"
)

// The state directory (`anyguard run --state-dir`, default
// /var/lib/anyguard; a volume in a container) keeps what a gateway makes
// for itself on first start, so that `docker run` needs no key written by
// hand and a restart with the same directory keeps its identity:
//
//	clients.key    the client-facing private key, when neither the file nor
//	               the environment gives one, for a standalone gateway only:
//	               every gateway of a fleet must present the same key, so a
//	               fleet member without one is an error
//	backbone.key   this gateway's own backbone key, when the gateway is a
//	               fleet member (cluster.join or cluster.secret_key set) and
//	               none is given
//	clients.peers  the peers file of `anyguard client add`, used when
//	               clients.peers_file is not set
//	anyguard.pid   the running gateway's process id, locked while it runs
//	               (see the command's pidfile.go)
//
// Keys are created with mode 0600 by the user the gateway runs as, in a
// directory of mode 0700, and are never overwritten: a key that exists is
// read (and refused if others may read it), one that does not is
// generated and linked into place atomically, so that two gateways
// starting at once on one directory end up with the same key.

// State directory defaults and file names.
const (
	DefaultStateDir  = "/var/lib/anyguard"
	StateClientsKey  = "clients.key"
	StateBackboneKey = "backbone.key"
	StatePeersFile   = "clients.peers"
)

// StateKey is a key that came from the state directory.
type StateKey struct {
	Path string // the field, e.g. "clients.private_key"
	File string // the key file in the state directory
	// Generated is set when this load created the file; Pending when the
	// file is missing and GenerateKeys was off: the Config then holds a
	// throwaway key in its place.
	Generated, Pending bool
}

// IsFleet reports whether the configuration makes this gateway a member
// of a cluster (a fleet), before any backbone key is generated: it names
// gateways to join or a gossip key, or has a backbone key.
func (c *Config) IsFleet() bool {
	return len(c.Cluster.Join) > 0 || !c.Cluster.SecretKey.IsZero() || c.Cluster.Insecure || c.Clustered()
}

// useStateDir fills in from o.StateDir the keys and the peers file that
// neither file nor environment gave.
func (c *Config) useStateDir(v *validator, o *Options) error {
	c.StateDir = o.StateDir
	fleet := c.IsFleet()
	if c.Clients.PrivateKey.IsZero() {
		if fleet {
			return v.errorf("clients.private_key", ErrMissing,
				"required: every gateway of a fleet must present the same client-facing key, so none is generated for a fleet member; "+
					"generate one (anyguard genkey > clients.key) and give it to every gateway as clients.private_key_file (ANYGUARD_CLIENTS_PRIVATE_KEY_FILE)")
		}
		if o.StateDir != "" {
			if err := c.stateKey(o, "clients.private_key", StateClientsKey, &c.Clients.PrivateKey); err != nil {
				return err
			}
		}
	}
	if fleet && c.Backbone.PrivateKey.IsZero() && o.StateDir != "" {
		if err := c.stateKey(o, "backbone.private_key", StateBackboneKey, &c.Backbone.PrivateKey); err != nil {
			return err
		}
	}
	if c.Clients.PeersFile == "" && o.StateDir != "" {
		name := filepath.Join(o.StateDir, StatePeersFile)
		switch _, err := os.Stat(name); {
		case err == nil:
			c.Clients.PeersFile = name
		case !errors.Is(err, fs.ErrNotExist):
			return &FieldError{Path: "clients.peers_file", Err: fmt.Errorf("state directory: %w", err)}
		}
	}
	return nil
}

// stateKey reads the key file name of the state directory into k, or
// creates it.
func (c *Config) stateKey(o *Options, path, name string, k *keys.Key) error {
	file := filepath.Join(o.StateDir, name)
	sk := StateKey{Path: path, File: file}
	key, err := keys.ReadFile(file)
	switch {
	case err == nil:
	case !errors.Is(err, fs.ErrNotExist):
		return &FieldError{Path: path, Err: fmt.Errorf("state directory: %w", err)}
	case !o.GenerateKeys:
		if key, err = keys.Generate(); err != nil {
			return &FieldError{Path: path, Err: err}
		}
		sk.Pending = true
	default:
		if key, err = createKey(file); err != nil {
			return &FieldError{Path: path, Err: fmt.Errorf("state directory: %w", err)}
		}
		sk.Generated = true
	}
	if key.IsZero() {
		return &FieldError{Path: path, Err: errorf(ErrInvalidValue, "state directory: %s holds an all-zero key", file)}
	}
	*k = key
	c.StateKeys = append(c.StateKeys, sk)
	return nil
}

// createKey generates a key and writes it to file (mode 0600), creating
// the directory (mode 0700) if needed. If another process created the
// file first, its key is returned instead: the file is written under a
// temporary name and linked into place, so it is never seen half
// written.
func createKey(file string) (keys.Key, error) {
	dir := filepath.Dir(file)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return keys.Key{}, err
	}
	k, err := keys.Generate()
	if err != nil {
		return keys.Key{}, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(file)+".*")
	if err != nil {
		return keys.Key{}, err
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600 already; say so anyway, in case that
	// ever changes.
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return keys.Key{}, err
	}
	if _, err := tmp.WriteString(k.String() + "\n"); err != nil {
		tmp.Close()
		return keys.Key{}, err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return keys.Key{}, err
	}
	if err := tmp.Close(); err != nil {
		return keys.Key{}, err
	}
	if err := OwnLikeDir(tmp.Name(), dir); err != nil {
		return keys.Key{}, err
	}
	if err := os.Link(tmp.Name(), file); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return keys.ReadFile(file)
		}
		return keys.Key{}, err
	}
	return k, nil
}
