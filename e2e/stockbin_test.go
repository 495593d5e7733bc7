//go:build linux

package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

// wireguardModule is the module whose own main package is stock
// wireguard-go: the baseline a drop-in is held to is this, at the version
// go.mod embeds, never a distribution's older build.
const wireguardModule = "golang.zx2c4.com/wireguard"

var (
	stockOnce sync.Once
	stockPath string
	stockErr  error
)

// stockWireguardGo returns stock wireguard-go built from the module proxy at
// the version go.mod embeds (as `make bench` builds it). The build is kept
// outside the repository, in the user cache directory under the version
// ($XDG_CACHE_HOME or ~/.cache, else the temporary directory, then
// anyguard/wireguard-go@VERSION), so a machine builds each version once. ANYGUARD_STOCK_WIREGUARD_GO names a
// prebuilt binary instead.
func stockWireguardGo(t testing.TB) string {
	t.Helper()
	stockOnce.Do(func() { stockPath, stockErr = buildStockWireguardGo(t) })
	if stockErr != nil {
		t.Fatalf("stock wireguard-go: %v", stockErr)
	}
	return stockPath
}

func buildStockWireguardGo(t testing.TB) (string, error) {
	if p := os.Getenv("ANYGUARD_STOCK_WIREGUARD_GO"); p != "" {
		return p, nil
	}
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	out, err := bnetns.RunIn(root, cmdTimeout, "go", "list", "-m", "-f", "{{.Version}}", wireguardModule)
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w: %s", wireguardModule, err, out)
	}
	version := strings.TrimSpace(out)
	if version == "" || strings.ContainsAny(version, "/ \n") {
		return "", fmt.Errorf("go list -m %s: odd version %q", wireguardModule, version)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir() // no $HOME: still outside the repository
	}
	dir := filepath.Join(cache, "anyguard", "wireguard-go@"+version)
	bin := filepath.Join(dir, "wireguard-go")
	if fi, err := os.Stat(bin); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o100 != 0 {
		t.Logf("stock wireguard-go %s from the cache: %s", version, bin)
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	// Build into a fresh directory and rename into place, so that a run
	// interrupted mid-build, or two runs at once, never leave a partial
	// binary under the cached name.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "install", wireguardModule+"@"+version)
	cmd.Dir = tmp // outside our module: go install PKG@VERSION ignores go.mod anyway
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install %s@%s: %w\n%s", wireguardModule, version, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "wireguard"), bin); err != nil {
		return "", err
	}
	t.Logf("built stock wireguard-go %s into %s", version, bin)
	return bin, nil
}
