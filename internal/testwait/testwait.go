// Package testwait is the one way tests here wait for a condition: Until
// polls it and, when time runs out, fails the test naming what it waited
// for. Use it instead of a fixed sleep whenever a condition can be
// checked; keep sleeps for letting time pass on purpose (a timer that must
// not fire, traffic that must keep flowing).
//
// It does not import package testing, so that it is no exception to the
// rule that non-test code does not; *testing.T, *testing.B and
// testing.TB satisfy T.
package testwait

import (
	"errors"
	"runtime"
	"time"
)

// T is the part of testing.TB that Until uses.
type T interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Interval is how often Until checks its condition. Some conditions are
// not free (reading a wireguard-go device's status takes its locks), and
// checking them much more often than this slows down what they wait for:
// at 10 ms, the gateway's 3 s backbone-mesh test failed under -race on a
// loaded machine where it passes at 20 ms.
const Interval = 20 * time.Millisecond

// Until calls cond every Interval until it returns true, and fails t with
// "timed out after TIMEOUT waiting for WHAT" if it has not within timeout.
// cond is called at least once, even with a timeout of zero or less. Like
// t.Fatalf, Until must be called from the goroutine running the test.
func Until(t T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !wait(timeout, cond) {
		t.Fatalf("timed out after %s waiting for %s", timeout, what)
	}
}

// UntilStacks is Until, and on time-out also prints every goroutine's
// stack: for waits on goroutines that may be stuck.
func UntilStacks(t T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if !wait(timeout, cond) {
		buf := make([]byte, 1<<20)
		t.Fatalf("timed out after %s waiting for %s\n%s", timeout, what, buf[:runtime.Stack(buf, true)])
	}
}

// NoError calls f every Interval until it returns nil, and fails t with
// "timed out after TIMEOUT waiting for WHAT: LAST ERROR" if it has not
// within timeout: for waits whose failure is best explained by what the
// last attempt saw (a status code, a log, an error).
//
// If f returns an error made by Stop, NoError fails at once with it: the
// wait can no longer succeed (the process it watches exited).
func NoError(t T, timeout time.Duration, what string, f func() error) {
	t.Helper()
	var last error
	var stop *stopError
	if !wait(timeout, func() bool { last = f(); return last == nil || errors.As(last, &stop) }) {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, last)
	}
	if stop != nil {
		t.Fatalf("gave up waiting for %s: %v", what, stop.err)
	}
}

// Stop wraps err so that NoError fails with it at once instead of trying
// again until its timeout.
func Stop(err error) error { return &stopError{err} }

type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }
func (e *stopError) Unwrap() error { return e.err }

func wait(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if !time.Now().Before(deadline) {
			return false
		}
		time.Sleep(Interval)
	}
	return true
}
