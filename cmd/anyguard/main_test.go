package main

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anyguard/anyguard/internal/keys"
)

func runCLI(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestGenkeyPubkey(t *testing.T) {
	code, out, _ := runCLI(t, "", "genkey")
	if code != 0 {
		t.Fatalf("genkey exit %d", code)
	}
	priv, err := keys.Parse(out)
	if err != nil || !strings.HasSuffix(out, "\n") {
		t.Fatalf("genkey printed %q: %v", out, err)
	}
	code, pub, _ := runCLI(t, out, "pubkey")
	if code != 0 || strings.TrimSpace(pub) != priv.Public().String() {
		t.Fatalf("pubkey exit %d printed %q, want %s", code, pub, priv.Public())
	}
	// Same answer as wg(8), when it is installed.
	if _, err := exec.LookPath("wg"); err == nil {
		cmd := exec.Command("wg", "pubkey")
		cmd.Stdin = strings.NewReader(out)
		want, err := cmd.Output()
		if err != nil {
			t.Fatalf("wg pubkey: %v", err)
		}
		if pub != string(want) {
			t.Fatalf("anyguard pubkey = %q, wg pubkey = %q", pub, want)
		}
	}
}

func TestPubkeyBadInput(t *testing.T) {
	for _, in := range []string{"", "garbage", strings.Repeat("A", 5000), "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\x00"} {
		code, out, errOut := runCLI(t, in, "pubkey")
		if code != 1 || out != "" || !strings.Contains(errOut, "not a WireGuard key") {
			t.Errorf("pubkey <%q: exit %d, out %q, err %q", in[:min(len(in), 20)], code, out, errOut)
		}
	}
}

func TestUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		code int
		want string
	}{
		{nil, 2, "usage: anyguard COMMAND"},
		{[]string{"frobnicate"}, 2, `unknown command "frobnicate"`},

		{[]string{"run", "--config"}, 2, "flag needs an argument"},
		{[]string{"run", "--nope"}, 2, "flag provided but not defined: -nope"},
		{[]string{"genkey", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"demo", "--clients", "0"}, 2, "--clients 0: want 1 to 200"},
		{[]string{"demo", "--requests", "-1"}, 2, "want 1 to 10000"},
		{[]string{"demo", "--timeout", "-1s"}, 2, "want a positive duration"},
		{[]string{"demo", "--regions", "4"}, 2, "--regions 4: want 1 to 3"},
		{[]string{"demo", "--per-region", "3"}, 2, "--per-region 3: want 1 or 2"},
		{[]string{"demo", "--log-level", "loud"}, 2, `log level "loud"`},
		{[]string{"run", "--config", "/nonexistent/anyguard.yaml"}, 1, "no such file"},
		{[]string{"help", "nope"}, 2, `unknown command "nope"`},
		{[]string{"bench", "handshakes", "--contact", "warm"}, 2, `--contact: unknown "warm"`},
		{[]string{"bench", "handshakes", "--contact", " , "}, 2, "--contact: empty"},
		{[]string{"bench", "handshakes", "--repeat", "0"}, 2, "--repeat 1..100"},
	}
	for _, tc := range tests {
		code, _, errOut := runCLI(t, "", tc.args...)
		if code != tc.code || !strings.Contains(errOut, tc.want) {
			t.Errorf("anyguard %v: exit %d stderr %q; want exit %d containing %q", tc.args, code, errOut, tc.code, tc.want)
		}
	}
}

func TestHelpAndVersion(t *testing.T) {
	for _, c := range commands {
		code, out, errOut := runCLI(t, "", c.name, "--help")
		want := "usage: anyguard " + c.name
		if c.name == "help" {
			want = "usage: anyguard COMMAND"
		}
		if code != 0 || !strings.Contains(out+errOut, want) {
			t.Errorf("%s --help: exit %d, %q", c.name, code, out+errOut)
		}
	}
	code, out, _ := runCLI(t, "", "version")
	if code != 0 || !strings.HasPrefix(out, "anyguard ") {
		t.Fatalf("version: %d %q", code, out)
	}
	code, out, _ = runCLI(t, "", "--help")
	if code != 0 || !strings.Contains(out, "demo") {
		t.Fatalf("--help: %d %q", code, out)
	}
}

// TestRunRejectsBadConfig: a bad config file stops `run` with exit 1 and
// one line naming the field, before anything starts.
func TestRunRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.yaml")
	os.WriteFile(p, []byte("clients:\n  private_key: AAAA\n  address: 10.99.0.1/16\n"), 0o600)
	code, _, errOut := runCLI(t, "", "run", "--config", p)
	if code != 1 || !strings.Contains(errOut, "clients.private_key") || strings.Count(errOut, "\n") != 1 {
		t.Fatalf("exit %d, stderr %q", code, errOut)
	}
}

func TestDemo(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: the demo takes about a second")
	}
	code, out, errOut := runCLI(t, "", "demo", "--clients", "2", "--requests", "2", "--timeout", "120s")
	if code != 0 {
		t.Fatalf("demo exit %d\n%s\n%s", code, out, errOut)
	}
	// 2 requests × 3 regions in phase 1, one per region after the move and after the stop.
	for _, want := range []string{"client-1", "client-2", "12/12", "phase 3", "result: OK"} {
		if !strings.Contains(out, want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// TestVersionLdflags: the version and revision make sets with -ldflags are
// what `anyguard version` prints.
func TestVersionLdflags(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	bin := filepath.Join(t.TempDir(), "anyguard")
	cmd := exec.Command("go", "build", "-ldflags", "-X main.version=v1.2.3-test -X main.revision=0123456789abcdef", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "anyguard v1.2.3-test (revision 0123456789abcdef) go") {
		t.Errorf("version: %v %q", err, out)
	}
}

// TestBenchThroughputFlags: bad repetition counts are usage errors, caught
// before the harness builds anything.
func TestBenchThroughputFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--reps", "0"},
		{"--reps", "5", "--max-reps", "4"},
		{"--max-reps", "101"},
		{"--max-reps", "x"},
		{"--duration", "500ms"},
	} {
		code, _, errOut := runCLI(t, "", append([]string{"bench", "throughput", "--wireguard-go", "/nonexistent"}, args...)...)
		if code != 2 || !strings.Contains(errOut, "--") {
			t.Errorf("bench throughput %v: exit %d, %q; want 2 and the flag named", args, code, errOut)
		}
	}
}

// TestNoDevMessage: in the image's binary (-tags nodev) bench and demo
// answer with this; it must say which binary has them. The image's own
// answer is checked by e2e TestFirstFiveMinutes/image.
func TestNoDevMessage(t *testing.T) {
	msg := errNoDev("bench").Error()
	for _, want := range []string{"-tags nodev", "anyguard bench is in the full binary", "make build", "go install github.com/anyguard/anyguard/cmd/anyguard"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q lacks %q", msg, want)
		}
	}
}
