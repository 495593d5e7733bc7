//go:build !linux

package bench

import (
	"context"
	"errors"
)

// RunThroughput needs Linux network namespaces.
func RunThroughput(context.Context, ThroughputOptions) (*ThroughputReport, error) {
	return nil, errors.New("bench throughput needs Linux (network namespaces, TUN)")
}
