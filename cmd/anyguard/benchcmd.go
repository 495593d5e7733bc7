//go:build !nodev

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/anyguard/anyguard/bench"
)

const benchUsage = "throughput|scale|cluster|handshakes|failover [flags]"

func cmdBench(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return usagef("which benchmark? throughput, scale, cluster, handshakes or failover")
	}
	switch args[0] {
	case "throughput":
		return cmdBenchThroughput(ctx, args[1:], stdout, stderr)
	case "scale":
		return cmdBenchScale(ctx, args[1:], stdout, stderr)
	case "micro":
		return cmdBenchMicro(args[1:], stdin, stdout, stderr)
	case "cluster":
		return cmdBenchCluster(ctx, args[1:], stdout, stderr)
	case "handshakes":
		return cmdBenchHandshakes(ctx, args[1:], stdin, stdout, stderr)
	case "failover":
		return cmdBenchFailover(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "-help":
		fmt.Fprintf(stderr, "usage: anyguard bench %s\n\n"+
			"  throughput  iperf3 through stock wireguard-go and anyguard in network namespaces (root)\n"+
			"  scale       memory and start-up time with many configured clients\n"+
			"  micro       turn go test -bench output on stdin into a table (make bench)\n"+
			"  cluster     ownership convergence, gossip bytes and failover between gateways in one process\n"+
			"  handshakes  handshakes per second and per CPU-second from a storm of initiators, vs stock wireguard-go\n"+
			"  failover    outage of thousands of real clients when a load balancer moves their flows, fast recovery vs stock\n\n"+
			"Run 'anyguard bench BENCHMARK --help' for its flags.\n", benchUsage)
		return nil
	}
	return usagef("unknown benchmark %q: want throughput, scale, cluster, handshakes or failover", args[0])
}

// listFlag parses a comma-separated list, each item one of allowed.
func listFlag(name, value string, allowed []string) ([]string, error) {
	var out []string
	for _, v := range strings.Split(value, ",") {
		v = strings.TrimSpace(v)
		if v == "" {
			continue
		}
		if !slices.Contains(allowed, v) {
			return nil, usagef("--%s: unknown %q, want some of %s", name, v, strings.Join(allowed, ","))
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		return nil, usagef("--%s: empty", name)
	}
	return out, nil
}

func cmdBenchThroughput(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench throughput", "--wireguard-go PATH [flags]",
		"Measure iperf3 TCP and UDP throughput from a stock client through stock wireguard-go and through anyguard\n"+
			"(tun and netstack egress) in network namespaces it creates and removes. Needs root, iperf3, ip, ss and wg.\n"+
			"Repetitions interleave the gateways; the table shows medians and ratios to stock.", stderr)
	wg := fs.String("wireguard-go", "", "stock wireguard-go `binary` for the baseline and the client (build it from the module proxy: make bench does)")
	anyguard := fs.String("anyguard", "", "anyguard `binary` to benchmark (default: this one)")
	modes := fs.String("modes", strings.Join(bench.AllModes, ","), "gateways to compare")
	tests := fs.String("tests", strings.Join(bench.AllTests, ","), "tests to run")
	duration := fs.Duration("duration", 10*time.Second, "length of each iperf3 run")
	reps := fs.Int("reps", 5, "repetitions of every gateway and test (medians are reported; a ratio's interval needs ≥ 5)")
	maxReps := fs.Int("max-reps", 11, "further repetitions, up to this many, of a test whose ratio to stock is still too wide to call")
	queues := fs.Int("queues", 0, "TUN queues in tun mode (0: one per CPU)")
	out := addReportFlags(fs, "throughput")
	perf := fs.String("perf", "", "record the gateway with perf(1) during each test into `dir` (the last repetition's recordings stay)")
	logs := fs.String("logs", "", "keep the processes' logs in `dir` (default: a temporary directory, removed)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *wg == "" {
		return usagef("--wireguard-go is required")
	}
	if *reps < 1 || *duration < time.Second {
		return usagef("--reps must be ≥ 1 and --duration ≥ 1s")
	}
	if *maxReps < *reps || *maxReps > 100 {
		return usagef("--max-reps must be within --reps (%d)..100", *reps)
	}
	opts := bench.ThroughputOptions{
		Anyguard: *anyguard, WireguardGo: *wg,
		Duration: *duration, Reps: *reps, MaxReps: *maxReps, Queues: *queues,
		Progress: stderr, Dir: *logs, PerfDir: *perf,
	}
	var err error
	if opts.Modes, err = listFlag("modes", *modes, bench.AllModes); err != nil {
		return err
	}
	if opts.Tests, err = listFlag("tests", *tests, bench.AllTests); err != nil {
		return err
	}
	rep, err := bench.RunThroughput(ctx, opts)
	if err != nil {
		return err
	}
	return out.write(stdout, rep, rep.Markdown())
}

