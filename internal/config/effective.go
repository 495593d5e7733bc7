package config

import (
	"bytes"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/anyguard/anyguard/internal/keys"
)

// Redacted stands for a secret in [Config.Effective].
const Redacted = "(secret)"

// Effective returns the configuration in force as YAML that Parse reads
// back (secrets aside), every secret (private and preshared keys, the
// gossip key) replaced by [Redacted]. Comments say where a value came
// from when it was not the file: a variable, or the state directory; and
// give the public key of each private key. The clients of the peers file
// are counted, not listed.
func (c *Config) Effective() ([]byte, error) {
	e := &effective{c: c}
	root := e.mapping("", reflect.ValueOf(c).Elem())
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(root); err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("config: encode: %w", err)
	}
	return b.Bytes(), nil
}

type effective struct{ c *Config }

func scalar(s string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Value: s, Tag: "!!str"}
}

// comment says where the field at path came from, if not the file.
func (e *effective) comment(path string) string {
	if name, ok := e.c.Env[path]; ok {
		return "from " + name
	}
	for _, sk := range e.c.StateKeys {
		if sk.Path == path {
			switch {
			case sk.Pending:
				return "to be generated at first start in " + sk.File
			case sk.Generated:
				return "generated now in " + sk.File
			default:
				return "from " + sk.File
			}
		}
	}
	return ""
}

// pending reports whether the key at path is a throwaway one standing for
// a key yet to be generated.
func (e *effective) pending(path string) bool {
	for _, sk := range e.c.StateKeys {
		if sk.Path == path && sk.Pending {
			return true
		}
	}
	return false
}

func (e *effective) mapping(path string, v reflect.Value) *yaml.Node {
	n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
	t := v.Type()
	for _, f := range fieldsOf(t) {
		p := join(path, f.name)
		fv := v.Field(f.index)
		var val *yaml.Node
		switch {
		case p == "clients.peers":
			val = e.peers(fv)
		case f.file:
			if fv.Interface().(keys.Key).IsZero() {
				continue // unset: an empty key would not read back
			}
			val = e.key(fv.Interface().(keys.Key), true)
		default:
			val = e.value(p, fv)
		}
		k := scalar(f.name)
		comment := e.comment(p)
		if f.file && strings.HasSuffix(p, "private_key") && !e.pending(p) {
			if k := fv.Interface().(keys.Key); !k.IsZero() {
				if comment != "" {
					comment += "; "
				}
				comment += "public key " + k.Public().String()
			}
		}
		if p == "clients.peers_file" && e.c.Clients.PeersFile != "" {
			if comment != "" {
				comment += "; "
			}
			comment += strconv.Itoa(e.peersFromFile()) + " clients"
		}
		val.LineComment = comment
		n.Content = append(n.Content, k, val)
	}
	return n
}

// peersFromFile is how many of Clients.Peers the peers file gave: those
// after the ones of the file's clients.peers.
func (e *effective) peersFromFile() int {
	if e.c.Clients.PeersFile == "" {
		return 0
	}
	return e.c.Clients.FilePeers
}

func (e *effective) peers(v reflect.Value) *yaml.Node {
	n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
	for i := range len(e.c.Clients.Peers) - e.c.Clients.FilePeers {
		n.Content = append(n.Content, e.mapping("clients.peers["+strconv.Itoa(i)+"]", v.Index(i)))
	}
	return n
}

func (e *effective) key(k keys.Key, secret bool) *yaml.Node {
	switch {
	case k.IsZero():
		return scalar("")
	case secret:
		return scalar(Redacted)
	}
	return scalar(k.String())
}

func (e *effective) value(path string, v reflect.Value) *yaml.Node {
	switch x := v.Interface().(type) {
	case keys.Key:
		return e.key(x, false)
	case netip.Prefix:
		return scalar(x.String())
	case time.Duration:
		return scalar(x.String())
	}
	switch v.Kind() {
	case reflect.String:
		return scalar(v.String())
	case reflect.Bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(v.Bool())}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatInt(v.Int(), 10)}
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!int", Value: strconv.FormatUint(v.Uint(), 10)}
	case reflect.Slice:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Style: yaml.FlowStyle}
		for i := range v.Len() {
			n.Content = append(n.Content, e.value(path, v.Index(i)))
		}
		return n
	case reflect.Struct:
		return e.mapping(path, v)
	}
	panic("config: cannot print " + v.Type().String())
}
