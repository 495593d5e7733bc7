package config

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Sentinel errors wrapped by every [*FieldError], for callers and tests to
// branch on with errors.Is.
var (
	ErrSyntax       = errors.New("not valid YAML")
	ErrUnknownField = errors.New("unknown field")
	ErrInvalidValue = errors.New("invalid value")
	ErrMissing      = errors.New("missing value")
	ErrDuplicate    = errors.New("duplicate")
	ErrOverlap      = errors.New("overlapping prefixes")
	ErrConflict     = errors.New("conflicting fields")
)

// FieldError is a problem with one field of the configuration.
type FieldError struct {
	// Env, if set, is the environment variable the value came from
	// (ANYGUARD_CLIENTS_MTU); the message then starts with it, and Line is 0.
	Env string
	// File, if set, is the peers file (clients.peers_file) the problem is
	// in; then Line is a line of that file, Path a field of that line
	// (e.g. "public_key"), and the message reads "FILE:LINE: PATH: ...".
	File string
	// Path is the dotted path of the field, e.g. "clients.peers[1].name",
	// or "" for a problem with the file as a whole.
	Path string
	// Line is the 1-based line of the field in the file, or 0 if unknown
	// (a Config built in Go).
	Line int
	// Err says what is wrong; it wraps one of the sentinel errors or a key
	// file error.
	Err error
	// Hint, if set, suggests a fix, e.g. "did you mean public_key?".
	Hint string
}

// Error returns the problem on a single line: path, problem, line, hint;
// or, in a peers file, file and line, path, problem, hint.
func (e *FieldError) Error() string {
	var b strings.Builder
	if e.Env != "" {
		b.WriteString(e.Env)
		if e.Path != "" {
			b.WriteString(" (")
			b.WriteString(e.Path)
			b.WriteString(")")
		}
		b.WriteString(": ")
	} else if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":")
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Path != "" && e.Env == "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	if e.Line > 0 && e.File == "" && e.Env == "" {
		b.WriteString(" (line ")
		b.WriteString(strconv.Itoa(e.Line))
		b.WriteString(")")
	}
	if e.Hint != "" {
		b.WriteString("; ")
		b.WriteString(e.Hint)
	}
	return oneLine(b.String())
}

func (e *FieldError) Unwrap() error { return e.Err }

// oneLine escapes line breaks, which can come from file system errors
// quoting a path taken from the file.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

// kindError is a message that wraps a sentinel without repeating its text.
type kindError struct {
	msg  string
	kind error
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

func errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kind: kind}
}