// reportFlags are the outputs every benchmark offers besides its markdown
// on stdout.
type reportFlags struct {
	name                string // the markers' name in the doc
	json, markdown, doc *string
}

// benchDoc is where make bench keeps the tables (its BENCH_DOC).
const benchDoc = "docs/benchmarks.md"

func addReportFlags(fs *flag.FlagSet, name string) *reportFlags {
	o := &reportFlags{
		name:     name,
		json:     fs.String("json", "", "write the full results as JSON to `file`"),
		markdown: fs.String("markdown", "", "write the markdown to `file` as well as stdout"),
		doc:      fs.String("doc", "", "splice the markdown into `file` (make bench: "+benchDoc+") between <!-- bench:"+name+":begin/end --> markers"),
	}
	fs.StringVar(o.doc, "readme", "", "the old name of --doc")
	return o
}

// write prints md and writes the outputs asked for.
func (o *reportFlags) write(stdout io.Writer, v any, md string) error {
	fmt.Fprint(stdout, md)
	if *o.json != "" {
		if err := bench.WriteJSON(*o.json, v); err != nil {
			return err
		}
	}
	if *o.markdown != "" {
		if err := os.WriteFile(*o.markdown, []byte(md), 0o644); err != nil {
			return err
		}
	}
	if *o.doc != "" {
		return bench.Splice(*o.doc, o.name, md)
	}
	return nil
}

func cmdBenchScale(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench scale", "[flags]",
		"Measure start-up time, resident memory, goroutines and reload time of a gateway (netstack mode,\n"+
			"unprivileged) with many configured clients, each size in a fresh child process, before and after some\n"+
			"of the clients (real wireguard-go clients in this process) connect.", stderr)
	clients := fs.String("clients", "1000,10000,100000", "comma-separated client counts")
	peersFile := fs.String("peers-file", "100000", "comma-separated client counts measured also with the clients in a peers file (clients.peers_file); \"\" for none")
	live := fs.Int("live", bench.DefaultScaleLive, "how many of the clients connect (at most the client count)")
	out := addReportFlags(fs, "scale")
	child := fs.String("child", "", "internal: measure one gateway from this config `file`")
	childReload := fs.String("child-reload", "", "internal: the config `file` to reload in --child mode")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *child != "" {
		return bench.ScaleChild(*child, *childReload, os.Stdin, stdout)
	}
	counts, err := parseCounts("--clients", *clients)
	if err != nil {
		return err
	}
	var fileCounts []int
	if *peersFile != "" {
		if fileCounts, err = parseCounts("--peers-file", *peersFile); err != nil {
			return err
		}
	}
	if *live < 1 || *live > 10_000 {
		return usagef("--live: %d is not a count from 1 to 10000", *live)
	}
	rep, err := bench.RunScale(ctx, bench.ScaleOptions{Clients: counts, PeersFile: fileCounts, Live: *live, Progress: stderr})
	if err != nil {
		return err
	}
	return out.write(stdout, rep, rep.Markdown())
}

