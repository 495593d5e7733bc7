package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version and revision are set at build time with -ldflags
// "-X main.version=v1.2.3 -X main.revision=COMMIT" (make build and make
// image do); otherwise they come from the module's build information.
var (
	version  = ""
	revision = ""
)

// revisionString is the commit the binary was built from, or "unknown".
func revisionString() string {
	if revision != "" {
		return revision
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

func versionString() string {
	v := version
	if v == "" {
		v = "devel"
		if bi, ok := debug.ReadBuildInfo(); ok {
			if bi.Main.Version != "" && bi.Main.Version != "(devel)" {
				v = bi.Main.Version
			}
			for _, s := range bi.Settings {
				if s.Key == "vcs.revision" && len(s.Value) >= 12 {
					v += "+" + s.Value[:12]
				}
			}
		}
	}
	return v
}

func cmdVersion(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("version", "", "Print the version of anyguard and of Go it was built with.", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	_, err := fmt.Fprintf(stdout, "anyguard %s (revision %s) %s %s/%s\n", versionString(), revisionString(), runtime.Version(), runtime.GOOS, runtime.GOARCH)
	return err
}
