package health

import (
	"go/build"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestImportRules: health reads the gateway through interfaces it declares
// itself, so it imports no other anyguard package; and router and device
// never import health.
func TestImportRules(t *testing.T) {
	const module = "github.com/anyguard/anyguard"
	pkg, err := build.ImportDir(".", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range pkg.Imports {
		if strings.HasPrefix(imp, module) {
			t.Errorf("health imports %s", imp)
		}
	}
	for _, dir := range []string{"router", "device"} {
		p, err := build.ImportDir(filepath.Join("..", dir), 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range p.Imports {
			if imp == module+"/health" {
				t.Errorf("%s imports health", dir)
			}
		}
	}
}

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
