package bench

import (
	"bufio"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/anyguard/anyguard/bench/netns"
	"github.com/anyguard/anyguard/internal/wgclient"
	"github.com/anyguard/anyguard/wgkey"
)

// HandshakeOptions configure RunHandshakes.
type HandshakeOptions struct {
	Anyguard string // binary run as the child (default: this executable)
	// Command, when set, makes the child's command from the arguments after
	// "anyguard bench handshakes" (tests run their own binary).
	Command  func(ctx context.Context, args ...string) *exec.Cmd
	Targets  []string      // gateways, from AllHSTargets
	Clients  int           // configured clients; all but one are initiators
	Rates    []float64     // offered handshake attempts per second, one step each
	Duration time.Duration // of each step
	Senders  int           // goroutines that send initiations
	// EchoInterval is the period of the established session's echo
	// requests (one outstanding at a time, 1 s timeout).
	EchoInterval time.Duration
	Progress     io.Writer // one line per step; nil: none
	Dir          string    // the configuration file; "" a temporary directory
	// ProfileDir, when set, receives a CPU profile of each gateway child
	// (TARGET-CONTACT.pprof, or TARGET-first-RATE.pprof) covering all its
	// steps.
	ProfileDir string
	// Contacts lists the kinds of initiators to measure, from
	// AllHSContacts (default: HSContactMixed).
	Contacts []string
	// Repeat runs every step this many times (default 1), the targets
	// taking turns at each, so that ratios can be paired.
	Repeat int
}

// Kinds of initiators: what the responder knows of them when their
// initiations arrive.
const (
	// HSContactLive: every initiator completed a handshake with this very
	// gateway process before the steps (a warm-up), so each is a live
	// device peer, as clients re-handshaking every two minutes are.
	HSContactLive = "live"
	// HSContactFirst: each initiator offers one attempt only, to a gateway
	// process started afresh for each step, so every initiation is the
	// first the gateway sees from that client, as after a region failure.
	// A step ends early when every initiator has started its attempt.
	HSContactFirst = "first"
	// HSContactMixed: one gateway process for all steps, initiators round
	// robin: first contact until each initiator had its first attempt,
	// live peers after.
	HSContactMixed = "mixed"
)

// AllHSContacts lists the kinds of initiators.
var AllHSContacts = []string{HSContactLive, HSContactFirst, HSContactMixed}

// hsWarmRate is the rate of the live mode's warm-up: well below either
// gateway's capacity, so that it is not the warm-up that is measured.
const hsWarmRate = 1000

// HandshakeStep is one gateway under one offered rate (Offered 0: no
// storm, the established session alone).
type HandshakeStep struct {
	Target     string  `json:"target"`
	Contact    string  `json:"contact"`    // HSContactLive, HSContactFirst or HSContactMixed
	Repetition int     `json:"repetition"` // of Repeat, from 0
	Offered    float64 `json:"offered_per_s"`
	Seconds    float64 `json:"seconds"` // the storm; counts include a drain after it

	Attempts   uint64 `json:"attempts"`    // new handshake attempts started
	Sent       uint64 `json:"initiations"` // initiations sent, retries included
	Completed  uint64 `json:"completed"`   // attempts answered by their response
	Cookies    uint64 `json:"cookie_replies"`
	Retries    uint64 `json:"retries_with_mac2"`
	Superseded uint64 `json:"superseded"`     // unanswered after 5 s, when the client's next attempt began
	Stale      uint64 `json:"late_responses"` // responses to an attempt already given up
	Busy       uint64 `json:"not_offered"`    // every initiator had an attempt in flight
	Lost       uint64 `json:"not_completed"`

	OfferedPerSec   float64 `json:"attempts_per_s"` // the rate reached: Offered unless initiators ran out
	CompletedPerSec float64 `json:"completed_per_s"`
	CookiesPerSec   float64 `json:"cookie_replies_per_s"`
	// GatewayCPUSec is the gateway process's user+system CPU time over the
	// storm and its drain; GeneratorCPUSec the same for this process (the
	// initiators, the established client and its netstack).
	GatewayCPUSec   float64 `json:"gateway_cpu_s"`
	GatewayCores    float64 `json:"gateway_cores"` // GatewayCPUSec per second of the window
	GeneratorCPUSec float64 `json:"generator_cpu_s"`
	// PerCoreSecond is completed handshakes per second of gateway CPU.
	PerCoreSecond  float64 `json:"handshakes_per_core_s"`
	HandshakeP50Ms float64 `json:"handshake_p50_ms"`
	HandshakeP99Ms float64 `json:"handshake_p99_ms"`

	EchoSent  int     `json:"echo_sent"`
	EchoLost  int     `json:"echo_lost"`
	EchoP50Ms float64 `json:"echo_p50_ms"`
	EchoP99Ms float64 `json:"echo_p99_ms"`
	EchoMaxMs float64 `json:"echo_max_ms"`
}

