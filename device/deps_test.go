package device

import (
	"os/exec"
	"strings"
	"testing"
)

// TestNoGVisor: device links no gVisor, neither in its own build nor in its
// tests, so a TUN-only user of device does not link a TCP/IP stack. The
// netstack egress, which needs it, is device/netstack.
func TestNoGVisor(t *testing.T) {
	for _, args := range [][]string{
		{"list", "-deps", "."},
		{"list", "-deps", "-test", "."},
	} {
		out, err := exec.Command("go", args...).Output()
		if err != nil {
			t.Fatalf("go %s: %v", strings.Join(args, " "), err)
		}
		deps := strings.Fields(string(out))
		if len(deps) < 10 {
			t.Fatalf("go %s listed only %q", strings.Join(args, " "), deps)
		}
		for _, d := range deps {
			if strings.HasPrefix(d, "gvisor.dev/") {
				t.Errorf("go %s: device depends on %s", strings.Join(args, " "), d)
			}
		}
	}
}
