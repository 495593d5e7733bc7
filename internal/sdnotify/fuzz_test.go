package sdnotify

import (
	"go/build"
	"strings"
	"testing"
	"time"
)

// FuzzFromEnv: whatever the environment holds, FromEnv returns a notifier
// or an error, never panics, and a notifier's watchdog is positive and at
// most a day, or zero.
func FuzzFromEnv(f *testing.F) {
	f.Add("/run/systemd/notify", "30000000", "")
	f.Add("@/org/freedesktop/systemd1/notify/123", "1000000", "7")
	f.Add("", "5", "")
	f.Add("relative", "", "")
	f.Add("/run/n", "-1", "x")
	f.Fuzz(func(t *testing.T, sock, usec, pid string) {
		n, err := FromEnv(func(k string) string {
			return map[string]string{"NOTIFY_SOCKET": sock, "WATCHDOG_USEC": usec, "WATCHDOG_PID": pid}[k]
		}, 7)
		if err != nil {
			if n != nil {
				t.Fatalf("both a notifier and an error: %v", err)
			}
			return
		}
		if d := n.WatchdogTimeout(); d < 0 || d > 24*time.Hour {
			t.Fatalf("watchdog %v from WATCHDOG_USEC=%q", d, usec)
		}
		if n.Enabled() != (sock != "") {
			t.Fatalf("Enabled() = %v for NOTIFY_SOCKET=%q", n.Enabled(), sock)
		}
	})
}

// TestImportRules: the protocol needs nothing of anyguard and nothing
// outside the standard library but x/sys.
func TestImportRules(t *testing.T) {
	for _, tags := range [][]string{nil, {"linux"}} {
		ctx := build.Default
		ctx.BuildTags = tags
		pkg, err := ctx.ImportDir(".", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range pkg.Imports {
			if strings.Contains(imp, ".") && imp != "golang.org/x/sys/unix" {
				t.Errorf("sdnotify imports %s", imp)
			}
		}
	}
}
