//go:build !unix

package netstack

import "time"

// processCPU is unknown here; the benchmark then reports no cpu-ns/B.
func processCPU() time.Duration { return 0 }