// HandshakeReport is the result of RunHandshakes.
type HandshakeReport struct {
	Machine  Machine         `json:"machine"`
	Stock    string          `json:"stock"` // the wireguard-go module version
	Clients  int             `json:"clients"`
	Duration string          `json:"step_duration"`
	Senders  int             `json:"senders"`
	Steps    []HandshakeStep `json:"steps"`
	// X25519PerSec is X25519 Montgomery ladders (one scalar
	// multiplication) per CPU-second on one core.
	X25519PerSec float64 `json:"x25519_per_cpu_s"`
}

// X25519 per handshake of a wireguard-go responder. The protocol needs
// four: DH of the static key with the initiator's ephemeral, generation of
// the responder's ephemeral, and DH of that with the initiator's ephemeral
// and static keys. wireguard-go does seven, because the three DH go through
// golang.org/x/crypto/curve25519.X25519, which builds a crypto/ecdh private
// key and so derives its public key (one more full ladder) every call.
const (
	X25519PerHandshake         = 7
	X25519PerHandshakeProtocol = 4
)

// X25519Rate measures X25519 scalar multiplications on one core for about
// d, per CPU-second of the measuring thread where the platform tells
// (Linux), else per second of wall clock.
func X25519Rate(d time.Duration) float64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	x := ecdh.X25519()
	priv, err := x.GenerateKey(rand.Reader)
	if err != nil {
		panic(err)
	}
	pub := priv.PublicKey()
	cpu0, cpuErr := threadCPU()
	start := time.Now()
	n := 0
	for time.Since(start) < d {
		for range 16 {
			out, err := priv.ECDH(pub)
			if err != nil {
				panic(err) // never: a key's own public key is not low-order
			}
			if pub, err = x.NewPublicKey(out); err != nil {
				panic(err)
			}
			n++
		}
	}
	elapsed := time.Since(start)
	if cpu1, err := threadCPU(); err == nil && cpuErr == nil && cpu1 > cpu0 {
		elapsed = cpu1 - cpu0
	}
	return float64(n) / elapsed.Seconds()
}

// threadCPU is the CPU time of the calling OS thread so far, from
// /proc/thread-self/stat (clock ticks of 10 ms).
func threadCPU() (time.Duration, error) { return netns.StatCPU("/proc/thread-self/stat") }

// hsDrain is how long answers are still counted after a storm step, and
// hsSettle the pause before the next step (wireguard-go stays "under load"
// for 1 s after its handshake queue was last 1/8 full).
const (
	hsDrain  = time.Second
	hsSettle = 500 * time.Millisecond
)

