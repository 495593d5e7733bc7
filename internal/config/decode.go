package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/anyguard/anyguard/internal/keys"
)

var (
	keyType    = reflect.TypeFor[keys.Key]()
	prefixType = reflect.TypeFor[netip.Prefix]()
	durType    = reflect.TypeFor[time.Duration]()
)

// decode reads the single YAML document in data into c, over the defaults
// already in c, and returns the document's root node, where validation
// finds the line of each field.
func decode(data []byte, baseDir string, c *Config) (*yaml.Node, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &FieldError{Err: errorf(ErrMissing, "file is empty")}
		}
		return nil, syntaxError(err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case errors.Is(err, io.EOF):
	case err != nil:
		return nil, syntaxError(err)
	default:
		return nil, &FieldError{Line: next.Line, Err: errorf(ErrInvalidValue, "a second YAML document starts here; the file must hold only one")}
	}
	return decodeRoot(&doc, baseDir, c)
}

// decodeRoot decodes the parsed document doc into c.
func decodeRoot(doc *yaml.Node, baseDir string, c *Config) (*yaml.Node, error) {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil, &FieldError{Err: errorf(ErrSyntax, "not a YAML document")}
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" && root.Anchor == "" {
		return nil, &FieldError{Err: errorf(ErrMissing, "file is empty")}
	}
	d := &decoder{baseDir: baseDir}
	if err := d.value("", root, reflect.ValueOf(c).Elem(), false); err != nil {
		return nil, err
	}
	return root, nil
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parserProblems are the errors of the YAML parser (as opposed to its
// scanner), whose line the yaml package reports counting from 0.
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// syntaxError turns a YAML parser error into a FieldError with its line.
func syntaxError(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if m := syntaxLine.FindStringSubmatch(err.Error()); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
		if parserProblems[msg] {
			line++
		}
	} else if parserProblems[msg] {
		line = 1 // both of the parser's marks were on the first line
	}
	return &FieldError{Line: line, Err: errorf(ErrSyntax, "invalid YAML: %s", msg)}
}

type decoder struct {
	baseDir string
}

// fieldInfo describes one struct field as seen in YAML.
type fieldInfo struct {
	name  string // yaml key
	index int
	file  bool // a keys.Key that may also be given as name+"_file"
	one   bool // a slice that may also be given as a single scalar
}

// fieldCache holds fieldsOf's answers by type: a mapping is decoded once
// per client, and reflecting over its struct each time cost more than the
// rest of the mapping's decoding.
var fieldCache sync.Map // reflect.Type -> []fieldInfo

func fieldsOf(t reflect.Type) []fieldInfo {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]fieldInfo)
	}
	var fs []fieldInfo
	for i := range t.NumField() {
		sf := t.Field(i)
		name, _, _ := strings.Cut(sf.Tag.Get("yaml"), ",")
		if !sf.IsExported() || name == "" || name == "-" {
			continue
		}
		opt := sf.Tag.Get("config")
		fs = append(fs, fieldInfo{name: name, index: i, file: opt == "file", one: opt == "one"})
	}
	fieldCache.Store(t, fs)
	return fs
}

// lookup finds the field for a YAML key, and whether the key is the
// "_file" form of a key field.
func lookup(fs []fieldInfo, key string) (fieldInfo, bool, bool) {
	for _, f := range fs {
		if key == f.name {
			return f, false, true
		}
		if f.file && key == f.name+"_file" {
			return f, true, true
		}
	}
	return fieldInfo{}, false, false
}

func (d *decoder) fail(path string, n *yaml.Node, err error) error {
	return &FieldError{Path: path, Line: n.Line, Err: err}
}

// check refuses YAML features the configuration does not use.
func (d *decoder) check(path string, n *yaml.Node) error {
	switch {
	case n.Kind == yaml.AliasNode:
		return d.fail(path, n, errorf(ErrInvalidValue, "aliases (*%s) are not supported", n.Value))
	case n.Anchor != "":
		return d.fail(path, n, errorf(ErrInvalidValue, "anchors (&%s) are not supported", n.Anchor))
	}
	return nil
}

