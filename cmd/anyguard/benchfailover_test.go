package main

import (
	"strings"
	"testing"
)

// Bad values of anyguard bench failover's flags are usage errors (exit 2)
// naming the flag, before anything starts.
func TestBenchFailoverBadFlags(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"--clients", "0"}, "clients: 0 is outside 1…60000"},
		{[]string{"--clients", "70000"}, "clients: 70000 is outside"},
		{[]string{"--clients", "many"}, "invalid value"},
		{[]string{"--regions", "1"}, "regions: 1 is outside 2…5"},
		{[]string{"--per-region", "1"}, "per-region: 1 is outside 2…4"},
		{[]string{"--scenarios", "meteor"}, `--scenarios: unknown "meteor"`},
		{[]string{"--scenarios", ","}, "--scenarios: empty"},
		{[]string{"--modes", "turbo"}, `--modes: unknown "turbo"`},
		{[]string{"--modes", ","}, "--modes: empty"},
		{[]string{"--connect-timeout", "-1s"}, "--connect-timeout -1s: want 0 or more"},
		{[]string{"--lb", "elb"}, `--lb "elb": want fast or nlb`},
		{[]string{"--health-check", "icmp"}, `health_protocol: "icmp" is not http or tcp`},
		{[]string{"--hc-interval", "1ms"}, "interval: 1ms is outside 10ms…10m"},
		{[]string{"--hc-timeout", "-1s"}, "timeout: -1s must be > 0"},
		{[]string{"--hc-interval", "1s", "--hc-timeout", "2s"}, "timeout: 2s must be > 0 and ≤ the interval 1s"},
		{[]string{"--healthy-threshold", "11"}, "healthy_threshold: 11 is outside 1…10"},
		{[]string{"--unhealthy-threshold", "-2"}, "unhealthy_threshold: -2 is outside 1…10"},
		{[]string{"--unhealthy-flows", "drop"}, `unhealthy_flows: "drop" is not reroute or keep`},
		{[]string{"--udp-idle-timeout", "10ms"}, "udp_idle_timeout: 10ms is under 1s"},
		{[]string{"--deregistration-delay", "-5s"}, "--deregistration-delay -5s: want 0 or more"},
		{[]string{"--deregistration-delay", "2h"}, "deregistration_delay: 2h0m0s is outside 0…1h"},
		{[]string{"--interval", "1ms"}, "interval: 1ms is outside 10ms…10s"},
		{[]string{"--limit", "0s"}, "limit: 0s is outside 1s…1h"},
		{[]string{"--drain-window", "-1s"}, "--drain-window -1s: want 0 or more"},
		{[]string{"extra"}, `unexpected argument "extra"`},
	}
	for _, tc := range tests {
		args := append([]string{"bench", "failover"}, tc.args...)
		code, _, errOut := runCLI(t, "", args...)
		if code != 2 || !strings.Contains(errOut, tc.want) {
			t.Errorf("anyguard %v: exit %d stderr %q; want exit 2 containing %q", args, code, errOut, tc.want)
		}
	}
}
