// Package keys reads WireGuard key files with a permission check. The key
// type itself, its parsing and derivation, are in the public package wgkey;
// Key, Len, ErrBadKey, Parse and Generate here are aliases of it, so that
// code inside the module may keep naming keys.Key.
package keys

import (
	"errors"
	"io/fs"
	"os"

	"github.com/anyguard/anyguard/wgkey"
)

// Len is the length in bytes of every WireGuard key.
const Len = wgkey.Len

// Key is a Curve25519 private, public or preshared key (wgkey.Key).
type Key = wgkey.Key

// ErrBadKey is returned (wrapped) for text that is not a base64 WireGuard key.
var ErrBadKey = wgkey.ErrBadKey

// ErrWorldReadable is returned (wrapped in an *AccessError) for a key file
// whose mode lets group or others read or write it.
var ErrWorldReadable = errors.New("key file is open to group or others")

// ErrKeyFileOwner is returned (wrapped in an *AccessError) for a key file
// owned by a user other than the one this process runs as, or root.
var ErrKeyFileOwner = errors.New("key file is owned by another user")

// Parse decodes a base64 key (wgkey.Parse).
func Parse(s string) (Key, error) { return wgkey.Parse(s) }

// Generate returns a new random private key (wgkey.Generate).
func Generate() (Key, error) { return wgkey.Generate() }

// ReadFile reads a key file. It refuses, before reading a byte, a file
// that someone other than this process's user (or root) could read or
// replace: see checkAccess for the rule, which follows ssh's for private
// keys and PostgreSQL's for root-owned key files. Symbolic links are
// followed and the file they lead to is judged (Kubernetes mounts secrets
// as links into a hidden directory).
func ReadFile(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, err
	}
	defer f.Close()
	st, err := f.Stat() // of the file opened, not of a path that may change
	if err != nil {
		return Key{}, err
	}
	if !st.Mode().IsRegular() {
		return Key{}, &fs.PathError{Op: "read key", Path: path, Err: errors.New("not a regular file")}
	}
	owner, known := fileOwner(st)
	if !known {
		owner = -1
	}
	if err := checkAccess(path, st.Mode().Perm(), owner, os.Geteuid()); err != nil {
		return Key{}, err
	}
	buf := make([]byte, 256)
	n, err := f.Read(buf)
	if err != nil {
		return Key{}, &fs.PathError{Op: "read key", Path: path, Err: err}
	}
	k, err := Parse(string(buf[:n]))
	if err != nil {
		return Key{}, &fs.PathError{Op: "read key", Path: path, Err: err}
	}
	return k, nil
}