// kindError reports a node of the wrong kind.
func (d *decoder) kindError(path string, n *yaml.Node, want string) error {
	return d.fail(path, n, errorf(ErrInvalidValue, "expected %s, got %s", want, describe(n)))
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		switch tag := n.ShortTag(); tag {
		case "!!null":
			return "no value"
		case "!!bool":
			return "a boolean"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!str":
			return "a string"
		default:
			return "a value tagged " + strconv.Quote(tag)
		}
	}
	return "something else"
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// value decodes n into v, whose type is one the configuration uses.
func (d *decoder) value(path string, n *yaml.Node, v reflect.Value, one bool) error {
	if err := d.check(path, n); err != nil {
		return err
	}
	switch v.Type() {
	case keyType:
		s, err := d.str(path, n)
		if err != nil {
			return err
		}
		k, err := keys.Parse(s) // never echo the text: it may be a private key
		if err != nil {
			return d.fail(path, n, err)
		}
		return d.setKey(path, n, v, k)
	case prefixType:
		s, err := d.str(path, n)
		if err != nil {
			return err
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			fe := &FieldError{Path: path, Line: n.Line, Err: errorf(ErrInvalidValue, "%q is not a valid IP prefix", s)}
			if a, err := netip.ParseAddr(s); err == nil {
				fe.Hint = fmt.Sprintf("write %s/%d for a single address", s, a.BitLen())
			}
			return fe
		}
		v.Set(reflect.ValueOf(p))
		return nil
	case durType:
		return d.duration(path, n, v)
	}
	switch v.Kind() {
	case reflect.String:
		s, err := d.str(path, n)
		if err != nil {
			return err
		}
		v.SetString(s)
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			return d.kindError(path, n, "true or false")
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			return d.kindError(path, n, "true or false")
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		i, err := d.integer(path, n)
		if err != nil {
			return err
		}
		if v.OverflowInt(i) {
			return d.fail(path, n, errorf(ErrInvalidValue, "%s is out of range", n.Value))
		}
		v.SetInt(i)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		i, err := d.integer(path, n)
		if err != nil {
			return err
		}
		if i < 0 || v.OverflowUint(uint64(i)) {
			max := uint64(1)<<v.Type().Bits() - 1
			return d.fail(path, n, errorf(ErrInvalidValue, "%s is out of range 0..%d", n.Value, max))
		}
		v.SetUint(uint64(i))
	case reflect.Slice:
		return d.slice(path, n, v, one)
	case reflect.Struct:
		return d.mapping(path, n, v)
	default:
		panic("config: unsupported field type " + v.Type().String())
	}
	return nil
}

// str returns the text of a scalar. Numbers and dates are taken as written
// (a node may well be named 2024 or 1e3); booleans and null are refused.
func (d *decoder) str(path string, n *yaml.Node) (string, error) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!str", "!!int", "!!float", "!!timestamp":
			return n.Value, nil
		case "!!null":
			return "", d.fail(path, n, errorf(ErrMissing, "no value given"))
		}
	}
	return "", d.kindError(path, n, "a string")
}

// duration decodes a Go duration such as "30s" or "1m30s". A bare number
// is refused: its unit would be a guess.
func (d *decoder) duration(path string, n *yaml.Node, v reflect.Value) error {
	s, err := d.str(path, n)
	if err != nil {
		return err
	}
	dur, err := time.ParseDuration(s)
	if err != nil {
		fe := &FieldError{Path: path, Line: n.Line, Err: errorf(ErrInvalidValue, "%q is not a duration such as 30s or 1m30s", s)}
		if digitsOnly.MatchString(s) {
			fe.Hint = "write " + s + "s for seconds"
		}
		return fe
	}
	v.SetInt(int64(dur))
	return nil
}

var digitsOnly = regexp.MustCompile(`^[-+]?[0-9_]+$`)

func (d *decoder) integer(path string, n *yaml.Node) (int64, error) {
	if n.Kind == yaml.ScalarNode {
		switch n.ShortTag() {
		case "!!int":
			var i int64
			if err := n.Decode(&i); err != nil {
				return 0, d.fail(path, n, errorf(ErrInvalidValue, "%s is out of range", n.Value))
			}
			return i, nil
		case "!!float":
			if digitsOnly.MatchString(n.Value) {
				return 0, d.fail(path, n, errorf(ErrInvalidValue, "%s is out of range", n.Value))
			}
		case "!!null":
			return 0, d.fail(path, n, errorf(ErrMissing, "no value given"))
		}
	}
	return 0, d.kindError(path, n, "an integer")
}

