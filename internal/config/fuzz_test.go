package config

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are single-line
// FieldErrors, and that whatever it accepts also passes Validate. Seeds in
// testdata/fuzz/FuzzParse name key files k.key and psk.key, created here.
func FuzzParse(f *testing.F) {
	dir := f.TempDir()
	writeKey(f, filepath.Join(dir, "k.key"), testKeys["PRIV"].String()+"\n", 0o600)
	writeKey(f, filepath.Join(dir, "psk.key"), testKeys["PSK"].String()+"\n", 0o600)
	f.Add([]byte(Example))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data, dir)
		if err != nil {
			checkFieldError(t, err)
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		c.ClientSetDigest()
	})
}

// FuzzEnv checks that any environment (entries separated by newlines)
// never panics LoadWith, that its errors are single-line FieldErrors, and
// that what it accepts passes Validate. Variables naming files are kept to
// files of a temporary directory (named k.key and peers.txt there): the
// fuzzer would otherwise find /dev/zero and /dev/stdin, which block or
// never end for any reader.
func FuzzEnv(f *testing.F) {
	dir := f.TempDir()
	writeKey(f, filepath.Join(dir, "k.key"), testKeys["PRIV"].String()+"\n", 0o600)
	writeKey(f, filepath.Join(dir, "peers.txt"), fill("alice PUB1 10.99.0.2/32\n"), 0o644)
	f.Add("ANYGUARD_CLIENTS_PRIVATE_KEY=" + testKeys["PRIV"].String() + "\nANYGUARD_CLIENTS_ADDRESS=10.99.0.1/24\nANYGUARD_EGRESS_PREFIXES=10.1.0.0/16,10.2.0.0/16")
	f.Fuzz(func(t *testing.T, text string) {
		env := strings.Split(text, "\n")
		for i, kv := range env {
			if name, value, ok := strings.Cut(kv, "="); ok && strings.HasSuffix(name, "_FILE") && value != "" {
				env[i] = name + "=" + filepath.Join(dir, filepath.Base(value))
			}
		}
		c, err := LoadWith("", Options{Env: env})
		if err != nil {
			checkFieldError(t, err)
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("LoadWith accepted what Validate refuses: %v", err)
		}
	})
}

// checkFieldError fails t unless err is a *FieldError on one line, as every
// configuration error must be.
func checkFieldError(t *testing.T, err error) {
	t.Helper()
	var fe *FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("error %q is not a *FieldError", err)
	}
	if strings.ContainsAny(err.Error(), "\r\n") {
		t.Fatalf("error %q spans lines", err)
	}
}
