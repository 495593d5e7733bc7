package gateway_test

import (
	"go/build"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestPartImports: each part of the gateway imports only the anyguard
// packages it needs and never the gateway itself (which would also be an
// import cycle: no part can hold a *Gateway). A part that wants more of
// the gateway declares a narrow interface for it instead.
func TestPartImports(t *testing.T) {
	const module = "github.com/anyguard/anyguard/"
	allowed := map[string][]string{
		"admission": {"device", "internal/config", "internal/keys"},
		"recovery":  {"cluster", "internal/config", "internal/gateway/probe", "internal/keys"},
		"membership": {"cluster", "device", "health", "internal/config", "internal/gateway/admission",
			"internal/gateway/probe", "internal/keys", "router"},
		"probe": {"device", "internal/config", "internal/keys"},
	}
	for part, ok := range allowed {
		pkg, err := build.ImportDir(filepath.Join(".", part), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			rel, own := strings.CutPrefix(imp, module)
			if own && !slices.Contains(ok, rel) {
				t.Errorf("%s imports %s", part, imp)
			}
			if imp == "testing" || strings.HasSuffix(imp, "test") {
				t.Errorf("%s (production code) imports %s", part, imp)
			}
		}
	}
}
