//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"debug/elf"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// podmanTools are what the container tests run besides requiredTools;
// Debian's podman and runc bring them (`make deps`).
var podmanTools = []string{"podman", "runc"}

// imagePrefix names the images the tests build: localhost/anyguard-e2e:<pid>-<n>.
const imagePrefix = "localhost/anyguard-e2e"

// podman runs podman with the tests' own containers.conf.
type podman struct {
	conf string // absolute path of testdata/containers.conf
}

var (
	podmanOnce   sync.Once
	podmanReason string
	podmanConf   string
	podmanSeq    atomic.Int64
)

// requirePodman checks once per run that podman can run containers here
// (root, the e2e tools, podman and runc) and calls requireE2E when it
// cannot.
func requirePodman(t testing.TB) *podman {
	t.Helper()
	requirePrivileged(t)
	podmanOnce.Do(func() { podmanConf, podmanReason = probePodman() })
	if podmanReason != "" {
		requireE2E(t, podmanReason)
	}
	return &podman{conf: podmanConf}
}

// probePodman returns the containers.conf to use, or why podman cannot
// run the tests' containers. It also removes containers and images that
// earlier runs, since gone, left behind.
func probePodman() (conf, reason string) {
	for _, tool := range podmanTools {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Sprintf("%s is not installed (run `make deps` as root, or apt-get install --no-install-recommends podman runc)", tool)
		}
	}
	conf, err := filepath.Abs(filepath.Join("testdata", "containers.conf"))
	if err != nil {
		return "", err.Error()
	}
	if _, err := os.Stat(conf); err != nil {
		return "", fmt.Sprintf("containers.conf for the tests: %v", err)
	}
	pm := &podman{conf: conf}
	if out, err := pm.output(cmdTimeout, "info", "--format", "{{.Host.OCIRuntime.Name}} {{.Store.GraphDriverName}}"); err != nil {
		return "", fmt.Sprintf("podman info: %v", err)
	} else if !strings.HasPrefix(out, "runc ") {
		return "", fmt.Sprintf("podman info: runtime and storage driver %q, want runc (CONTAINERS_CONF=%s)", strings.TrimSpace(out), conf)
	}
	pm.sweep()
	return conf, ""
}

// command returns a podman command that reads the tests' containers.conf.
func (pm *podman) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "podman", args...)
	cmd.Env = append(os.Environ(), "CONTAINERS_CONF="+pm.conf)
	cmd.WaitDelay = time.Second
	return cmd
}

