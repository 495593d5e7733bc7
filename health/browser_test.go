package health

import (
	"context"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/internal/e2etest"

	"github.com/anyguard/anyguard/internal/testwait"
)

// TestPageInHeadlessChromium loads the status page in Debian's chromium
// (apt-get install chromium) and checks what it rendered.
func TestPageInHeadlessChromium(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		e2etest.Skip(t, "chromium is not installed (apt-get install -y --no-install-recommends chromium)")
	}
	var sw switchCheck
	st := newTestState(t, sw.check("dataplane"))
	testwait.Until(t, 5*time.Second, "ready", st.Ready)
	srv := httptest.NewServer(NewHandler(Config{State: st, Status: fakeSource{}, Version: "v9"}))
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--user-data-dir="+t.TempDir(), "--dump-dom", srv.URL+"/")
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("chromium: %v\n%s", err, stderr)
	}
	dom := string(out)
	for _, want := range []string{
		`<span id="node">gw-&lt;1&gt;</span>`,
		`<span class="ok">READY</span>`,
		"<td>dataplane</td>",
		"<td>alice</td>",
		"<td>10.99.0.2/32</td>",
		"192.0.2.7:4242",
		"5.0 MiB",
		"&lt;script&gt;bob&lt;/script&gt;",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("rendered DOM lacks %q", want)
		}
	}
	if strings.Contains(dom, "<script>bob") {
		t.Error("a client name became markup")
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}
}