func (d *decoder) slice(path string, n *yaml.Node, v reflect.Value, one bool) error {
	switch {
	case isNull(n):
		v.Set(reflect.Zero(v.Type()))
		return nil
	case one && n.Kind == yaml.ScalarNode:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		if err := d.value(path, n, s.Index(0), false); err != nil {
			return err
		}
		v.Set(s)
		return nil
	case n.Kind != yaml.SequenceNode || n.ShortTag() != "!!seq":
		if one {
			return d.kindError(path, n, "a string or a list")
		}
		return d.kindError(path, n, "a list")
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		ipath := path + "[" + strconv.Itoa(i) + "]"
		if err := d.value(ipath, item, s.Index(i), false); err != nil {
			return err
		}
	}
	v.Set(s)
	return nil
}

// mapping decodes a YAML mapping into struct v, refusing unknown and
// repeated keys. A null value leaves v as it is (its defaults).
func (d *decoder) mapping(path string, n *yaml.Node, v reflect.Value) error {
	if isNull(n) {
		return nil
	}
	if n.Kind != yaml.MappingNode || n.ShortTag() != "!!map" {
		return d.kindError(path, n, "a mapping")
	}
	fields := fieldsOf(v.Type())
	// Keys so far, in order; a struct has few fields and a mapping stops
	// at the first unknown or repeated key, so a scan beats a map.
	type keyAt struct {
		name  string
		line  int
		field int
	}
	var seenBuf [16]keyAt
	seen := seenBuf[:0]
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if err := d.check(path, k); err != nil {
			return err
		}
		if k.Kind != yaml.ScalarNode {
			return d.kindError(path, k, "a field name")
		}
		name := k.Value
		fpath := join(path, name)
		for _, s := range seen {
			if s.name == name {
				return &FieldError{Path: fpath, Line: k.Line, Err: errorf(ErrDuplicate, "set twice (first on line %d)", s.line)}
			}
		}
		f, isFile, ok := lookup(fields, name)
		if !ok {
			return &FieldError{Path: fpath, Line: k.Line, Err: ErrUnknownField, Hint: suggest(name, fields)}
		}
		for _, s := range seen {
			if s.field == f.index {
				return &FieldError{Path: fpath, Line: k.Line, Err: errorf(ErrConflict, "conflicts with %s on line %d", s.name, s.line), Hint: "set only one of them"}
			}
		}
		seen = append(seen, keyAt{name: name, line: k.Line, field: f.index})
		var err error
		if isFile {
			err = d.keyFile(fpath, val, v.Field(f.index))
		} else {
			err = d.value(fpath, val, v.Field(f.index), f.one)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// keyFile reads the key file named by n, relative to the base directory.
func (d *decoder) keyFile(path string, n *yaml.Node, v reflect.Value) error {
	if err := d.check(path, n); err != nil {
		return err
	}
	name, err := d.str(path, n)
	if err != nil {
		return err
	}
	if name == "" {
		return d.fail(path, n, errorf(ErrMissing, "empty file name"))
	}
	if !filepath.IsAbs(name) && d.baseDir != "" {
		name = filepath.Join(d.baseDir, name)
	}
	k, err := keys.ReadFile(name)
	if err != nil {
		return d.fail(path, n, err)
	}
	return d.setKey(path, n, v, k)
}

func (d *decoder) setKey(path string, n *yaml.Node, v reflect.Value, k keys.Key) error {
	if k.IsZero() {
		return d.fail(path, n, errorf(ErrInvalidValue, "an all-zero key is not a key"))
	}
	v.Set(reflect.ValueOf(k))
	return nil
}

// plainName reports whether name needs no quotes in a path: [A-Za-z0-9_-]+.
func plainName(name string) bool {
	if name == "" {
		return false
	}
	for i := range len(name) {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

func join(path, name string) string {
	if !plainName(name) {
		name = strconv.Quote(name)
	}
	if path == "" {
		return name
	}
	return path + "." + name
}

// suggest returns a hint for an unknown key: the nearest known key, or the
// list of known keys.
func suggest(key string, fields []fieldInfo) string {
	var names []string
	for _, f := range fields {
		names = append(names, f.name)
		if f.file {
			names = append(names, f.name+"_file")
		}
	}
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "", " ", "").Replace(strings.ToLower(s))
	}
	best, bestDist := "", 3
	for _, name := range names {
		if norm(name) == norm(key) {
			return "did you mean " + name + "?"
		}
		if dist := levenshtein(key, name); dist < bestDist && dist < len(name)/2 {
			best, bestDist = name, dist
		}
	}
	if best != "" {
		return "did you mean " + best + "?"
	}
	return "known fields: " + strings.Join(names, ", ")
}

func levenshtein(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return max(len(a), len(b))
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
