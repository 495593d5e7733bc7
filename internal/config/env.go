package config

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/anyguard/anyguard/internal/keys"
)

// Configuration from the environment.
//
// Every field of the file that holds a value or a list of values has one
// variable: ANYGUARD_ and its dotted path in upper case, dots and all
// becoming underscores (clients.listen_port is ANYGUARD_CLIENTS_LISTEN_PORT).
// A key field also has a _FILE variable naming a key file, as containers
// pass secrets (ANYGUARD_CLIENTS_PRIVATE_KEY_FILE=/run/secrets/clients.key).
// A list is written with commas (ANYGUARD_EGRESS_PREFIXES=10.1.0.0/16,10.2.0.0/16);
// an empty value makes the list empty. clients.peers, a list of mappings,
// has no variable: clients come from clients.peers_file (or `anyguard
// client add`).
//
// Variables are applied over the file, field by field: a variable wins
// over the file's value of the same field, and over its _file or inline
// twin. Values are decoded and checked exactly as the file's are, and every
// error names the variable. A variable under a section's prefix
// (ANYGUARD_CLIENTS_ and so on) that names no field is an error, as an
// unknown key in the file is; other ANYGUARD_ variables are left to the
// command (ANYGUARD_STATE_DIR, ANYGUARD_CONFIG).

// EnvPrefix starts every variable of the configuration.
const EnvPrefix = "ANYGUARD_"

// EnvVar is one variable of the configuration.
type EnvVar struct {
	Name string // ANYGUARD_CLIENTS_PRIVATE_KEY_FILE
	Path string // the field it sets: clients.private_key
	// Kind describes the value: "key", "key file", "string", "integer",
	// "boolean", "duration", "prefix", and lists of them.
	Kind string
	// File is set for the _FILE form of a key field.
	File bool
	// Secret marks a variable holding a private or preshared key.
	Secret bool
	// List marks a comma-separated list.
	List bool

	index []int // field indices from Config down
	typ   reflect.Type
}

var envVars = buildEnvVars()

// EnvVars returns every variable of the configuration, in the file's field
// order.
func EnvVars() []EnvVar { return slices.Clone(envVars) }

// EnvName returns the variable that sets the field at path
// ("clients.listen_port"), or "" if there is none.
func EnvName(path string) string {
	for _, e := range envVars {
		if e.Path == path && !e.File {
			return e.Name
		}
	}
	return ""
}

func buildEnvVars() []EnvVar {
	var out []EnvVar
	var walk func(t reflect.Type, path string, index []int)
	walk = func(t reflect.Type, path string, index []int) {
		for _, f := range fieldsOf(t) {
			sf := t.Field(f.index)
			p := join(path, f.name)
			idx := append(slices.Clone(index), f.index)
			ft := sf.Type
			if ft.Kind() == reflect.Struct && ft != keyType && ft != prefixType {
				walk(ft, p, idx)
				continue
			}
			if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && ft.Elem() != prefixType {
				continue // clients.peers: mappings have no variable
			}
			name := EnvPrefix + strings.ToUpper(strings.NewReplacer(".", "_", "-", "_").Replace(p))
			kind, list := kindOf(ft)
			e := EnvVar{Name: name, Path: p, Kind: kind, List: list, Secret: f.file, index: idx, typ: ft}
			out = append(out, e)
			if f.file {
				e.Name, e.Kind, e.File = name+"_FILE", "key file", true
				out = append(out, e)
			}
		}
	}
	walk(reflect.TypeFor[Config](), "", nil)
	return out
}

// kindOf describes the values of type t for the table.
func kindOf(t reflect.Type) (string, bool) {
	if t.Kind() == reflect.Slice {
		k, _ := kindOf(t.Elem())
		return "list of " + strings.ReplaceAll(k+"s", "xs", "xes"), true
	}
	switch t {
	case keyType:
		return "key", false
	case prefixType:
		return "IP prefix", false
	case durType:
		return "duration", false
	}
	switch t.Kind() {
	case reflect.String:
		return "string", false
	case reflect.Bool:
		return "boolean", false
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "integer", false
	}
	panic("config: no variable kind for " + t.String())
}

// envSections are the prefixes of the variables the configuration owns.
var envSections = func() []string {
	var s []string
	for _, f := range fieldsOf(reflect.TypeFor[Config]()) {
		s = append(s, EnvPrefix+strings.ToUpper(f.name)+"_")
	}
	return s
}()

// ownsEnv reports whether name is in the configuration's part of the
// environment.
func ownsEnv(name string) bool {
	for _, s := range envSections {
		if strings.HasPrefix(name, s) {
			return true
		}
	}
	return false
}