// RunHandshakes measures how many WireGuard handshakes per second each
// target gateway completes from a storm of distinct initiators, what CPU
// that costs it, and what the storm does to an established session.
//
// Each gateway runs in a child process (HandshakeChild) with Clients
// configured clients, so its CPU time is read from /proc apart from the
// load generator's. This process holds every client's private key: client 0
// is a real wireguard-go client (internal/wgclient) that keeps an echo
// request outstanding through the gateway to a UDP echo service; the others
// are cheap initiators (handshake_noise.go) on sockets of their own, each
// from its own 127.x.y.z address. Each step offers Rates[i] new attempts per
// second for Duration, open loop, round robin over the initiators; an
// initiator that gets a cookie reply (the responder is under load) retries
// at once with mac2, as a wireguard-go client does at its next attempt.
func RunHandshakes(ctx context.Context, opts HandshakeOptions) (_ *HandshakeReport, err error) {
	if opts.Clients < 2 {
		return nil, errors.New("handshakes: need at least 2 clients")
	}
	for _, c := range opts.Contacts {
		if !slices.Contains(AllHSContacts, c) {
			return nil, fmt.Errorf("handshakes: unknown kind of initiators %q", c)
		}
	}
	if opts.Senders == 0 {
		opts.Senders = 2
	}
	if opts.EchoInterval == 0 {
		opts.EchoInterval = 10 * time.Millisecond
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Command == nil {
		if opts.Anyguard == "" {
			if opts.Anyguard, err = os.Executable(); err != nil {
				return nil, err
			}
		}
		bin := opts.Anyguard
		opts.Command = func(ctx context.Context, args ...string) *exec.Cmd {
			return exec.CommandContext(ctx, bin, append([]string{"bench", "handshakes"}, args...)...)
		}
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "anyguard-handshakes-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(opts.Dir)
	}
	gwKey, err := wgkey.Generate()
	if err != nil {
		return nil, err
	}
	privs := make([]wgkey.Key, opts.Clients)
	for i := range privs {
		if privs[i], err = wgkey.Generate(); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(opts.Dir, "handshakes.yaml")
	if err := writeHandshakeConfig(path, gwKey, privs); err != nil {
		return nil, err
	}
	rep := &HandshakeReport{
		Machine: DescribeMachine(), Stock: wireguardGoVersion(), Clients: opts.Clients,
		Duration: opts.Duration.String(), Senders: opts.Senders,
	}
	rep.X25519PerSec = X25519Rate(2 * time.Second)
	contacts := opts.Contacts
	if len(contacts) == 0 {
		contacts = []string{HSContactMixed}
	}
	for _, contact := range contacts {
		var steps []HandshakeStep
		if contact == HSContactFirst {
			steps, err = runHandshakeFirst(ctx, opts, path, gwKey, privs)
		} else {
			steps, err = runHandshakeInterleaved(ctx, opts, contact, path, gwKey, privs)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", contact, err)
		}
		rep.Steps = append(rep.Steps, steps...)
	}
	return rep, nil
}

// hsOrder is the order of the targets in repetition rep: forwards, then
// backwards (ABBA), so that neither always runs first after a pause.
func hsOrder(targets []string, rep int) []string {
	if rep%2 == 0 {
		return targets
	}
	r := slices.Clone(targets)
	slices.Reverse(r)
	return r
}

// runHandshakeInterleaved runs contact (live or mixed) against one child
// per target, all started first: the idle step of each, then each rate
// in turn on each target, Repeat times, so that the steps compared with
// each other ran seconds apart on a machine whose load changes.
func runHandshakeInterleaved(ctx context.Context, opts HandshakeOptions, contact, path string, gwKey wgkey.Key, privs []wgkey.Key) (steps []HandshakeStep, err error) {
	sessions := map[string]*hsSession{}
	defer func() {
		for _, h := range sessions {
			if cerr := h.close(); cerr != nil && err == nil {
				err = cerr
			}
		}
	}()
	for _, target := range opts.Targets {
		h, err := startHSSession(ctx, opts, hsRun{target: target, contact: contact, profile: target + "-" + contact}, path, gwKey, privs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", target, err)
		}
		sessions[target] = h
	}
	for _, target := range opts.Targets {
		steps = append(steps, sessions[target].step(ctx, opts, 0))
	}
	for rep := range max(1, opts.Repeat) {
		for _, rate := range opts.Rates {
			for _, target := range hsOrder(opts.Targets, rep) {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				p := sessions[target].step(ctx, opts, rate)
				p.Repetition = rep
				steps = append(steps, p)
			}
		}
	}
	return steps, nil
}

// runHandshakeFirst runs first contact: a fresh child per target, rate and
// repetition, the targets in turn.
func runHandshakeFirst(ctx context.Context, opts HandshakeOptions, path string, gwKey wgkey.Key, privs []wgkey.Key) (steps []HandshakeStep, err error) {
	for rep := range max(1, opts.Repeat) {
		for _, rate := range opts.Rates {
			for _, target := range hsOrder(opts.Targets, rep) {
				run := hsRun{target: target, contact: HSContactFirst, rates: []float64{rate},
					profile: fmt.Sprintf("%s-first-%.0f-%d", target, rate, rep)}
				st, err := runHandshakeTarget(ctx, opts, run, path, gwKey, privs)
				if err != nil {
					return nil, fmt.Errorf("%s: %w", target, err)
				}
				for _, p := range st {
					p.Repetition = rep
					steps = append(steps, p)
				}
			}
		}
	}
	return steps, nil
}

// hsRun is one gateway child process and the steps run against it.
type hsRun struct {
	target, contact string
	rates           []float64 // 0: the established session alone
	profile         string    // the CPU profile's name, without .pprof
}

func runHandshakeTarget(ctx context.Context, opts HandshakeOptions, run hsRun, path string, gwKey wgkey.Key, privs []wgkey.Key) (_ []HandshakeStep, err error) {
	h, err := startHSSession(ctx, opts, run, path, gwKey, privs)
	if err != nil {
		return nil, err
	}
	defer func() {
		if cerr := h.close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	var steps []HandshakeStep
	for _, rate := range run.rates {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		steps = append(steps, h.step(ctx, opts, rate))
	}
	return steps, nil
}

// hsSession is one gateway child process with its established client and
// its storm of initiators, ready for steps.
type hsSession struct {
	run     hsRun
	ctx     context.Context
	cancel  context.CancelFunc
	cmd     *exec.Cmd
	echo    *echoProbe
	storm   *storm
	cleanup []func() // in reverse order
}

// startHSSession starts the child for run.target, establishes the echo
// session and the storm's sockets, and (HSContactLive) warms every
// initiator up.
func startHSSession(ctx context.Context, opts HandshakeOptions, run hsRun, path string, gwKey wgkey.Key, privs []wgkey.Key) (_ *hsSession, err error) {
	h := &hsSession{run: run, echo: &echoProbe{}}
	h.ctx, h.cancel = context.WithCancel(ctx)
	h.cleanup = append(h.cleanup, h.cancel)
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	target := run.target
	args := []string{"--child", target, "--child-config", path}
	if opts.ProfileDir != "" {
		args = append(args, "--child-profile", filepath.Join(opts.ProfileDir, run.profile+".pprof"))
	}
	cmd := opts.Command(h.ctx, args...)
	cmd.Stderr = opts.Progress
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	h.cmd = cmd
	h.cleanup = append(h.cleanup, func() { stdin.Close() })
	hello, err := readHello(stdout, 60*time.Second)
	if err != nil {
		return nil, err
	}
	gw := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), hello.Port)

	client, err := wgclient.New(wgclient.Config{
		PrivateKey: privs[0],
		Address:    hsClientAddress(0),
		Peer:       gwKey.Public(),
		Endpoint:   gw,
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
	})
	if err != nil {
		return nil, err
	}
	h.cleanup = append(h.cleanup, func() { client.Close() })
	uc, err := client.DialUDPAddrPort(netip.AddrPort{}, hello.Echo)
	if err != nil {
		return nil, err
	}
	h.cleanup = append(h.cleanup, func() { uc.Close() })
	var wg sync.WaitGroup
	echoCtx, stopEcho := context.WithCancel(h.ctx)
	h.cleanup = append(h.cleanup, wg.Wait, stopEcho)
	wg.Add(1)
	go func() {
		defer wg.Done()
		h.echo.run(echoCtx, uc, opts.EchoInterval)
	}()
	if err := h.echo.waitFirst(h.ctx, 15*time.Second); err != nil {
		return nil, fmt.Errorf("established session: %w", err)
	}

	if h.storm, err = newStorm(gwKey.Public(), gw, privs[1:]); err != nil {
		return nil, err
	}
	h.cleanup = append(h.cleanup, h.storm.close)
	if run.contact == HSContactLive {
		if n := h.storm.warm(h.ctx, hsWarmRate, opts.Senders); n > 0 {
			fmt.Fprintf(opts.Progress, "%-8s warm-up: %d of %d initiators never completed a handshake\n", target, n, len(h.storm.clients))
		}
		sleepCtx(h.ctx, hsSettle)
	}
	return h, nil
}

// close stops the session and waits for the child.
func (h *hsSession) close() error {
	for i := len(h.cleanup) - 1; i >= 0; i-- {
		if i == 0 && h.cmd != nil {
			// Everything but the context is closed: the child sees its
			// stdin end and exits.
			err := h.cmd.Wait()
			ctxErr := h.ctx.Err()
			h.cleanup[0]()
			if err != nil && ctxErr == nil {
				return fmt.Errorf("gateway child: %w", err)
			}
			return nil
		}
		h.cleanup[i]()
	}
	return nil
}

// step offers rate (0: none, the established session alone) for
// opts.Duration and measures it.
func (h *hsSession) step(ctx context.Context, opts HandshakeOptions, rate float64) HandshakeStep {
	s, target, pid := h.storm, h.run.target, h.cmd.Process.Pid
	once := h.run.contact == HSContactFirst
	s.forget()
	s.stats()
	h.echo.take()
	gw0, _ := netns.ProcessCPU(pid)
	me0, _ := netns.ProcessCPU(os.Getpid())
	t0 := time.Now()
	if rate > 0 {
		s.offerTo(ctx, s.clients, rate, opts.Duration, opts.Senders, once)
	} else {
		sleepCtx(ctx, opts.Duration)
	}
	stormTime := time.Since(t0)
	rtts, sent, lost := h.echo.take()
	if rate > 0 {
		sleepCtx(ctx, hsDrain)
	}
	window := time.Since(t0)
	gw1, _ := netns.ProcessCPU(pid)
	me1, _ := netns.ProcessCPU(os.Getpid())
	st := s.stats()
	p := HandshakeStep{
		Target: target, Contact: h.run.contact, Offered: rate, Seconds: stormTime.Seconds(),
		Attempts: st.Attempts, Sent: st.Sent, Completed: st.Completed, Cookies: st.Cookies,
		Retries: st.Retries, Superseded: st.Superseded, Stale: st.Stale, Busy: st.Busy, Lost: st.Attempts - min(st.Attempts, st.Completed),
		CompletedPerSec: float64(st.Completed) / stormTime.Seconds(),
		OfferedPerSec:   float64(st.Attempts) / stormTime.Seconds(),
		CookiesPerSec:   float64(st.Cookies) / stormTime.Seconds(),
		GatewayCPUSec:   (gw1 - gw0).Seconds(),
		GatewayCores:    (gw1 - gw0).Seconds() / window.Seconds(),
		GeneratorCPUSec: (me1 - me0).Seconds(),
		HandshakeP50Ms:  ms(quantile(st.Latency, 0.5)),
		HandshakeP99Ms:  ms(quantile(st.Latency, 0.99)),
		EchoSent:        sent, EchoLost: lost,
		EchoP50Ms: ms(quantile(rtts, 0.5)), EchoP99Ms: ms(quantile(rtts, 0.99)), EchoMaxMs: ms(quantile(rtts, 1)),
	}
	if p.GatewayCPUSec > 0 && st.Completed > 0 {
		p.PerCoreSecond = float64(st.Completed) / p.GatewayCPUSec
	}
	fmt.Fprintf(opts.Progress, "%-8s %-5s offered %6.0f/s (%6.0f/s): completed %7.0f/s, cookies %6.0f/s, gateway %.2f cores, %5.0f handshakes per core-s, session echo p50 %.1f ms p99 %.1f ms lost %d/%d\n",
		target, h.run.contact, rate, p.OfferedPerSec, p.CompletedPerSec, p.CookiesPerSec, p.GatewayCores, p.PerCoreSecond, p.EchoP50Ms, p.EchoP99Ms, lost, sent)
	sleepCtx(ctx, hsSettle)
	return p
}

// readHello reads the child's first line.
func readHello(r io.Reader, timeout time.Duration) (hsChildHello, error) {
	type result struct {
		h   hsChildHello
		err error
	}
	ch := make(chan result, 1)
	go func() {
		var res result
		line, err := bufio.NewReader(r).ReadBytes('\n')
		if err != nil {
			res.err = fmt.Errorf("gateway child: %w", err)
		} else {
			res.err = json.Unmarshal(line, &res.h)
		}
		ch <- res
		io.Copy(io.Discard, r)
	}()
	select {
	case res := <-ch:
		return res.h, res.err
	case <-time.After(timeout):
		return hsChildHello{}, errors.New("gateway child did not start in time")
	}
}

// hsClientAddress is client i's tunnel address (the configuration gives
// the gateway 10.64.0.1/10 and client i 10.64.0.2+i).
func hsClientAddress(i int) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], binary.BigEndian.Uint32([]byte{10, 64, 0, 2})+uint32(i))
	return netip.AddrFrom4(b)
}

