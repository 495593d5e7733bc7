// Package device owns anyguard's packet devices: the embedded wireguard-go
// devices and every tun.Device they or the router use.
//
//   - Port is an in-memory tun.Device that connects a wireguard-go device
//     to the router with batched Read/Write and no kernel involved.
//   - WireGuard wraps a wireguard-go device: configuration from typed peers,
//     a classifying Bind that counts handshakes and drops junk before the
//     device sees it, and a UAPI socket so that stock `wg show`/`wg set`
//     work against it.
//   - TUN is the Linux multi-queue TUN egress (IFF_MULTI_QUEUE, one queue
//     and one goroutine per CPU, IFF_VNET_HDR offloads).
//   - The subpackage handshake reads handshake initiations as the Noise
//     responder would, before the device does (clients' admission).
//   - Netstack is the unprivileged gVisor egress that terminates clients'
//     TCP, UDP and ICMP echo and re-originates them from host sockets.
//
// The package knows nothing about gossip or HTTP: packets leave every device
// through a plain forward function supplied by the caller (the router), and
// enter through a Deliver method.
package device
