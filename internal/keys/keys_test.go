package keys

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestReadFilePermissions(t *testing.T) {
	dir := t.TempDir()
	k, _ := Generate()
	p := filepath.Join(dir, "k")
	if err := os.WriteFile(p, []byte(k.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(p)
	if err != nil || got != k {
		t.Fatalf("ReadFile = %v, %v", got, err)
	}
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(p); !errors.Is(err, ErrWorldReadable) {
		t.Fatalf("world-readable file: err = %v, want ErrWorldReadable", err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
	if err := os.Chmod(p, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadFile(p); !errors.Is(err, ErrBadKey) {
		t.Fatalf("garbage file: err = %v", err)
	}
}
