//go:build linux

package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/anyguard/anyguard/bench/netns"
)

// RunThroughput builds the cli ── gw ── srv topology once and, for each
// repetition, runs every mode in turn (interleaved, so that drift in the
// machine's speed hits every mode alike) and every test against it, then
// reports the medians. The namespaces and processes are removed on return,
// also when ctx is cancelled or a step fails.
func RunThroughput(ctx context.Context, opts ThroughputOptions) (_ *ThroughputReport, err error) {
	if opts.WireguardGo == "" {
		return nil, errors.New("the stock wireguard-go binary is required (--wireguard-go PATH)")
	}
	if opts.Anyguard == "" {
		if opts.Anyguard, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if len(opts.Modes) == 0 {
		opts.Modes = AllModes
	}
	if len(opts.Tests) == 0 {
		opts.Tests = AllTests
	}
	opts.Reps = max(opts.Reps, 1)
	if opts.Duration <= 0 {
		opts.Duration = 10 * time.Second
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("needs root (network namespaces and TUN devices)")
	}
	netns.AddSbinToPath()
	netns.Sweep(nsPrefix, func(name string, err error) {
		fmt.Fprintf(opts.Progress, "removed stale namespace %s (err: %v)\n", name, err)
	})
	rep := &ThroughputReport{
		Machine:  DescribeMachine(),
		Duration: opts.Duration.String(),
		Reps:     opts.Reps,
		MaxReps:  max(opts.MaxReps, opts.Reps),
		Stock:    versionOf(opts.WireguardGo),
	}
	tp, err := netns.NewTopology(netns.TopologyOptions{Prefix: nsPrefix, SrvDefaultRoute: true, Dir: opts.Dir})
	if err != nil {
		return nil, fmt.Errorf("topology: %w", err)
	}
	defer func() { err = errors.Join(err, tp.Close()) }()
	h := &harness{opts: opts, tp: tp}
	if h.gwKeys, err = netns.GenerateKeyPair(); err != nil {
		return nil, err
	}
	if h.cliKeys, err = netns.GenerateKeyPair(); err != nil {
		return nil, err
	}

	for r := 1; r <= opts.Reps; r++ {
		if err := h.ceilings(ctx, &rep.Ceilings); err != nil {
			return nil, interrupted(ctx, err)
		}
		for _, mode := range opts.Modes {
			runs, err := h.runMode(ctx, mode, r, opts.Tests)
			if err != nil {
				return nil, interrupted(ctx, fmt.Errorf("%s, repetition %d: %w", mode, r, err))
			}
			rep.Runs = append(rep.Runs, runs...)
		}
	}
	// Further repetitions, only of what is still too wide to call, until
	// every ratio is called or MaxReps is reached.
	for r := opts.Reps + 1; r <= opts.MaxReps; r++ {
		todo := undecided(summarize(rep.Runs, opts.Modes, opts.Tests))
		if len(todo) == 0 {
			break
		}
		for _, mode := range opts.Modes {
			var tests []string
			for _, test := range opts.Tests {
				if slices.Contains(todo[test], mode) {
					tests = append(tests, test)
				}
			}
			if len(tests) == 0 {
				continue
			}
			runs, err := h.runMode(ctx, mode, r, tests)
			if err != nil {
				return nil, interrupted(ctx, fmt.Errorf("%s, repetition %d: %w", mode, r, err))
			}
			rep.Runs = append(rep.Runs, runs...)
		}
	}
	rep.Ceilings.VethTCP1Gbps = median(rep.Ceilings.vethTCP1)
	rep.Ceilings.VethTCP4Gbps = median(rep.Ceilings.vethTCP4)
	rep.Ceilings.Seal1420GBps = SealRate(1420, 300*time.Millisecond)
	rep.Ceilings.Seal65536GBps = SealRate(65536, 300*time.Millisecond)
	rep.Results = summarize(rep.Runs, opts.Modes, opts.Tests)
	return rep, nil
}

// interrupted replaces err, the symptom of a cancelled run (a killed
// iperf3), with the cancellation itself.
func interrupted(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("interrupted, namespaces removed: %w", ctx.Err())
	}
	return err
}

type harness struct {
	opts            ThroughputOptions
	tp              *netns.Topology
	gwKeys, cliKeys netns.KeyPair
}

// ceilings measures the raw veth between gw and srv (no tunnel).
func (h *harness) ceilings(ctx context.Context, c *Ceilings) error {
	for _, streams := range []int{1, 4} {
		r, err := netns.Iperf(ctx, h.tp.GW, netns.SrvAddr, h.opts.Duration, "-P", fmt.Sprint(streams), "-O", "1")
		if err != nil {
			return fmt.Errorf("raw veth: %w", err)
		}
		g := r.End.SumReceived.BitsPerSecond / 1e9
		if streams == 1 {
			c.vethTCP1 = append(c.vethTCP1, g)
		} else {
			c.vethTCP4 = append(c.vethTCP4, g)
		}
		fmt.Fprintf(h.opts.Progress, "veth          tcp%d  %6.2f Gbit/s\n", streams, g)
	}
	return nil
}

