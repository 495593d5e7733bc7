package probe

import (
	"net/netip"

	"github.com/anyguard/anyguard/packet"
)

// EchoRequest builds an ICMP or ICMPv6 echo request carrying the probe
// payload (the takeovers of fast recovery send them too).
func EchoRequest(src, dst netip.Addr, id, seq uint16) []byte {
	return packet.AppendEcho(nil, src, dst, packet.Echo{ID: id, Seq: seq, Data: []byte(probePayload)})
}

// echoReplySeq returns the sequence number of an echo reply with the
// given id carrying the probe payload. The checksum is not checked: the
// reply was authenticated by the tunnel that carried it.
func echoReplySeq(p []byte, id uint16) (uint16, bool) {
	h, err := packet.Parse(p)
	if err != nil {
		return 0, false
	}
	e, ok := packet.ParseEcho(h)
	if !ok || !e.Reply || e.ID != id || len(e.Data) < len(probePayload) || string(e.Data[:len(probePayload)]) != probePayload {
		return 0, false
	}
	return e.Seq, true
}
