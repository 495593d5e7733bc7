package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/anyguard/anyguard/internal/keys"
)

func (c *Clients) validate(v *validator) error {
	if c.PrivateKey.IsZero() {
		return v.errorf("clients.private_key", ErrMissing, "required: set private_key or private_key_file")
	}
	if err := c.validateAddress(v); err != nil {
		return err
	}
	if c.MTU < 1280 || c.MTU > 9000 {
		return v.errorf("clients.mtu", ErrInvalidValue, "%d is out of range 1280..9000", c.MTU)
	}
	if err := c.validateEndpoint(v); err != nil {
		return err
	}
	return c.validatePeers(v)
}

// validateEndpoint checks clients.endpoint: HOST or HOST:PORT, HOST an IP
// address or a DNS name.
func (c *Clients) validateEndpoint(v *validator) error {
	if c.Endpoint == "" {
		return nil
	}
	_, err := c.EndpointHostPort()
	if err != nil {
		return v.errorf("clients.endpoint", ErrInvalidValue, "%q: %v; want HOST or HOST:PORT, e.g. vpn.example.com:51820", c.Endpoint, err)
	}
	return nil
}

// EndpointHostPort returns clients.endpoint as HOST:PORT (IPv6 in
// brackets), with ListenPort when it names no port; "" when unset.
func (c *Clients) EndpointHostPort() (string, error) {
	s := c.Endpoint
	if s == "" {
		return "", nil
	}
	host, port := s, ""
	if a, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		host = a.String()
	} else if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	}
	if port == "" {
		if c.ListenPort == 0 {
			return "", errors.New("no port, and clients.listen_port is 0")
		}
		port = strconv.Itoa(int(c.ListenPort))
	} else if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("port %q is not a number in 1..65535", port)
	}
	if a, err := netip.ParseAddr(host); err == nil {
		if a.Zone() != "" || a.IsUnspecified() {
			return "", fmt.Errorf("%s is not an address clients can reach", a)
		}
		return net.JoinHostPort(a.String(), port), nil
	}
	if !validDNSName(host) {
		return "", fmt.Errorf("host %q is neither an IP address nor a DNS name", host)
	}
	return net.JoinHostPort(host, port), nil
}

// validDNSName reports whether s is a DNS name: labels of letters, digits
// and hyphens, not starting or ending with a hyphen.
func validDNSName(s string) bool {
	s = strings.TrimSuffix(s, ".")
	if s == "" || len(s) > 253 {
		return false
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := range len(label) {
			c := label[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

func (c *Clients) validateAddress(v *validator) error {
	if len(c.Address) == 0 {
		return v.errorf("clients.address", ErrMissing, "required: the gateway's address on the client network, e.g. 10.99.0.1/16")
	}
	seen := make(map[bool]string) // Is4 -> path
	for i, p := range c.Address {
		path := v.elem("clients.address", i)
		if err := checkPrefix(v, path, p); err != nil {
			return err
		}
		a, net := p.Addr(), p.Masked()
		switch {
		case p.IsSingleIP():
			return v.errorf(path, ErrInvalidValue, "%s leaves no room for clients: give the gateway's address with the client network's prefix length, e.g. 10.99.0.1/16", p)
		case a == net.Addr():
			return v.errorf(path, ErrInvalidValue, "%s is the network address of %s: give the gateway's own address, e.g. %s/%d", p, net, a.Next(), p.Bits())
		case a.Is4() && p.Bits() < 31 && a == lastAddr(net):
			return v.errorf(path, ErrInvalidValue, "%s is the broadcast address of %s: give the gateway's own address, e.g. %s/%d", p, net, net.Addr().Next(), p.Bits())
		}
		if other, ok := seen[a.Is4()]; ok {
			family := "IPv6"
			if a.Is4() {
				family = "IPv4"
			}
			return v.errorf(path, ErrDuplicate, "a second %s address (the first is at %s): give at most one IPv4 and one IPv6 address", family, v.where(other))
		}
		seen[a.Is4()] = path
	}
	return nil
}

// lastAddr returns the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func (c *Clients) validatePeers(v *validator) error {
	own := c.PrivateKey.Public()
	// Indices rather than paths: at 100k clients building each field's
	// path up front costs more than all the checks; paths are built for
	// the one field an error names.
	names := make(map[string]int, len(c.Peers))  // name -> peer index
	pubs := make(map[keys.Key]int, len(c.Peers)) // public key -> peer index
	ips := make([]placed, 0, len(c.Peers))
	for i, p := range c.Peers {
		if !validName(p.Name, 64, "._@+-") {
			if err := checkName(v, peerPath(i, "name"), p.Name, 64, "._@+-", ""); err != nil {
				return err
			}
		}
		if other, ok := names[p.Name]; ok {
			return v.errorf(peerPath(i, "name"), ErrDuplicate, "peer name %q is also used at %s", p.Name, v.where(peerPath(other, "name")))
		}
		names[p.Name] = i

		switch other, dup := pubs[p.PublicKey]; {
		case p.PublicKey.IsZero():
			return v.errorf(peerPath(i, "public_key"), ErrMissing, "required")
		case p.PublicKey == own:
			return v.errorf(peerPath(i, "public_key"), ErrInvalidValue, "is the gateway's own public key (of clients.private_key)")
		case dup:
			return v.errorf(peerPath(i, "public_key"), ErrDuplicate, "public key of peer %q is also used at %s", p.Name, v.where(peerPath(other, "public_key")))
		}
		pubs[p.PublicKey] = i

		if len(p.AllowedIPs) == 0 {
			return v.errorf(peerPath(i, "allowed_ips"), ErrMissing, "required: the client's addresses, e.g. 10.99.0.2/32")
		}
		for j, ip := range p.AllowedIPs {
			if !isNetwork(ip) {
				if err := checkNetwork(v, allowedIPPath(i, j), ip); err != nil {
					return err
				}
			}
			for _, a := range c.Address {
				if ip.Contains(a.Addr()) {
					return v.errorf(allowedIPPath(i, j), ErrOverlap, "%s contains the gateway's own address %s", ip, a.Addr())
				}
			}
			ips = append(ips, placed{p: ip, i: i, j: j, order: len(ips)})
		}
	}
	if a, b, ok := firstOverlap(ips); ok {
		return v.errorf(allowedIPPath(b.i, b.j), ErrOverlap, "%s of peer %q overlaps %s of peer %q at %s",
			b.p, c.Peers[b.i].Name, a.p, c.Peers[a.i].Name, v.where(allowedIPPath(a.i, a.j)))
	}
	return nil
}

// peerPath is the path of field of peer i.
func peerPath(i int, field string) string {
	return "clients.peers[" + strconv.Itoa(i) + "]." + field
}

func allowedIPPath(i, j int) string {
	return peerPath(i, "allowed_ips") + "[" + strconv.Itoa(j) + "]"
}
