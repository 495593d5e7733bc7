// Package e2etest decides whether tests that need root, network namespaces
// or Debian tools run, skip, or fail: they skip with a reason for a user
// without privileges, and fail instead when ANYGUARD_E2E=require (as CI sets
// it), so that CI can never pass by skipping them.
package e2etest

import (
	"os"
	"os/exec"
	"testing"
)

// Required reports whether ANYGUARD_E2E=require is set.
func Required() bool { return os.Getenv("ANYGUARD_E2E") == "require" }

// Skip skips the test with why, or fails it when end-to-end tests are required.
func Skip(t testing.TB, why string) {
	t.Helper()
	if Required() {
		t.Fatalf("ANYGUARD_E2E=require but this test cannot run: %s", why)
	}
	t.Skip(why)
}

// RequireRoot skips (or fails, see Skip) unless running as root.
func RequireRoot(t testing.TB, what string) {
	t.Helper()
	if os.Geteuid() != 0 {
		Skip(t, "needs root for "+what+"; run as root or with ANYGUARD_E2E=require in CI")
	}
}

// RequireTools skips (or fails) unless every named program is on PATH.
func RequireTools(t testing.TB, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			Skip(t, tool+" is not installed (make deps installs it as root)")
		}
	}
}