// runMode starts the gateway of mode and a fresh client, runs tests and
// stops both.
func (h *harness) runMode(ctx context.Context, mode string, rep int, tests []string) (_ []Run, err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	gw, err := h.startGateway(mode)
	if err != nil {
		return nil, fmt.Errorf("start gateway: %w", err)
	}
	defer gw.Stop(5 * time.Second)
	cli, err := h.startClient()
	if err != nil {
		return nil, fmt.Errorf("start client: %w", err)
	}
	defer cli.Stop(5 * time.Second)
	if err := h.waitPing(ctx); err != nil {
		return nil, fmt.Errorf("%w\n--- gateway log ---\n%s", err, gw.Log())
	}
	var runs []Run
	for _, test := range tests {
		r, err := h.measure(ctx, gw, mode, test)
		if err != nil {
			return nil, fmt.Errorf("%s: %w\n--- gateway log ---\n%s", test, err, gw.Log())
		}
		r.Rep = rep
		runs = append(runs, r)
		fmt.Fprintf(h.opts.Progress, "%-8s rep %d %-5s %6.2f Gbit/s %9.0f pkt/s  gw CPU %5.2f s/GB  all %5.2f s/GB\n",
			mode, rep, test, r.Gbps, r.PPS, perGB(r.GatewayCPU, r.Bytes), perGB(r.TotalCPU, r.Bytes))
	}
	return runs, nil
}

func (h *harness) startGateway(mode string) (*netns.Proc, error) {
	iface, err := netns.UniqueIfaceName("agb" + mode[:1])
	if err != nil {
		return nil, err
	}
	var daemon []string
	switch mode {
	case ModeStock:
		daemon = []string{h.opts.WireguardGo}
	case ModeInterface:
		daemon = []string{h.opts.Anyguard, "interface"}
	}
	if daemon != nil {
		return netns.StartUserspace(h.tp.GW, daemon, h.tp.Dir, netns.Interface{
			Iface: iface, Address: netns.GWAddr + "/16", MTU: 1420, ListenPort: netns.ClientPort,
			PrivateKey: h.gwKeys.Private, Peer: h.cliKeys.Public, AllowedIPs: []string{netns.ClientAddr + "/32"},
		})
	}
	return startAnyguard(h.opts.Anyguard, h.tp, mode, iface, h.opts.Queues, h.gwKeys.Private, h.cliKeys.Public)
}

// startAnyguard runs `anyguard run` in gw with a one-client configuration
// like the stock server's, and waits until it serves.
func startAnyguard(bin string, tp *netns.Topology, mode, iface string, queues int, priv, clientPub string) (*netns.Proc, error) {
	keyFile, err := netns.WriteSecret(tp.Dir, iface+".key", priv+"\n")
	if err != nil {
		return nil, err
	}
	config := fmt.Sprintf(`node: {name: bench, region: bench}
clients:
  private_key_file: %s
  listen_port: %d
  address: %s/16
  mtu: 1420
  peers:
    - name: bench
      public_key: %s
      allowed_ips: [%s/32]
egress:
  mode: %s
  tun_name: %s
  queues: %d
  prefixes: [10.1.0.0/16]
log: {level: warn}
`, keyFile, netns.ClientPort, netns.GWAddr, clientPub, netns.ClientAddr, mode, iface, queues)
	configFile, err := netns.WriteSecret(tp.Dir, iface+".yaml", config)
	if err != nil {
		return nil, err
	}
	p, err := netns.Start("anyguard-"+iface, filepath.Join(tp.Dir, iface+".log"), nil,
		tp.GW.Command(bin, "run", "--config", configFile)...)
	if err != nil {
		return nil, err
	}
	err = netns.WaitFor(p, 20*time.Second, "UAPI socket "+netns.UAPISocket(iface), func() bool {
		_, err := os.Stat(netns.UAPISocket(iface))
		return err == nil
	})
	if err == nil {
		err = netns.WaitUDPListening(tp.GW, p, netns.ClientPort, 5*time.Second)
	}
	if err != nil {
		p.Stop(5 * time.Second)
		return nil, fmt.Errorf("%w\n--- log ---\n%s", err, p.Log())
	}
	return p, nil
}

