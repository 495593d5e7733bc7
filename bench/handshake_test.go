package bench

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	wgdevice "golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun/netstack"

	"github.com/anyguard/anyguard/wgkey"
)

// TestInitiatorAcceptedByWireGuardGo sends the storm's initiations to a
// real wireguard-go device and completes each handshake from the responses:
// the device accepts them (it answers) and the answers decrypt.
func TestInitiatorAcceptedByWireGuardGo(t *testing.T) {
	srvKey, _ := wgkey.Generate()
	clientKeys := make([]wgkey.Key, 3)
	conf := fmt.Sprintf("private_key=%s\nlisten_port=0\n", srvKey.Hex())
	for i := range clientKeys {
		clientKeys[i], _ = wgkey.Generate()
		conf += fmt.Sprintf("public_key=%s\nallowed_ip=10.64.0.%d/32\n", clientKeys[i].Public().Hex(), i+2)
	}
	tdev, _, err := netstack.CreateNetTUN([]netip.Addr{netip.MustParseAddr("10.64.0.1")}, nil, 1420)
	if err != nil {
		t.Fatal(err)
	}
	dev := wgdevice.NewDevice(tdev, conn.NewDefaultBind(), wgdevice.NewLogger(wgdevice.LogLevelSilent, ""))
	defer dev.Close()
	if err := dev.IpcSet(conf); err != nil {
		t.Fatal(err)
	}
	if err := dev.Up(); err != nil {
		t.Fatal(err)
	}
	port, err := ipcListenPort(dev)
	if err != nil {
		t.Fatal(err)
	}
	gw := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port)

	resp := newHSResponder(srvKey.Public())
	for i, k := range clientKeys {
		in, err := newHSInitiator(resp, k)
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 1, 0, byte(i+1))})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// Twice per client: the second attempt reuses the ephemeral key
		// and needs a later timestamp (and 20 ms: wireguard-go's flood limit).
		for attempt := range 2 {
			if attempt > 0 {
				time.Sleep(25 * time.Millisecond)
			}
			sender := uint32(i<<8 | attempt)
			var msg [hsSizeInitiation]byte
			h := in.initiation(&msg, sender, time.Now(), nil)
			if _, err := c.WriteToUDPAddrPort(msg[:], gw); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 256)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatalf("client %d attempt %d: no response: %v", i, attempt, err)
			}
			if err := in.verifyResponse(buf[:n], sender, h); err != nil {
				t.Fatalf("client %d attempt %d: %v (type %d, %d bytes)", i, attempt, err, buf[0], n)
			}
		}
	}
}

// TestInitiatorCookie answers an initiation with a cookie reply made by
// wireguard-go's own CookieChecker, and checks that the initiator opens it
// and that the mac2 of its next initiation is what the checker accepts.
func TestInitiatorCookie(t *testing.T) {
	srvKey, _ := wgkey.Generate()
	cliKey, _ := wgkey.Generate()
	var checker wgdevice.CookieChecker
	checker.Init(wgdevice.NoisePublicKey(srvKey.Public()))
	resp := newHSResponder(srvKey.Public())
	in, err := newHSInitiator(resp, cliKey)
	if err != nil {
		t.Fatal(err)
	}
	var msg [hsSizeInitiation]byte
	in.initiation(&msg, 7, time.Now(), nil)
	if !checker.CheckMAC1(msg[:]) {
		t.Fatal("mac1 refused")
	}
	src, _ := netip.MustParseAddrPort("127.1.0.1:4000").MarshalBinary()
	if checker.CheckMAC2(msg[:], src) {
		t.Fatal("mac2 accepted without a cookie")
	}
	reply, err := checker.CreateReply(msg[:], 7, src)
	if err != nil {
		t.Fatal(err)
	}
	wire := make([]byte, hsSizeCookie)
	binary.LittleEndian.PutUint32(wire[0:], reply.Type)
	binary.LittleEndian.PutUint32(wire[4:], reply.Receiver)
	copy(wire[8:], reply.Nonce[:])
	copy(wire[32:], reply.Cookie[:])
	cookie, err := resp.openCookie(wire, msg[hsInitMAC1:hsInitMAC2])
	if err != nil {
		t.Fatal(err)
	}
	in.initiation(&msg, 8, time.Now(), &cookie)
	if !checker.CheckMAC1(msg[:]) || !checker.CheckMAC2(msg[:], src) {
		t.Fatal("initiation with the cookie's mac2 refused")
	}
	if _, err := resp.openCookie(wire, make([]byte, 16)); err == nil {
		t.Fatal("cookie opened against the wrong mac1")
	}
}

// hsChildEnv makes the test binary a handshake benchmark child (TestMain).
const hsChildEnv = "ANYGUARD_BENCH_HS_CHILD"

