package health

import (
	"net/http"
	"runtime"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestCloseLeavesNoGoroutines: State and Server stop everything they
// started.
func TestCloseLeavesNoGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	var sw switchCheck
	st := NewState([]Check{sw.check("x")}, StateOptions{Interval: 10 * time.Millisecond})
	s, err := Listen(Config{Listen: "127.0.0.1:0", TCPListen: "127.0.0.1:0", State: st})
	if err != nil {
		t.Fatal(err)
	}
	testwait.Until(t, 5*time.Second, "ready", st.Ready)
	resp, err := http.Get("http://" + s.Addr().String() + "/status")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	http.DefaultClient.CloseIdleConnections()
	s.Close()
	st.Close()
	testwait.Until(t, 5*time.Second, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before })
}