// parseCounts parses the comma-separated client counts of flag.
func parseCounts(flag, list string) ([]int, error) {
	var counts []int
	for _, s := range strings.Split(list, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n < 1 || n > 1_000_000 {
			return nil, usagef("%s: %q is not a count from 1 to 1000000", flag, s)
		}
		counts = append(counts, n)
	}
	return counts, nil
}

func cmdBenchCluster(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench cluster", "[flags]",
		"Measure client ownership between real cluster gateways in this process (memberlist over 127.0.0.1,\n"+
			"encrypted, no privileges): time from a claim to the last gateway applying it, per profile and size (the wan\n"+
			"profile with 50-150 ms round trips injected between 3 regions), bytes each gateway sends at a steady claim\n"+
			"rate, and the time until a crashed gateway is seen down everywhere.", stderr)
	sizes := fs.String("nodes", "3,10,30", "comma-separated cluster sizes")
	profiles := fs.String("profiles", "lan,wan", "cluster profiles (wan runs with the WAN delays)")
	clients := fs.Int("clients", 5000, "configured clients")
	claims := fs.Int("claims", 200, "claims timed per size and profile")
	rate := fs.Float64("rate", 20, "claims per second while timing convergence")
	loadNodes := fs.Int("load-nodes", 30, "cluster size of the load phase (-1: none)")
	loadRate := fs.Float64("load-rate", 100, "claims per second in the load phase")
	loadTime := fs.Duration("load-time", 20*time.Second, "length of the load phase and of the idle window after it")
	failNodes := fs.String("failover-nodes", "10,30", "comma-separated cluster sizes (lan) whose gateways are crashed (\"\": none)")
	failTrials := fs.Int("failover-trials", 3, "gateways crashed one after another")
	fullKeys := fs.Bool("full-keys", false, "gossip full client keys instead of indices into the client set")
	out := addReportFlags(fs, "cluster")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	opts := bench.ClusterOptions{
		Clients: *clients, Claims: *claims, ClaimRate: *rate,
		LoadNodes: *loadNodes, LoadRate: *loadRate, LoadTime: *loadTime,
		FailoverSizes: []int{}, FailoverTrials: *failTrials,
		FullKeys: *fullKeys, Progress: stderr,
	}
	var err error
	if opts.Sizes, err = sizesFlag("nodes", *sizes, 1); err != nil {
		return err
	}
	if *failNodes != "" {
		if opts.FailoverSizes, err = sizesFlag("failover-nodes", *failNodes, 3); err != nil {
			return err
		}
	}
	if opts.Profiles, err = listFlag("profiles", *profiles, []string{"lan", "wan"}); err != nil {
		return err
	}
	if *clients < 1 || *claims < 1 || *rate <= 0 || *loadRate <= 0 || *loadTime < time.Second || *failTrials < 1 {
		return usagef("--clients, --claims, --rate, --load-rate and --failover-trials must be positive, --load-time at least 1s")
	}
	rep, err := bench.RunCluster(ctx, opts)
	if err != nil {
		return err
	}
	return out.write(stdout, rep, rep.Markdown())
}

// sizesFlag parses a comma-separated list of cluster sizes from least to 200.
func sizesFlag(name, value string, least int) ([]int, error) {
	var out []int
	for _, s := range strings.Split(value, ",") {
		var n int
		if _, err := fmt.Sscan(strings.TrimSpace(s), &n); err != nil || n < least || n > 200 {
			return nil, usagef("--%s: %q is not a size from %d to 200", name, s, least)
		}
		out = append(out, n)
	}
	return out, nil
}

func cmdBenchMicro(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("bench micro", "[flags] < go-test-bench-output",
		"Read the output of go test -bench -benchmem on stdin and print it as a markdown table.", stderr)
	out := addReportFlags(fs, "micro")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	rep, err := bench.ParseMicro(stdin)
	if err != nil {
		return err
	}
	return out.write(stdout, rep, rep.Markdown())
}
