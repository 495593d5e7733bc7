package testwait

import (
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fakeT records what Until reports instead of failing the test.
type fakeT struct{ failed string }

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestUntilReturnsOnceTrue(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			time.Sleep(time.Millisecond)
			n.Add(1)
		}
	}()
	var f fakeT
	Until(&f, 5*time.Second, "three ticks", func() bool { return n.Load() == 3 })
	if f.failed != "" {
		t.Fatalf("Until failed although the condition came true: %s", f.failed)
	}
}

func TestUntilFailsNamingWhat(t *testing.T) {
	var f fakeT
	calls := 0
	start := time.Now()
	Until(&f, 50*time.Millisecond, "the impossible", func() bool { calls++; return false })
	if took := time.Since(start); took < 50*time.Millisecond {
		t.Errorf("gave up after %s, before the timeout", took)
	}
	if !strings.Contains(f.failed, "waiting for the impossible") || !strings.Contains(f.failed, "50ms") {
		t.Errorf("failure %q does not name what it waited for and how long", f.failed)
	}
	if calls < 2 {
		t.Errorf("condition checked %d times in 50ms", calls)
	}
}

func TestUntilChecksOnceWithoutTime(t *testing.T) {
	var f fakeT
	Until(&f, 0, "already true", func() bool { return true })
	if f.failed != "" {
		t.Errorf("a condition true at once failed with no time left: %s", f.failed)
	}
	UntilStacks(&f, -time.Second, "never", func() bool { return false })
	if !strings.Contains(f.failed, "waiting for never") || !strings.Contains(f.failed, "goroutine ") {
		t.Errorf("UntilStacks failure %q lacks what or the stacks", f.failed[:min(len(f.failed), 200)])
	}
}

func TestNoErrorReportsTheLastError(t *testing.T) {
	var f fakeT
	n := 0
	NoError(&f, 5*time.Second, "the third try", func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	})
	if f.failed != "" || n != 3 {
		t.Fatalf("NoError after %d tries: %q", n, f.failed)
	}
	n = 0
	NoError(&f, 30*time.Millisecond, "a miracle", func() error { n++; return fmt.Errorf("try %d failed", n) })
	if want := fmt.Sprintf("waiting for a miracle: try %d failed", n); !strings.HasSuffix(f.failed, want) {
		t.Errorf("failure %q, want it to end in %q", f.failed, want)
	}
}

func TestNoErrorStops(t *testing.T) {
	var f fakeT
	n := 0
	start := time.Now()
	NoError(&f, 5*time.Second, "a dead process", func() error {
		if n++; n < 2 {
			return errors.New("not yet")
		}
		return Stop(errors.New("it exited"))
	})
	if took := time.Since(start); took > time.Second || n != 2 {
		t.Errorf("Stop did not end the wait at once: %d tries in %s", n, took)
	}
	if want := "gave up waiting for a dead process: it exited"; f.failed != want {
		t.Errorf("failure %q, want %q", f.failed, want)
	}
}