// writeHandshakeConfig writes a netstack-mode gateway with one peer per
// private key in privs, serving 10.1.0.0/16 (the echo service).
func writeHandshakeConfig(path string, gwKey wgkey.Key, privs []wgkey.Key) error {
	var b strings.Builder
	fmt.Fprintf(&b, `node: {name: handshakes, region: bench}
clients:
  private_key: %s
  listen_port: 0
  address: 10.64.0.1/10
  uapi: false
  peers:
`, gwKey)
	for i, k := range privs {
		fmt.Fprintf(&b, "    - {name: c%d, public_key: %s, allowed_ips: [%s/32]}\n", i, k.Public(), hsClientAddress(i))
	}
	b.WriteString(`egress:
  mode: netstack
  prefixes: [10.1.0.0/16]
health: {listen: "127.0.0.1:0", tcp_listen: "off"}
log: {level: error}
`)
	return os.WriteFile(path, []byte(b.String()), 0o600)
}

// echoProbe keeps one UDP echo request outstanding through the tunnel and
// records round trips; a request unanswered after 1 s is lost.
type echoProbe struct {
	mu         sync.Mutex
	rtts       []time.Duration
	sent, lost int
	first      chan struct{}
	firstOnce  sync.Once
}

func (e *echoProbe) run(ctx context.Context, c net.Conn, interval time.Duration) {
	e.init()
	buf := make([]byte, 64)
	var seq uint64
	for ctx.Err() == nil {
		seq++
		t0 := time.Now()
		var req [8]byte
		binary.BigEndian.PutUint64(req[:], seq)
		ok := false
		if _, err := c.Write(req[:]); err == nil {
			c.SetReadDeadline(t0.Add(time.Second))
			for {
				n, err := c.Read(buf)
				if err != nil {
					break
				}
				if n == 8 && binary.BigEndian.Uint64(buf) == seq {
					ok = true
					break
				}
			}
		}
		rtt := time.Since(t0)
		e.mu.Lock()
		e.sent++
		if ok {
			e.rtts = append(e.rtts, rtt)
			e.firstOnce.Do(func() { close(e.first) })
		} else {
			e.lost++
		}
		e.mu.Unlock()
		sleepCtx(ctx, time.Until(t0.Add(interval)))
	}
}

