//go:build linux

package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	bnetns "github.com/anyguard/anyguard/bench/netns"
)

const (
	// nsPrefix starts the name of every namespace these tests create:
	// agt-<pid>-<n>-<role>. The pid lets a later run tell stale ones.
	nsPrefix = "agt-"

	cmdTimeout   = bnetns.CmdTimeout
	buildTimeout = 10 * time.Minute
)

// runCmd runs a command with a timeout and returns its combined output.
func runCmd(timeout time.Duration, name string, args ...string) (string, error) {
	return bnetns.Run(timeout, name, args...)
}

// netns is a network namespace made by a test and removed when it ends.
type netns struct {
	*bnetns.NS
}

// newNetns creates a namespace with loopback up; it and every process left
// in it are removed when t ends, failed or not.
func newNetns(t testing.TB, role string) *netns {
	t.Helper()
	ns, err := bnetns.New(nsPrefix, role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ns.Remove(); err != nil {
			t.Errorf("removing namespace: %v", err)
		}
	})
	return &netns{ns}
}

// ip runs `ip -n NS args...` and fails t on error.
func (ns *netns) ip(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.IP(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustExec runs a command inside the namespace and fails t on error.
func (ns *netns) mustExec(t testing.TB, args ...string) string {
	t.Helper()
	out, err := ns.MustExec(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// sweepStaleNetns removes namespaces with our prefix whose creating test
// process is gone (a crashed or killed earlier run). Best effort.
func sweepStaleNetns() {
	bnetns.Sweep(nsPrefix, func(name string, err error) {
		if err != nil {
			fmt.Fprintf(os.Stderr, "e2e: stale namespace %s: %v\n", name, err)
		} else {
			fmt.Fprintf(os.Stderr, "e2e: removed stale namespace %s\n", name)
		}
	})
}
