package handshake

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportRules: the reader works on message bytes alone, so it imports
// no wireguard-go package and, of anyguard, only the key type.
func TestImportRules(t *testing.T) {
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		switch {
		case imp == "github.com/anyguard/anyguard/internal/keys":
		case strings.HasPrefix(imp, "github.com/anyguard/"), strings.HasPrefix(imp, "golang.zx2c4.com/"):
			t.Errorf("handshake imports %s", imp)
		case imp == "testing" || strings.HasSuffix(imp, "test"):
			t.Errorf("production code imports %s", imp)
		}
	}
}
