//go:build !linux

package main

import (
	"context"
	"errors"
	"io"
)

const interfaceUsage = "[-f|--foreground] INTERFACE-NAME"

func cmdInterface(context.Context, []string, io.Reader, io.Writer, io.Writer) error {
	return errors.New("anyguard interface needs Linux (multi-queue TUN)")
}