func (e *echoProbe) init() {
	e.mu.Lock()
	if e.first == nil {
		e.first = make(chan struct{})
	}
	e.mu.Unlock()
}

// waitFirst waits until one echo came back.
func (e *echoProbe) waitFirst(ctx context.Context, timeout time.Duration) error {
	e.init()
	select {
	case <-e.first:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(timeout):
		return fmt.Errorf("no echo reply within %s", timeout)
	}
}

// take returns the round trips and counts since the last call and resets
// them.
func (e *echoProbe) take() (rtts []time.Duration, sent, lost int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	rtts, sent, lost = e.rtts, e.sent, e.lost
	e.rtts, e.sent, e.lost = nil, 0, 0
	return rtts, sent, lost
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// wireguardGoVersion is the version of the wireguard-go module built in.
func wireguardGoVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, m := range bi.Deps {
			if m.Path == "golang.zx2c4.com/wireguard" {
				return "wireguard-go " + m.Version
			}
		}
	}
	return "wireguard-go"
}

// Markdown renders the handshake report.
func (r *HandshakeReport) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Handshake storm (`anyguard bench handshakes`), %s, %s, %d cores, %s; baseline %s (stock device, same key and peers).\n",
		m.Date[:10], m.CPU, m.Cores, m.GoVersion, r.Stock)
	fmt.Fprintf(&b, "%d configured clients; each gateway in a child process of its own; %s per step, attempts offered open loop by %d sender goroutines\n",
		r.Clients, r.Duration, r.Senders)
	fmt.Fprintf(&b, "from %d initiators, one socket and 127.x.y.z address each; one more client keeps an echo request outstanding through the gateway.\n\n", r.Clients-1)
	b.WriteString("| gateway | initiators | offered/s | completed/s | cookie replies/s | not completed | gateway CPU | handshakes per core-second | × stock | handshake p50 / p99 | session echo p50 / p99 / max | echo lost |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Steps {
		name := nameOr(hsTargetNames, p.Target)
		echo := fmt.Sprintf("%.1f / %.1f / %.0f ms", p.EchoP50Ms, p.EchoP99Ms, p.EchoMaxMs)
		echoLost := fmt.Sprintf("%d/%d", p.EchoLost, p.EchoSent)
		if p.Offered == 0 {
			fmt.Fprintf(&b, "| %s | %s | none | | | | %.2f cores | | | | %s | %s |\n", name, p.Contact, p.GatewayCores, echo, echoLost)
			continue
		}
		offered := fmt.Sprintf("%.0f", p.Offered)
		if p.OfferedPerSec < 0.95*p.Offered {
			offered = fmt.Sprintf("%.0f (reached %.0f)", p.Offered, p.OfferedPerSec)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %.0f | %.1f %% | %.2f cores | %.0f | %s | %.1f / %.0f ms | %s | %s |\n",
			name, p.Contact, offered, p.CompletedPerSec, p.CookiesPerSec, 100*float64(p.Lost)/float64(max(1, p.Attempts)),
			p.GatewayCores, p.PerCoreSecond, times(r.ratio(p)), p.HandshakeP50Ms, p.HandshakeP99Ms, echo, echoLost)
	}
	if sum := r.ratioSummary(); sum != "" {
		b.WriteString("\n" + sum)
	}
	fmt.Fprintf(&b, "\nCeiling: one core here does %.0f X25519 per CPU-second. A wireguard-go responder does %d per handshake (the protocol needs %d;\n",
		r.X25519PerSec, X25519PerHandshake, X25519PerHandshakeProtocol)
	fmt.Fprintf(&b, "x/crypto's curve25519.X25519 also derives an unused public key on each of its three DH), so at most %.0f handshakes per\n",
		r.X25519PerSec/X25519PerHandshake)
	fmt.Fprintf(&b, "core-second (%.0f with the protocol's %d) ", r.X25519PerSec/X25519PerHandshakeProtocol, X25519PerHandshakeProtocol)
	b.WriteString("before any other work. The gateway adds nothing to that for a live peer (its initiation from the endpoint it was\n")
	b.WriteString("last read at goes to wireguard-go unread) and, for a first contact, one ladder to read the initiation, one for the\n")
	b.WriteString("client's static-static secret, and wireguard-go's two for the new peer (NewPeer's precomputation, through x/crypto).\n")
	b.WriteString("Initiators: live, every one completed a handshake with this gateway process before the steps; first, a fresh gateway\n")
	b.WriteString("process per step and one attempt per initiator (the step ends when each has made it); mixed, one process, round robin.\n")
	b.WriteString("Completed: attempts answered by a response to their latest initiation (type, size and receiver index;\n")
	b.WriteString("the test decrypts them in full), counted until 1 s after the step. Handshakes per core-second: completed ÷ the gateway\n")
	b.WriteString("process's CPU seconds (/proc, user + system) over the step and that second. × stock: the same ratio against stock at the\n")
	b.WriteString("same offered rate. Cookie replies: answers the responder sends instead of a handshake while it is under load; the\n")
	b.WriteString("initiator retries at once with mac2 (a wireguard-go client would wait for its next retransmission). An initiator waits 5 s\n")
	b.WriteString("for an answer before it starts again. Session echo: a wireguard-go client's UDP echo through the gateway, one outstanding.\n")
	return b.String()
}