// output runs podman and returns its standard output; the error carries
// the standard error. Podman without systemd logs on standard error that
// it cannot set up healthcheck timers, which is harmless: the tests run
// the healthcheck themselves.
func (pm *podman) output(timeout time.Duration, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := pm.command(ctx, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", timeout, err)
	}
	if err != nil {
		return stdout.String(), fmt.Errorf("podman %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// mustOutput is output that fails t on error.
func (pm *podman) mustOutput(t testing.TB, timeout time.Duration, args ...string) string {
	t.Helper()
	out, err := pm.output(timeout, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sweep removes containers and images named by runs whose process is gone
// (agt-<pid>-..., localhost/anyguard-e2e:<pid>-...). Best effort.
func (pm *podman) sweep() {
	out, _ := pm.output(cmdTimeout, "ps", "-a", "--format", "{{.Names}}")
	for _, name := range strings.Fields(out) {
		if rest, ok := strings.CutPrefix(name, nsPrefix); ok && staleName(rest) {
			_, err := pm.output(cmdTimeout, "rm", "-f", "-v", "-t", "0", name)
			reportSweep("container", name, err)
		}
	}
	out, _ = pm.output(cmdTimeout, "images", "--format", "{{.Repository}}:{{.Tag}}")
	for _, image := range strings.Fields(out) {
		if tag, ok := strings.CutPrefix(image, imagePrefix+":"); ok && staleName(tag) {
			_, err := pm.output(cmdTimeout, "rmi", "-f", image)
			reportSweep("image", image, err)
		}
	}
}

func reportSweep(what, name string, err error) {
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: stale %s %s: %v\n", what, name, err)
	} else {
		fmt.Fprintf(os.Stderr, "e2e: removed stale %s %s\n", what, name)
	}
}

// staleName reports whether s starts with "<pid>-" of a process that is
// gone.
func staleName(s string) bool {
	pidStr, _, ok := strings.Cut(s, "-")
	pid, err := strconv.Atoi(pidStr)
	if !ok || err != nil || pid == os.Getpid() {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// buildImage builds images/Dockerfile around the (static) anyguard binary,
// as docs/container.md says: `podman build --format docker`, in a build context
// holding only bin/anyguard. The image is removed when t ends.
func buildImage(t testing.TB, pm *podman) string {
	t.Helper()
	bin := anyguardBinary(t)
	checkStatic(t, bin)
	root, err := repoRoot()
	if err != nil {
		t.Fatal(err)
	}
	buildDir := t.TempDir()
	// As make image does: the binary and the directories the image's
	// user owns.
	for _, dir := range []string{"bin", "rootfs/var/run/wireguard", "rootfs/var/lib/anyguard"} {
		if err := os.MkdirAll(filepath.Join(buildDir, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, bin, filepath.Join(buildDir, "bin", "anyguard"), 0o755)
	tag := fmt.Sprintf("%s:%d-%d", imagePrefix, os.Getpid(), podmanSeq.Add(1))
	start := time.Now()
	// --format docker: the OCI image format has no HEALTHCHECK, and podman
	// drops it with only a warning.
	pm.mustOutput(t, buildTimeout, "build", "--format", "docker", "-f", filepath.Join(root, "images", "Dockerfile"), "-t", tag, buildDir)
	t.Cleanup(func() {
		if _, err := pm.output(cmdTimeout, "rmi", "-f", tag); err != nil {
			t.Errorf("removing image: %v", err)
		}
	})
	t.Logf("built image %s in %v", tag, time.Since(start).Round(time.Millisecond))
	return tag
}

// checkStatic fails t unless bin is a static executable, the only kind
// that runs in an image FROM scratch.
func checkStatic(t testing.TB, bin string) {
	t.Helper()
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatalf("anyguard binary: %v", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("%s is dynamically linked; the image FROM scratch needs CGO_ENABLED=0 (as `make build` does)", bin)
		}
	}
}

func copyFile(t testing.TB, from, to string, mode os.FileMode) {
	t.Helper()
	src, err := os.Open(from)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, mode)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
}

// container is a podman container a test started; it is removed when the
// test ends, with its log in the test's output if the test failed.
type container struct {
	pm   *podman
	name string
}

// newContainer reserves a container name (agt-<pid>-<n>-<role>, which a
// later run's sweep recognises) and removes the container of that name
// when t ends.
func newContainer(t testing.TB, pm *podman, role string) *container {
	t.Helper()
	c := &container{pm: pm, name: fmt.Sprintf("%s%d-c%d-%s", nsPrefix, os.Getpid(), podmanSeq.Add(1), role)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- podman logs %s ---\n%s", c.name, c.logs())
		}
		if _, err := pm.output(cmdTimeout, "rm", "-f", "-v", "-t", "0", "--ignore", c.name); err != nil {
			t.Errorf("removing container: %v", err)
		}
	})
	return c
}

// logs returns the container's output (the gateway logs on stderr).
func (c *container) logs() string {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := c.pm.command(ctx, "logs", c.name).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(podman logs: %v: %s)", err, out)
	}
	return string(out)
}

// containerState is the part of `podman inspect` the tests read.
type containerState struct {
	Status   string `json:"Status"`
	Running  bool   `json:"Running"`
	ExitCode int    `json:"ExitCode"`
	Health   struct {
		Status string `json:"Status"`
	} `json:"Health"`
}

func (c *container) state(t testing.TB) containerState {
	t.Helper()
	out := c.pm.mustOutput(t, cmdTimeout, "inspect", "--type", "container", "--format", "{{json .State}}", c.name)
	var s containerState
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("podman inspect %s: %v: %s", c.name, err, out)
	}
	return s
}

// httpGet sends GET path to addr from inside ns (the container's network
// namespace) and returns the status and body.
func httpGet(ns *netns, addr, path string) (int, string, error) {
	var conn net.Conn
	err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 2*time.Second)
		return err
	})
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+path, nil)
	if err != nil {
		return 0, "", err
	}
	req.Close = true
	if err := req.Write(conn); err != nil {
		return 0, "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	return resp.StatusCode, string(body), err
}

// imageUID is the user the image runs as (images/Dockerfile).
const imageUID = 65532

// chownForImage gives dir and the files in it to the image's user, as a
// user mounting a configuration into the container must (key files stay
// 0600: readable by their owner only).
func chownForImage(t testing.TB, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(path string, _ os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Chown(path, imageUID, imageUID)
	})
	if err != nil {
		t.Fatal(err)
	}
}
