//go:build linux

package e2e

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

// proc is a long-running process a test started (a gateway, iperf3 -s).
// Its output goes to a file that is copied into the test log when the
// test fails.
type proc struct {
	*bnetns.Proc
}

// startProc starts args with extra environment env. When t ends the process
// gets SIGTERM, then SIGKILL after a grace period.
func startProc(t testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	return startProcOwned(t, t, name, env, args...)
}

// startProcOwned is startProc for a process that outlives the (sub)test t
// starting it: owner, a test t runs within, stops it when owner ends.
func startProcOwned(t, owner testing.TB, name string, env []string, args ...string) *proc {
	t.Helper()
	p, err := bnetns.Start(name, filepath.Join(owner.TempDir(), name+".log"), env, args...)
	if err != nil {
		t.Fatal(err)
	}
	owner.Cleanup(func() {
		p.Stop(5 * time.Second)
		if owner.Failed() {
			owner.Logf("--- log of %s (%s), exit: %v ---\n%s", p.Name, strings.Join(args, " "), p.Err(), p.Log())
		}
	})
	return &proc{p}
}

// waitFor polls cond every 50 ms until it holds, p exits (when p is not
// nil) or timeout passes, and fails t with what.
func waitFor(t testing.TB, p *proc, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	var bp *bnetns.Proc
	if p != nil {
		bp = p.Proc
	}
	if err := bnetns.WaitFor(bp, timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}