func (h *harness) startClient() (*netns.Proc, error) {
	iface, err := netns.UniqueIfaceName("agbc")
	if err != nil {
		return nil, err
	}
	return netns.StartUserspace(h.tp.Cli, []string{h.opts.WireguardGo}, h.tp.Dir, netns.Interface{
		Iface: iface, Address: netns.ClientAddr + "/32", MTU: 1420,
		PrivateKey: h.cliKeys.Private, Peer: h.gwKeys.Public,
		AllowedIPs: []string{"10.99.0.0/16", "10.1.0.0/16"}, Endpoint: netns.GatewayEndpoint(),
		Routes: []string{"10.99.0.0/16", "10.1.0.0/16"},
	})
}

// waitPing pings the server through the tunnel until it answers, which
// also completes the handshake before any measurement.
func (h *harness) waitPing(ctx context.Context) error {
	var out string
	var err error
	for range 20 {
		if err := ctx.Err(); err != nil {
			return err
		}
		out, err = h.tp.Cli.Exec(netns.CmdTimeout, "ping", "-n", "-c", "1", "-W", "1", netns.SrvAddr)
		if err == nil {
			return nil
		}
	}
	return fmt.Errorf("ping %s through the tunnel: %w: %s", netns.SrvAddr, err, out)
}

// measure runs one iperf3 test and the CPU time the gateway process and
// the whole machine spent on it.
func (h *harness) measure(ctx context.Context, gw *netns.Proc, mode, test string) (Run, error) {
	var args []string
	switch test {
	case TestTCP1:
		args = []string{"-P", "1", "-O", "1"}
	case TestTCP4:
		args = []string{"-P", "4", "-O", "1"}
	case TestTCP4Down:
		args = []string{"-R", "-P", "4", "-O", "1"}
	case TestUDP:
		args = []string{"-u", "-b", "0", "-l", fmt.Sprint(udpPayload)}
	default:
		return Run{}, fmt.Errorf("unknown test %q", test)
	}
	gw0, err := gw.CPUTime()
	if err != nil {
		return Run{}, err
	}
	ns0 := h.namespacesCPU()
	stopPerf := h.startPerf(gw, mode, test)
	res, err := netns.Iperf(ctx, h.tp.Cli, netns.SrvAddr, h.opts.Duration, args...)
	stopPerf()
	if err != nil {
		return Run{}, err
	}
	gw1, err := gw.CPUTime()
	if err != nil {
		return Run{}, err
	}
	ns1 := h.namespacesCPU()
	rx := res.End.SumReceived
	r := Run{
		Mode: mode, Test: test,
		Seconds:    rx.Seconds,
		Bytes:      rx.Bytes,
		Gbps:       rx.BitsPerSecond / 1e9,
		GatewayCPU: (gw1 - gw0).Seconds(),
		TotalCPU:   (ns1 - ns0 + res.CPU).Seconds(),
	}
	if test == TestUDP {
		// iperf3 3.12 puts the receiver's datagram counts in sum.
		got := res.End.Sum.Packets - res.End.Sum.LostPackets
		if rx.Seconds > 0 {
			r.PPS = float64(got) / rx.Seconds
		}
		r.LostPercent = res.End.Sum.LostPercent
	} else {
		r.PPS = float64(rx.Bytes) / tcpMSS / max(rx.Seconds, 1e-9)
		r.Retransmits = res.End.SumSent.Retransmits // the sender's, either way
	}
	return r, nil
}

// namespacesCPU sums the CPU time of every process in the topology's
// namespaces (gateway, client, iperf3 server): the machine's work for the
// tunnel without other load on the machine.
func (h *harness) namespacesCPU() time.Duration {
	var sum time.Duration
	for _, ns := range []*netns.NS{h.tp.Cli, h.tp.GW, h.tp.Srv} {
		for _, pid := range netns.Pids(ns.Name) {
			if d, err := netns.ProcessCPU(pid); err == nil {
				sum += d
			}
		}
	}
	return sum
}

// startPerf records the gateway's call graphs with perf(1) into
// PerfDir/<mode>-<test>.perf.data while a test runs, when PerfDir is set
// (the last repetition's recording stays). The returned function stops it.
func (h *harness) startPerf(gw *netns.Proc, mode, test string) func() {
	if h.opts.PerfDir == "" {
		return func() {}
	}
	out := filepath.Join(h.opts.PerfDir, mode+"-"+test+".perf.data")
	p, err := netns.Start("perf-"+mode, out+".log", nil,
		"perf", "record", "-F", "499", "-g", "-p", strconv.Itoa(gw.Pid()), "-o", out)
	if err != nil {
		fmt.Fprintf(h.opts.Progress, "perf record: %v\n", err)
		return func() {}
	}
	return func() {
		if err := p.Signal(os.Interrupt); err == nil {
			netns.WaitFor(nil, 10*time.Second, "perf to finish", func() bool { return !p.Alive() })
		}
		p.Stop(time.Second)
	}
}
