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
			var fe *FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("error %q is not a *FieldError", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Fatalf("error %q spans lines", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Parse accepted what Validate refuses: %v", err)
		}
		c.ClientSetDigest()
	})
}
