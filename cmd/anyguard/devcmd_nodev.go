//go:build nodev

package main

import (
	"context"
	"io"
)

const benchUsage = "throughput|scale|cluster|handshakes [flags]"

func cmdBench(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errNoDev("bench")
}

func cmdDemo(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errNoDev("demo")
}
