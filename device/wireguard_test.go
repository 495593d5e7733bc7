package device

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anyguard/anyguard/wgkey"
)

func TestParseUAPIGet(t *testing.T) {
	k := wgkey.Key{0: 1, 31: 2}
	good := "private_key=" + strings.Repeat("00", 32) + "\nlisten_port=51820\n" +
		"public_key=" + k.Hex() + "\nendpoint=[2001:db8::1]:51820\nlast_handshake_time_sec=1700000000\n" +
		"last_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\nallowed_ip=10.0.0.2/32\nallowed_ip=fd00::2/128\n" +
		"public_key=" + strings.Repeat("ab", 32) + "\nlast_handshake_time_sec=0\nlast_handshake_time_nsec=0\nerrno=0\n\n"
	got, err := parseUAPIGet(good)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("%d peers, want 2: %+v", len(got), got)
	}
	p := got[0]
	if p.PublicKey != k || p.Endpoint != netip.MustParseAddrPort("[2001:db8::1]:51820") || p.TxBytes != 10 || p.RxBytes != 20 ||
		!p.LastHandshake.Equal(time.Unix(1700000000, 5)) || len(p.AllowedIPs) != 2 || p.AllowedIPs[1] != netip.MustParsePrefix("fd00::2/128") {
		t.Errorf("first peer %+v", p)
	}
	if !got[1].LastHandshake.IsZero() || got[1].Endpoint.IsValid() {
		t.Errorf("second peer %+v", got[1])
	}

	peer := "public_key=" + k.Hex() + "\n"
	for _, tc := range []struct{ name, text, want string }{
		{"short key", "public_key=abcd\n", "line 1 (public_key)"},
		{"hex key with a non-hex digit", "public_key=" + strings.Repeat("0g", 32) + "\n", "line 1 (public_key)"},
		{"endpoint without a port", peer + "endpoint=10.0.0.1\n", "line 2 (endpoint)"},
		{"endpoint not an address", peer + "endpoint=example.com:1\n", "line 2 (endpoint)"},
		{"allowed_ip not a prefix", peer + "allowed_ip=10.0.0.300/32\n", "line 2 (allowed_ip)"},
		{"rx_bytes negative", peer + "rx_bytes=-1\n", "line 2 (rx_bytes)"},
		{"tx_bytes not a number", peer + "tx_bytes=lots\n", "line 2 (tx_bytes)"},
		{"handshake seconds beyond int64", peer + "last_handshake_time_sec=99999999999999999999\n", "line 2 (last_handshake_time_sec)"},
		{"handshake nanoseconds empty", peer + "last_handshake_time_nsec=\n", "line 2 (last_handshake_time_nsec)"},
	} {
		got, err := parseUAPIGet(tc.text)
		if err == nil || !strings.Contains(err.Error(), tc.want) || got != nil {
			t.Errorf("%s: %v, %v; want an error naming %q", tc.name, got, err, tc.want)
		}
	}
	if _, err := parseUAPIGet("public_key=abcd\n"); !errors.Is(err, wgkey.ErrBadKey) {
		t.Errorf("bad key: %v, want ErrBadKey", err)
	}
}

// TestWireGuardPortInUse: a taken listen port is ErrPortInUse, found by
// errno (EADDRINUSE), not by the text of the error.
func TestWireGuardPortInUse(t *testing.T) {
	taken, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	port := uint16(taken.LocalAddr().(*net.UDPAddr).Port)
	priv, err := wgkey.Generate()
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWireGuard(WireGuardConfig{Name: "agpacket-inuse", PrivateKey: priv, ListenPort: port}, NewPort("agpacket-inuse", 1420, func([][]byte, int) {}))
	if err == nil {
		w.Close()
		t.Fatalf("port %d taken, yet the device came up", port)
	}
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("err %v, want ErrPortInUse", err)
	}
	if isAddrInUse(errors.New("address already in use")) {
		t.Error("a bare message, without errno, counts as EADDRINUSE")
	}
}

// stuckHandler holds every UAPI connection until it is closed.
type stuckHandler chan net.Conn

func (h stuckHandler) IpcHandle(c net.Conn) {
	h <- c
	io.Copy(io.Discard, c)
}

// TestUAPI: the one accept loop serves connections, stops when its socket
// is removed (Done, Err), and Close does not wait for a client that never
// hangs up.
func TestUAPI(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for /var/run/wireguard")
	}
	const name = "agpacket-uapi0"
	h := make(stuckHandler, 1)
	u, err := ServeUAPI(name, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ServeUAPI(name, h, nil); err == nil {
		t.Error("a second ServeUAPI on a served name succeeded")
	}
	c, err := net.Dial("unix", "/var/run/wireguard/"+name+".sock")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	select {
	case <-h:
	case <-time.After(5 * time.Second):
		t.Fatal("handler not called")
	}
	if u.Err() != nil {
		t.Fatalf("Err %v while serving", u.Err())
	}
	if err := os.Remove("/var/run/wireguard/" + name + ".sock"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-u.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Done not closed after the socket was removed")
	}
	if u.Err() == nil || errors.Is(u.Err(), net.ErrClosed) {
		t.Errorf("Err %v after the socket was removed", u.Err())
	}
	closed := make(chan struct{})
	go func() { u.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Close waits for a client that does not hang up")
	}
}