// TestRunHandshakes runs the whole benchmark small, against both gateways
// in child processes (this test binary, re-executed), without timing
// assertions: every step ran, handshakes completed, the session answered.
func TestRunHandshakes(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two gateways in child processes")
	}
	var progress strings.Builder
	rep, err := RunHandshakes(context.Background(), HandshakeOptions{
		Command:  testChild(t),
		Targets:  AllHSTargets,
		Clients:  30,
		Rates:    []float64{100},
		Duration: time.Second,
		Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	if len(rep.Steps) != 4 {
		t.Fatalf("%d steps, want 4", len(rep.Steps))
	}
	for _, p := range rep.Steps {
		if p.EchoSent == 0 || p.EchoSent == p.EchoLost {
			t.Errorf("%s at %.0f/s: the established session did not answer (%d/%d lost)", p.Target, p.Offered, p.EchoLost, p.EchoSent)
		}
		if p.Offered > 0 && p.Completed == 0 {
			t.Errorf("%s at %.0f/s: no handshake completed: %+v", p.Target, p.Offered, p)
		}
	}
	md := rep.Markdown()
	for _, want := range []string{"| stock wireguard-go | mixed | 100 |", "| anyguard gateway (netstack, no cluster) | mixed | 100 |", "handshakes per core-second"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
}

// TestRunHandshakesContacts runs the live and first-contact modes small:
// live warms every initiator up first, so the step's attempts all
// complete; first makes at most one attempt per initiator, so the step
// ends as soon as each has made it.
func TestRunHandshakesContacts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts four gateways in child processes")
	}
	var progress strings.Builder
	const clients = 30
	rep, err := RunHandshakes(context.Background(), HandshakeOptions{
		Command:  testChild(t),
		Targets:  AllHSTargets,
		Clients:  clients,
		Rates:    []float64{200},
		Duration: 2 * time.Second,
		Progress: &progress,
		Contacts: []string{HSContactLive, HSContactFirst},
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	kinds := map[string]int{}
	for _, p := range rep.Steps {
		kinds[p.Contact]++
		if p.Offered == 0 {
			continue
		}
		switch p.Contact {
		case HSContactLive:
			if p.Completed == 0 || p.Attempts < 100 {
				t.Errorf("%s live: %+v", p.Target, p)
			}
		case HSContactFirst:
			if p.Attempts != clients-1 || p.Seconds > 1 {
				t.Errorf("%s first: %d attempts in %.2f s, want %d (one per initiator) well within the step", p.Target, p.Attempts, p.Seconds, clients-1)
			}
			if p.Completed == 0 {
				t.Errorf("%s first: none completed: %+v", p.Target, p)
			}
		}
	}
	// live: the idle step and the storm per target; first: the storm.
	if kinds[HSContactLive] != 4 || kinds[HSContactFirst] != 2 {
		t.Fatalf("steps by kind: %v\n%s", kinds, progress.String())
	}
	if _, err := RunHandshakes(context.Background(), HandshakeOptions{
		Command: testChild(t), Targets: AllHSTargets, Clients: clients, Rates: []float64{100},
		Duration: time.Second, Contacts: []string{"warm"},
	}); err == nil || !strings.Contains(err.Error(), `unknown kind of initiators "warm"`) {
		t.Fatalf("unknown contact: %v", err)
	}
}

// TestHandshakeOverload: offered more initiations than it can answer, the
// gateway keeps completing handshakes at a rate comparable with stock's.
// Under load it demands cookies itself; if the device behind it ever got
// loaded too, the two cookie secrets would refuse each other's clients and
// almost nothing would complete (0.09× stock when that happened).
func TestHandshakeOverload(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two gateways in child processes and saturates the CPU")
	}
	var progress strings.Builder
	rep, err := RunHandshakes(context.Background(), HandshakeOptions{
		Command:  testChild(t),
		Targets:  AllHSTargets,
		Clients:  1000,
		Rates:    []float64{6000},
		Duration: 2 * time.Second,
		Progress: &progress,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, progress.String())
	}
	completed := map[string]float64{}
	for _, p := range rep.Steps {
		if p.Offered > 0 {
			completed[p.Target] = p.CompletedPerSec
		}
	}
	t.Logf("%s", progress.String())
	stock, gw := completed[AllHSTargets[0]], completed[AllHSTargets[1]]
	if stock == 0 || gw < stock/3 {
		t.Fatalf("overloaded: gateway completed %.0f/s, stock %.0f/s; want at least a third of stock", gw, stock)
	}
}

// testChild starts this test binary as a benchmark child process.
func testChild(t *testing.T) func(ctx context.Context, args ...string) *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return func(ctx context.Context, args ...string) *exec.Cmd {
		cmd := exec.CommandContext(ctx, exe, "-test.run=^$")
		cmd.Env = append(os.Environ(), hsChildEnv+"="+strings.Join(args, "\n"))
		return cmd
	}
}

func TestMain(m *testing.M) {
	if args := os.Getenv(hsChildEnv); args != "" {
		a := strings.Split(args, "\n")
		var kind, config, profile string
		for i := 0; i+1 < len(a); i += 2 {
			switch a[i] {
			case "--child":
				kind = a[i+1]
			case "--child-config":
				config = a[i+1]
			case "--child-profile":
				profile = a[i+1]
			}
		}
		if err := HandshakeChild(kind, config, profile, os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestHandshakeRatioSummary: each gateway step is paired with stock's of
// the same kind, rate and repetition; the median of an even count is the
// mean of the middle two.
func TestHandshakeRatioSummary(t *testing.T) {
	r := &HandshakeReport{}
	add := func(target, contact string, rep int, perCore float64) {
		r.Steps = append(r.Steps, HandshakeStep{Target: target, Contact: contact, Repetition: rep, Offered: 1000, PerCoreSecond: perCore})
	}
	for rep, pair := range [][2]float64{{1000, 900}, {1000, 1100}, {2000, 1600}, {500, 600}} {
		add(HSStock, HSContactLive, rep, pair[0])
		add(HSGateway, HSContactLive, rep, pair[1])
	}
	add(HSStock, HSContactFirst, 0, 1000)
	add(HSGateway, HSContactFirst, 0, 700)
	got := r.ratioSummary()
	for _, want := range []string{
		"| live | 1000 | 1.00× (0.80–1.20) | 4 |", // 0.8, 0.9, 1.1, 1.2
		"| first | 1000 | 0.70× (0.70–0.70) | 1 |",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("summary lacks %q:\n%s", want, got)
		}
	}
	if (&HandshakeReport{}).ratioSummary() != "" {
		t.Error("a report without pairs has a summary")
	}
}
