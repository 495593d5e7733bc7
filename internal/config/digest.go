package config

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"slices"
	"strings"
)

// ClientSetDigest returns a hex SHA-256 digest of the set of peers: their
// names, public keys, allowed IPs and whether they have a preshared key
// (not the key itself). Gateways compare it to check that they serve the
// same clients; it does not depend on the order of peers or of their
// allowed IPs.
func (c *Config) ClientSetDigest() string {
	recs := make([]string, 0, len(c.Clients.Peers))
	for _, p := range c.Clients.Peers {
		ips := make([]string, 0, len(p.AllowedIPs))
		for _, ip := range p.AllowedIPs {
			ips = append(ips, ip.String())
		}
		slices.Sort(ips)
		var b []byte
		field := func(s string) { // length-prefixed, so fields cannot run together
			b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
			b = append(b, s...)
		}
		field(p.Name)
		field(string(p.PublicKey[:]))
		field(strings.Join(ips, ","))
		if p.PresharedKey.IsZero() {
			field("nopsk")
		} else {
			field("psk")
		}
		recs = append(recs, string(b))
	}
	slices.Sort(recs)
	h := sha256.New()
	h.Write([]byte("anyguard client set v1\n"))
	for _, r := range recs {
		var n [4]byte
		binary.BigEndian.PutUint32(n[:], uint32(len(r)))
		h.Write(n[:])
		h.Write([]byte(r))
	}
	return hex.EncodeToString(h.Sum(nil))
}
