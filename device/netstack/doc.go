// Package netstack is anyguard's unprivileged egress: a gVisor TCP/IP stack
// (Stack) that terminates clients' TCP, UDP and ICMP echo and re-originates
// them from host sockets, so that a gateway needs no TUN device and no
// privilege.
//
// It is a package of its own, beside device rather than inside it, so that
// only its importers link gVisor: device, the router and the TUN path stay
// free of it. Stack has the same Deliver contract as device's ports: the
// router hands it packets for served prefixes and the gateway's own
// addresses, and it emits replies through the function given to New.
//
// Offloads: the Stack's link behaves like a NIC with segmentation and
// receive offload. gVisor's TCP sends up to 64 KiB per packet, which the
// emit loop cuts into MTU-sized packets (gso.go); Deliver verifies
// checksums and merges each batch's in-order TCP segments with gVisor's
// GRO before the stack sees them (gro.go). Both cut the passes through
// gVisor's IP and TCP code per byte by an order of magnitude.
//
// Memory per TCP flow: gVisor's receive buffer (client to host data the
// host socket has not taken yet) auto-tunes up to 8 MiB and its send
// buffer (host to client data the client has not acknowledged) up to
// 6 MiB; the relay holds a 32 KiB buffer per direction only while copying;
// the host socket's buffers follow the kernel's tcp_rmem/tcp_wmem. GRO
// and the emit loop hold nothing per flow (a batch's GRO state is flushed
// before Deliver returns). So a flow whose client and destination both
// stall costs at most about 14 MiB here; Config.MaxTCPFlows (default
// 16,384) and MaxTCPInFlight bound how many there are.
package netstack
