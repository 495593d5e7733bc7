// Command anyguard is a userspace WireGuard gateway for many regions behind
// one anycast address. Run `anyguard help` for the subcommands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand.
type command struct {
	name    string
	usage   string // arguments, after the name
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var commands []command

func init() {
	commands = []command{
		{"run", "[--config FILE] [--state-dir DIR] [--log-format text|json] [--log-level LEVEL]", "run a gateway", cmdRun},
		{"check", "[--config FILE] [--state-dir DIR] [--quiet]", "validate the configuration as run would and print it, secrets redacted", cmdCheck},
		{"client", clientUsage, "add, list or remove clients in the peers file and reload the gateway", cmdClient},
		{"demo", "[--clients N] [--requests N] [--keep-running]", "run a whole gateway with real WireGuard clients in this process, unprivileged", cmdDemo},
		{"interface", interfaceUsage, "a plain userspace WireGuard interface on a multi-queue TUN, a drop-in for wireguard-go", cmdInterface},
		{"bench", benchUsage, "measure throughput against stock wireguard-go (root) or scale with many clients", cmdBench},
		{"status", "[--addr HOST:PORT]", "show a running gateway's status as tables", cmdStatus},
		{"healthcheck", "[--addr HOST:PORT]", "exit 0 if a running gateway is ready (for Docker HEALTHCHECK)", cmdHealthcheck},
		{"genkey", "", "print a new private key (like wg genkey)", cmdGenkey},
		{"pubkey", "", "read a private key on stdin, print its public key (like wg pubkey)", cmdPubkey},
		{"version", "", "print the version", cmdVersion},
		{"help", "[COMMAND]", "show help", cmdHelp},
	}
}

// errUsage marks errors that are the caller's words being wrong (exit 2).
var errUsage = errors.New("usage")

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "-help":
		usage(stdout)
		return 0
	case "-v", "--version":
		name = "version"
	}
	for _, c := range commands {
		if c.name != name {
			continue
		}
		err := c.run(ctx, args[1:], stdin, stdout, stderr)
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			fmt.Fprintf(stderr, "anyguard %s: %v\nusage: anyguard %s %s\n", c.name, unwrapUsage(err), c.name, c.usage)
			return 2
		default:
			fmt.Fprintf(stderr, "anyguard %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "anyguard: unknown command %q\n", name)
	usage(stderr)
	return 2
}

func unwrapUsage(err error) string {
	var u usageError
	if errors.As(err, &u) {
		return u.msg
	}
	return err.Error()
}

type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }
func (u usageError) Unwrap() error { return errUsage }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

func usage(w io.Writer) {
	fmt.Fprintln(w, "anyguard: a userspace WireGuard gateway for many regions behind one anycast address")
	fmt.Fprintln(w, "\nusage: anyguard COMMAND [ARGS]\n\ncommands:")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'anyguard COMMAND --help' for a command's flags.")
}

// newFlags returns a flag set that reports errors instead of exiting and
// prints its usage to stderr.
func newFlags(name, args, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: anyguard %s %s\n\n%s\n", name, args, summary)
		if hasFlags(fs) {
			fmt.Fprintln(stderr, "\nflags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

// parseFlags parses args and refuses positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q", fs.Arg(0))
	}
	return nil
}

func cmdHelp(_ context.Context, args []string, _ io.Reader, stdout, _ io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		usage(stdout)
		return nil
	}
	for _, c := range commands {
		if c.name == args[0] {
			return c.run(context.Background(), []string{"--help"}, nil, stdout, stdout)
		}
	}
	return usagef("unknown command %q", args[0])
}
