package gateway_test

import (
	"bytes"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
)

// logBuffer collects log lines from any goroutine.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the lines that contain every one of subs.
func (l *logBuffer) lines(subs ...string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
next:
	for _, line := range strings.Split(l.b.String(), "\n") {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		out = append(out, line)
	}
	return out
}

// TestInsecureClusterWarnsAtStart: a gateway whose gossip runs without a
// key says so once, at warning level, when it starts; one with a key
// does not.
func TestInsecureClusterWarnsAtStart(t *testing.T) {
	for _, insecure := range []bool{true, false} {
		gwKey, _ := keys.Generate()
		alice, _ := keys.Generate()
		bb, _ := keys.Generate()
		cfg := testConfig(gwKey, alice, netip.MustParsePrefix("10.1.0.0/16"))
		cfg.Backbone.PrivateKey = bb
		cfg.Backbone.ListenPort = 0
		cfg.Cluster.Bind = "127.0.0.1:0"
		if insecure {
			cfg.Cluster.Insecure = true
		} else {
			cfg.Cluster.SecretKey, _ = keys.Generate()
		}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		g, err := gateway.New(cfg, gateway.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatal(err)
		}
		g.Close()
		got := logs.lines("cluster.insecure")
		switch {
		case insecure && (len(got) != 1 || !strings.Contains(got[0], "level=WARN") || !strings.Contains(got[0], "NOT encrypted or authenticated")):
			t.Errorf("insecure cluster: warning lines %q, want one WARN line", got)
		case !insecure && len(got) != 0:
			t.Errorf("cluster with a secret key warned: %q", got)
		}
	}
}