// applyEnv sets the fields that env (as os.Environ returns it) names, over
// what c holds. It returns the fields it set, by path, with the variable
// that set each. Relative key file paths resolve against the working
// directory, as a shell would.
func applyEnv(c *Config, env []string) (map[string]string, error) {
	set := make(map[string]string)
	seen := make(map[string]bool)
	byName := make(map[string]*EnvVar, len(envVars))
	for i := range envVars {
		byName[envVars[i].Name] = &envVars[i]
	}
	d := &decoder{}
	root := reflect.ValueOf(c).Elem()
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if !ok || !ownsEnv(name) {
			continue
		}
		e := byName[name]
		if e == nil {
			return nil, &FieldError{Env: name, Err: ErrUnknownField, Hint: suggestEnv(name)}
		}
		if seen[name] {
			return nil, &FieldError{Env: name, Path: e.Path, Err: errorf(ErrDuplicate, "set twice in the environment")}
		}
		seen[name] = true
		if other, ok := set[e.Path]; ok {
			return nil, &FieldError{Env: name, Path: e.Path, Err: errorf(ErrConflict, "conflicts with %s", other), Hint: "set only one of them"}
		}
		set[e.Path] = name
		v := root.FieldByIndex(e.index)
		if strings.TrimSpace(value) == "" && !e.List && (e.File || e.typ.Kind() != reflect.String) {
			return nil, &FieldError{Env: name, Path: e.Path, Err: errorf(ErrMissing, "no value given"), Hint: "unset the variable to keep the default"}
		}
		var err error
		if e.File {
			err = d.keyFile(e.Path, envNode(value, e.typ), v)
		} else {
			err = d.value(e.Path, envNode(value, e.typ), v, true)
		}
		if err != nil {
			if fe, ok := err.(*FieldError); ok {
				fe.Env, fe.Line = name, 0
				return nil, fe
			}
			return nil, &FieldError{Env: name, Path: e.Path, Err: err}
		}
	}
	// A path in the environment is relative to the working directory, not
	// to the configuration file's.
	if _, ok := set["clients.peers_file"]; ok && c.Clients.PeersFile != "" && !filepath.IsAbs(c.Clients.PeersFile) {
		abs, err := filepath.Abs(c.Clients.PeersFile)
		if err != nil {
			return nil, &FieldError{Env: set["clients.peers_file"], Path: "clients.peers_file", Err: err}
		}
		c.Clients.PeersFile = abs
	}
	return set, nil
}

// envNode is the YAML node a variable's value stands for: a list for a
// list field (split at commas), a scalar otherwise. Text fields are tagged
// as strings, so that a name such as "true" or "null" stays a name; other
// scalars resolve as YAML would (true, 51820), so that the file's checks
// and messages apply.
func envNode(value string, t reflect.Type) *yaml.Node {
	if t.Kind() == reflect.Slice {
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		if strings.TrimSpace(value) == "" {
			return n
		}
		for item := range strings.SplitSeq(value, ",") {
			n.Content = append(n.Content, envNode(strings.TrimSpace(item), t.Elem()))
		}
		return n
	}
	n := &yaml.Node{Kind: yaml.ScalarNode, Value: value}
	switch {
	case t == keyType, t == prefixType, t == durType, t.Kind() == reflect.String:
		n.Tag = "!!str"
		if strings.TrimSpace(value) == "" && t != reflect.TypeFor[string]() {
			n.Tag = "!!null" // "no value given", not a parse error of ""
		}
	}
	return n
}

// suggestEnv suggests the nearest variable for an unknown one.
func suggestEnv(name string) string {
	best, bestDist := "", 4
	for _, e := range envVars {
		if d := levenshtein(name, e.Name); d < bestDist {
			best, bestDist = e.Name, d
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	section := name
	for _, s := range envSections {
		if strings.HasPrefix(name, s) {
			section = s
		}
	}
	var names []string
	for _, e := range envVars {
		if strings.HasPrefix(e.Name, section) {
			names = append(names, e.Name)
		}
	}
	return "known variables: " + strings.Join(names, ", ")
}

// envDefault is the default of a variable's field, as the table shows it.
func envDefault(e EnvVar) string {
	if e.File || e.Secret {
		return ""
	}
	if e.Path == "node.name" {
		return "the host name"
	}
	v := reflect.ValueOf(Default()).Elem().FieldByIndex(e.index)
	switch x := v.Interface().(type) {
	case time.Duration:
		return x.String()
	case []netip.Prefix, []string:
		if v.Len() == 0 {
			return ""
		}
	case string:
		return x
	case keys.Key:
		return ""
	}
	if v.Kind() == reflect.Slice {
		var parts []string
		for i := range v.Len() {
			parts = append(parts, fmt.Sprint(v.Index(i).Interface()))
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v.Interface())
}

// EnvTable returns the Markdown table of every variable, as
// docs/configuration.md holds it (a test keeps the two identical).
func EnvTable() string {
	var b strings.Builder
	b.WriteString("| Variable | Field | Value | Default |\n|---|---|---|---|\n")
	for _, e := range envVars {
		kind := e.Kind
		if e.List {
			kind += ", comma-separated"
		}
		if e.Secret && !e.File {
			kind += " (secret: prefer the _FILE form)"
		}
		if e.File {
			kind = "path of a key file (mode 0600)"
		}
		def := envDefault(e)
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `%s` | `%s` | %s | %s |\n", e.Name, e.Path, kind, def)
	}
	return b.String()
}

// isSecretPath reports whether the field at path holds a secret key.
func isSecretPath(path string) bool {
	for _, e := range envVars {
		if e.Path == path {
			return e.Secret
		}
	}
	return false
}
