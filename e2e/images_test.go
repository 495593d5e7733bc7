//go:build linux

package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyguard/anyguard/internal/e2etest"
)

// The image files that are not Go: each checked by the tool that knows
// them, as `make test` runs. They need no root, only the tools (`make
// deps`); TestAMIBoot checks what they do.

// imagesFile returns the path of images/name in the repository.
func imagesFile(t *testing.T, name string) string {
	t.Helper()
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, "images", name)
}

func runTool(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	e2etest.RequireTools(t, name)
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func TestImagesShellcheck(t *testing.T) {
	runTool(t, nil, "shellcheck", "--shell=sh", "--severity=style",
		imagesFile(t, "provision.sh"), imagesFile(t, "anyguard-bootstrap"))
}

func TestImagesCloudInitSchema(t *testing.T) {
	out := runTool(t, nil, "cloud-init", "schema", "--config-file", imagesFile(t, "cloud-init/user-data.yaml"))
	if !strings.Contains(out, "Valid cloud-config") {
		t.Fatalf("cloud-init schema: %s", out)
	}
	// The check can fail: a user-data file with a misspelt module key
	// is refused.
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("#cloud-config\nruncmd: {not: a list}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("cloud-init", "schema", "--config-file", bad).CombinedOutput(); err == nil {
		t.Fatalf("cloud-init schema accepted a broken file: %s", out)
	}
}

// TestImagesPackerValidate runs a full `packer validate` (not
// -syntax-only) of the amazon-ebs template: it needs no AWS credentials,
// only the files the template uploads, so the anyguard binary is built.
func TestImagesPackerValidate(t *testing.T) {
	e2etest.RequireTools(t, "packer")
	bin := anyguardBinary(t)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("packer", "validate", "-var", "binary="+bin, "images/packer/anyguard.pkr.hcl")
	cmd.Dir = root
	// No update check against checkpoint.hashicorp.com.
	cmd.Env = append(os.Environ(), "CHECKPOINT_DISABLE=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("packer validate: %v\n%s", err, out)
	}
	out, _ := exec.Command("packer", "fmt", "-check", filepath.Join(root, "images/packer/anyguard.pkr.hcl")).CombinedOutput()
	if len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("packer fmt -check: not formatted: %s", out)
	}
}
