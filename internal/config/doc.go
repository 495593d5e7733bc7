// Package config loads and validates the YAML configuration of anyguard.
//
// The file is parsed strictly: every key must be known, appear once and
// hold a value of the right kind, so that a typo is an error rather than a
// silently ignored setting. Problems are reported as one [*FieldError]
// naming the dotted path of the field and its line, for example
//
//	config /etc/anyguard/anyguard.yaml: clients.peers[1].allowed_ips[0]: "10.99.0.2/33" is not a valid IP prefix (line 14)
//
// and can be matched with errors.Is against ErrUnknownField,
// ErrInvalidValue, ErrMissing, ErrDuplicate, ErrOverlap, ErrConflict and
// ErrSyntax, or against keys.ErrBadKey, keys.ErrWorldReadable and fs errors
// for key files.
//
// The file holds a single YAML document. Anchors, aliases and merge keys
// are refused: an error inside an aliased value could only name the anchor,
// not the place that used it, and the configuration is small enough not to
// need them. Custom tags are refused too.
//
// The decoder walks the YAML node tree against the struct definitions
// (their yaml tags), so adding a section is one struct with yaml tags, its
// defaults in [Default] and a validate method called from
// [Config.Validate]. A keys.Key field tagged `config:"file"` also accepts
// "<name>_file", a key file path, with exactly one of the two allowed; a
// slice field tagged `config:"one"` also accepts a single scalar.
//
// Clients may also come from clients.peers_file, a plain text file with
// one client per line (see peersfile.go), which parses some twenty times
// faster than YAML; its errors name the file and line ("peers.txt:12:
// public_key: ...", [FieldError.File]).
//
// See [Example] (examples/anyguard.yaml) for every field and its default.
package config
