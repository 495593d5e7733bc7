package config

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validate checks the whole configuration and returns the first problem
// as a [*FieldError] (wrapped with the file name). It works on a Config
// built in Go too, which should start from [Default]. Its errors carry no
// line numbers: Parse reports problems of the file with their lines, and
// does not keep the file's layout afterwards. Checks that need the file itself (unknown keys, both
// private_key and private_key_file, unreadable key files) happen in Parse.
func (c *Config) Validate() error {
	if err := c.validate(&validator{}); err != nil {
		if c.Path != "" {
			return fmt.Errorf("config %s: %w", c.Path, err)
		}
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// validate runs the checks of each section in file order.
func (c *Config) validate(v *validator) error {
	for _, check := range []func(*validator) error{
		c.Node.validate,
		c.Clients.validate,
		c.Egress.validate,
		c.Health.validate,
		func(v *validator) error { return c.Backbone.validate(v, c) },
		func(v *validator) error { return c.Cluster.validate(v, c) },
		c.Log.validate,
	} {
		if err := check(v); err != nil {
			return err
		}
	}
	return nil
}

// validator builds FieldErrors with the line each field was read from.
type validator struct {
	root  *yaml.Node // the parsed file; nil for a Config built in Go
	peers *filePeers // the clients read from clients.peers_file, if any
	// env maps the fields set by environment variables to their names;
	// nil when the environment was not read.
	env map[string]string
}

// envFor returns the variable that set the field at path, or a list of
// which path is an element, or "".
func (v *validator) envFor(path string) string {
	if v.env == nil {
		return ""
	}
	if name, ok := v.env[path]; ok {
		return name
	}
	if i := strings.IndexByte(path, '['); i > 0 {
		return v.env[path[:i]]
	}
	return ""
}

// filePeers says where the clients read from a peers file are: they are
// Clients.Peers[first:], and lines[i] is the line of Peers[first+i].
type filePeers struct {
	file  string
	first int
	lines []int32
}

// inPeersFile maps the path of a field of a client read from the peers
// file ("clients.peers[N].public_key") to its line there and the field's
// path within the line ("public_key").
func (v *validator) inPeersFile(path string) (line int, rest string, ok bool) {
	const prefix = "clients.peers["
	if v.peers == nil || !strings.HasPrefix(path, prefix) {
		return 0, "", false
	}
	end := strings.IndexByte(path, ']')
	i, err := strconv.Atoi(path[len(prefix):max(end, len(prefix))])
	if end < 0 || err != nil || i < v.peers.first || i-v.peers.first >= len(v.peers.lines) {
		return 0, "", false
	}
	return int(v.peers.lines[i-v.peers.first]), strings.TrimPrefix(path[end+1:], "."), true
}

// fieldError is the FieldError for path: at its line in the configuration
// file, or in the peers file.
func (v *validator) fieldError(path string, err error, hint string) *FieldError {
	if line, rest, ok := v.inPeersFile(path); ok {
		return &FieldError{File: v.peers.file, Line: line, Path: rest, Err: err, Hint: hint}
	}
	if name := v.envFor(path); name != "" {
		return &FieldError{Env: name, Path: path, Err: err, Hint: hint}
	}
	if v.env != nil && hint == "" && errors.Is(err, ErrMissing) {
		// The environment was read: say how to set the field there too.
		if _, inFile := v.find(path); !inFile {
			if name := EnvName(path); name != "" && !strings.Contains(err.Error(), name) {
				hint = "or set " + name
				if isSecretPath(path) {
					hint += " or " + name + "_FILE"
				}
			}
		}
	}
	return &FieldError{Path: path, Line: v.line(path), Err: err, Hint: hint}
}

// line returns the line of path or, if it was not in the file (a missing
// field), of the nearest enclosing field that was.
func (v *validator) line(path string) int {
	l, _ := v.find(path)
	return l
}

// find follows path ("clients.peers[3].allowed_ips[0]") through the parsed
// file. It returns the line of the deepest field of path that the file
// has, and whether the file has path itself. A field's line is that of its
// value, or of its key when the value is a mapping or a list (as decode
// reports it); a list element's is its own.
func (v *validator) find(path string) (line int, found bool) {
	n := v.root
	if n == nil {
		return 0, false
	}
	line = n.Line
	for path != "" {
		var seg string
		if path[0] == '[' {
			end := strings.IndexByte(path, ']')
			if end < 0 || n.Kind != yaml.SequenceNode {
				return line, false
			}
			i, err := strconv.Atoi(path[1:end])
			if err != nil || i < 0 || i >= len(n.Content) {
				return line, false
			}
			n, path = n.Content[i], path[end+1:]
			line = n.Line
			continue
		}
		path = strings.TrimPrefix(path, ".")
		end := strings.IndexAny(path, ".[")
		if end < 0 {
			end = len(path)
		}
		seg, path = path[:end], path[end:]
		if n.Kind != yaml.MappingNode {
			return line, false
		}
		var val *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if k := n.Content[i]; k.Value == seg {
				val = n.Content[i+1]
				line = val.Line
				if val.Kind == yaml.MappingNode || val.Kind == yaml.SequenceNode {
					line = k.Line
				}
				break
			}
		}
		if val == nil {
			return line, false
		}
		n = val
	}
	return line, true
}

func (v *validator) errorf(path string, kind error, format string, args ...any) *FieldError {
	return v.fieldError(path, errorf(kind, format, args...), "")
}

// elem returns the path of element i of the list at path, or path itself
// when the file gave a single scalar instead of a list.
func (v *validator) elem(path string, i int) string {
	if i == 0 {
		_, scalar := v.find(path)
		_, listed := v.find(path + "[0]")
		if scalar && !listed {
			return path
		}
	}
	return fmt.Sprintf("%s[%d]", path, i)
}

// where names a field for a message about another field.
func (v *validator) where(path string) string {
	if line, _, ok := v.inPeersFile(path); ok {
		return v.peers.file + ":" + strconv.Itoa(line)
	}
	if name := v.envFor(path); name != "" {
		return fmt.Sprintf("%s (%s)", path, name)
	}
	if l := v.line(path); l > 0 {
		return fmt.Sprintf("%s on line %d", path, l)
	}
	return path
}

func (n *Node) validate(v *validator) error {
	if err := checkName(v, "node.name", n.Name, 63, "._-", "defaults to the host name"); err != nil {
		return err
	}
	return checkName(v, "node.region", n.Region, 63, "._-", "")
}

// validName reports whether s is 1..max characters of A-Z a-z 0-9 and extra.
func validName(s string, max int, extra string) bool {
	if s == "" || len(s) > max {
		return false
	}
	for _, r := range s {
		if !('a' <= r && r <= 'z' || 'A' <= r && r <= 'Z' || '0' <= r && r <= '9' || strings.ContainsRune(extra, r)) {
			return false
		}
	}
	return true
}

// checkName checks that s is 1..max characters of A-Z a-z 0-9 and extra.
func checkName(v *validator, path, s string, max int, extra, why string) error {
	if s == "" {
		if why != "" {
			return v.errorf(path, ErrMissing, "required (%s)", why)
		}
		return v.errorf(path, ErrMissing, "required")
	}
	if !validName(s, max, extra) {
		return v.errorf(path, ErrInvalidValue, "%q is not a valid name: use 1 to %d of A-Z a-z 0-9 %s", s, max, strings.Join(strings.Split(extra, ""), " "))
	}
	return nil
}

func (e *Egress) validate(v *validator) error {
	if e.Mode != ModeTUN && e.Mode != ModeNetstack {
		return v.errorf("egress.mode", ErrInvalidValue, "%q is not one of %s, %s", e.Mode, ModeTUN, ModeNetstack)
	}
	if !validIfName(e.TunName) {
		return v.errorf("egress.tun_name", ErrInvalidValue, "%q is not a valid interface name: use 1 to 15 bytes without / : or spaces", e.TunName)
	}
	if e.Queues < 0 || e.Queues > 256 {
		return v.errorf("egress.queues", ErrInvalidValue, "%d is out of range 0..256 (0 means one per CPU)", e.Queues)
	}
	var ps []placed
	for i, p := range e.Prefixes {
		path := fmt.Sprintf("egress.prefixes[%d]", i)
		if err := checkNetwork(v, path, p); err != nil {
			return err
		}
		ps = append(ps, placed{p: p, i: i, order: i})
	}
	if a, b, ok := firstOverlap(ps); ok {
		apath, bpath := fmt.Sprintf("egress.prefixes[%d]", a.i), fmt.Sprintf("egress.prefixes[%d]", b.i)
		if a.p == b.p {
			return v.errorf(bpath, ErrDuplicate, "%s is also listed at %s", b.p, v.where(apath))
		}
		return v.errorf(bpath, ErrOverlap, "%s overlaps %s at %s", b.p, a.p, v.where(apath))
	}
	return nil
}

// validIfName reports whether s is a name Linux accepts for an interface
// (dev_valid_name).
func validIfName(s string) bool {
	if s == "" || len(s) > 15 || s == "." || s == ".." {
		return false
	}
	for i := range len(s) {
		switch c := s[i]; c {
		case '/', ':', ' ', '\t', '\n', '\v', '\f', '\r', 0:
			return false
		}
	}
	return true
}

func (l *Log) validate(v *validator) error {
	switch l.Level {
	case "debug", "info", "warn", "error":
	default:
		return v.errorf("log.level", ErrInvalidValue, "%q is not one of debug, info, warn, error", l.Level)
	}
	switch l.Format {
	case "text", "json":
	default:
		return v.errorf("log.format", ErrInvalidValue, "%q is not one of text, json", l.Format)
	}
	return nil
}

// checkPrefix checks a prefix built in Go or parsed from the file.
func checkPrefix(v *validator, path string, p netip.Prefix) error {
	switch {
	case !p.IsValid():
		return v.errorf(path, ErrMissing, "no valid IP prefix given")
	case p.Addr().Zone() != "":
		return v.errorf(path, ErrInvalidValue, "%s has an IPv6 zone, which a prefix cannot have", p)
	case p.Addr().Is4In6():
		return v.errorf(path, ErrInvalidValue, "%s is an IPv4-mapped IPv6 prefix; write it in IPv4 form", p)
	}
	return nil
}

// isNetwork reports whether checkNetwork accepts p, without building the
// path an error needs.
func isNetwork(p netip.Prefix) bool {
	return p.IsValid() && p.Addr().Zone() == "" && !p.Addr().Is4In6() && p.Masked() == p
}

// checkNetwork checks a prefix naming a network: no host bits set.
func checkNetwork(v *validator, path string, p netip.Prefix) error {
	if err := checkPrefix(v, path, p); err != nil {
		return err
	}
	if m := p.Masked(); m != p {
		return v.fieldError(path, errorf(ErrInvalidValue, "%s has host bits set", p), "use "+m.String())
	}
	return nil
}

// placed is a prefix with where it came from, for overlap reports: the
// indices of its list (and of its peer), from which callers build the
// field's path only when they report it.
type placed struct {
	p     netip.Prefix
	i, j  int // list index; for allowed IPs: peer index i, allowed_ips index j
	order int // position in the file
}

// firstOverlap finds two overlapping (or equal) canonical prefixes, b being
// the later one in the file. Sorted by address then length, prefixes
// either nest or are disjoint, so while none overlap each one can only
// overlap its predecessor: checking neighbours finds an overlap if there is
// one, in O(n log n).
func firstOverlap(ps []placed) (a, b placed, ok bool) {
	s := slices.Clone(ps)
	slices.SortFunc(s, func(x, y placed) int {
		if c := x.p.Addr().Compare(y.p.Addr()); c != 0 {
			return c
		}
		if c := cmp.Compare(x.p.Bits(), y.p.Bits()); c != 0 {
			return c
		}
		return cmp.Compare(x.order, y.order)
	})
	for i := 1; i < len(s); i++ {
		if s[i-1].p.Overlaps(s[i].p) {
			a, b = s[i-1], s[i]
			if a.order > b.order {
				a, b = b, a
			}
			return a, b, true
		}
	}
	return placed{}, placed{}, false
}
