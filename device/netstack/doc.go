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
package netstack
