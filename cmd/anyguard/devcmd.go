package main

import "fmt"

// The developer commands, bench and demo, link the benchmark harness and the
// in-process demo deployment (runtime/pprof, a load-balancer simulator,
// stock-client plumbing): about 0.7 MB that a gateway never runs. Building
// with -tags nodev, as make image does, leaves them out; the commands stay
// listed and say where to find them (devcmd_nodev.go).

// errNoDev is what a developer command returns in a binary built with
// -tags nodev; run prefixes it with "anyguard NAME: ".
func errNoDev(name string) error {
	return fmt.Errorf("not in this binary, which was built with -tags nodev to keep the container image small; "+
		"anyguard %s is in the full binary: `make build`, or "+
		"`go install github.com/anyguard/anyguard/cmd/anyguard@latest` (docs/container.md)", name)
}