// ratioSummary renders, per kind of initiators and offered rate, the
// gateway's handshakes per core-second over stock's, each repetition
// paired with stock's in the same repetition: median, lowest and highest.
func (r *HandshakeReport) ratioSummary() string {
	type key struct {
		contact string
		offered float64
	}
	var order []key
	ratios := map[key][]float64{}
	for _, p := range r.Steps {
		if p.Target == HSStock || p.Offered == 0 {
			continue
		}
		x := r.ratio(p)
		if x == 0 {
			continue
		}
		k := key{p.Contact, p.Offered}
		if _, ok := ratios[k]; !ok {
			order = append(order, k)
		}
		ratios[k] = append(ratios[k], x)
	}
	if len(order) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString("| initiators | offered/s | gateway × stock, handshakes per core-second: median (lowest–highest) | pairs |\n|---|---:|---:|---:|\n")
	for _, k := range order {
		xs := ratios[k]
		slices.Sort(xs)
		med := xs[len(xs)/2]
		if len(xs)%2 == 0 {
			med = (xs[len(xs)/2-1] + med) / 2
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.2f× (%.2f–%.2f) | %d |\n", k.contact, k.offered, med, xs[0], xs[len(xs)-1], len(xs))
	}
	return b.String()
}

var hsTargetNames = map[string]string{
	HSStock:   "stock wireguard-go",
	HSGateway: "anyguard gateway (netstack, no cluster)",
}

// ratio is p's handshakes per core-second over stock's at the same offered
// rate (0 when there is none).
func (r *HandshakeReport) ratio(p HandshakeStep) float64 {
	if p.Target == HSStock {
		return 0
	}
	for _, q := range r.Steps {
		if q.Target == HSStock && q.Contact == p.Contact && q.Repetition == p.Repetition && q.Offered == p.Offered && q.PerCoreSecond > 0 {
			return p.PerCoreSecond / q.PerCoreSecond
		}
	}
	return 0
}
