// Package e2e holds the end-to-end tests of anyguard: real processes in
// network namespaces that the tests create and remove themselves.
//
// Each test builds the topology
//
//	cli (stock WireGuard client: wg-quick + wireguard-go)
//	  │ veth, underlay 192.0.2.0/24 (TEST-NET-1, only inside the namespaces)
//	gw  (the gateway under test, ip_forward=1)
//	  │ veth, 10.1.0.0/24
//	srv (the private network: 10.1.0.10, iperf3 -s)
//
// and checks ping, iperf3 TCP and UDP and the gateway's UAPI (wg show) from
// the client side. The gateway is either the anyguard binary, built once per
// run from ./cmd/anyguard when a test first needs it (tun and netstack
// egress), or stock wireguard-go as a baseline (startStockGateway), which the
// benchmarks compare against.
//
// TestClusterTwoRegions builds its own topology: two regions, each a
// gateway namespace running `anyguard run` (tun egress, backbone and
// cluster sections) with a server behind it whose default route is that
// gateway, the gateways and the client on one bridged WAN (192.0.2.0/24).
// The client moves between the gateways (wg set endpoint, then wg-quick
// down/up) and must reach both servers, and both servers it, after each
// move, the non-owner forwarding over the backbone (no SNAT).
//
// TestFaults is the fault suite (docs/faults.md): four gateways, two per
// region, behind a UDP load balancer that works as AWS NLB or Global
// Accelerator do (nftables DNAT plus conntrack in a router namespace: the
// gateways see the client's own address, replies come from one virtual
// address, and a flow moves when the LB's map changes and its conntrack
// entry is deleted), a stock client and a server per region. UDP echoes
// every 20 ms from the client to both servers and from both servers to
// the client count what got through. The scenarios run in order on that
// one topology: the LB moving the flow to another region, kill -9 of the
// owner, a restart under the same name (the flow moved back, then in
// place), SIGHUP with a broken file, junk floods on the client and gossip
// ports from 64 addresses, a gossip member with its clock 10 minutes
// ahead (the test binary re-executed as a cluster member), a captured
// handshake initiation replayed to the other gateways, and a 65 s
// partition between the regions. The table of what each measured is
// logged and written to bin/faults.json and bin/faults.md. It needs nft
// and conntrack besides the tools below.
//
// TestContainerNetstack and TestContainerTun build the container image
// from images/Dockerfile with podman (`podman build --format docker`, in a
// build context holding only the static bin/anyguard) and run it as users
// do, with the configuration mounted read-only at /etc/anyguard, joined to
// the gw namespace with --network ns:PATH instead of publishing ports.
// They check /readyz (from inside gw), the image's HEALTHCHECK through
// `podman healthcheck run`, the stock client's ping and iperf3 TCP
// through the container, its handshake in /status and /metrics, and that
// `podman stop` drains (503 at once, traffic still flowing) and exits 0
// within --stop-timeout; the tun case adds --cap-add NET_ADMIN --device
// /dev/net/tun. TestContainerBadConfig checks that a bad configuration
// makes the container exit 1 with the one-line field error as its only
// output. Podman reads testdata/containers.conf (CONTAINERS_CONF, which
// says why each setting is there); images are tagged
// localhost/anyguard-e2e:<pid>-<n> and containers named agt-<pid>-..., and
// a run removes those of earlier runs whose process is gone.
//
// TestAMIBoot boots the AMI's contents without AWS: a Debian 12 root file
// system from mmdebstrap (kept in /var/cache/anyguard-e2e, or
// ANYGUARD_E2E_CACHE, under a hash of its inputs, and imported once as
// localhost/anyguard-e2e-rootfs:<hash>), images/provision.sh applied by a
// podman build, images/cloud-init/user-data.yaml as a NoCloud seed, and
// systemd as PID 1 in a podman container (--systemd=always, with
// SYS_ADMIN so that systemd applies the unit's sandbox) joined to gw. A
// stand-in for IMDSv2 and SSM answers at 169.254.169.254 on gw's loopback.
// It checks the unit (active through READY=1, the process's user and
// capabilities, systemd-analyze verify), /readyz, a stock client through
// the gateway, a new client after `systemctl reload`, the drain on
// `systemctl stop`, and a broken configuration leaving the unit failed
// with its one-line error in the journal. TestImages* run shellcheck,
// cloud-init schema and packer validate on the files in images/.
//
// TestDropInNetnsMove, TestDropInBehaviours and TestDropInNAT hold
// `anyguard interface` to wireguard-go's own tests/netns.sh: interfaces
// created in one namespace, moved to two others and configured there, then
// pinged, pushed with iperf3, taken down and up, given other MTUs, renamed,
// roamed, rekeyed and reconfigured with wg, and a peer behind SNAT kept
// reachable by its keepalives. Every step runs against stock wireguard-go built
// from the module proxy at the version go.mod embeds (cached outside the
// repository, see stockWireguardGo) as well, and both must pass.
//
// The tests need root, /dev/net/tun and the Debian tools wg, wg-quick,
// wireguard-go, iperf3, ip and ping, podman and runc for the container
// tests, and mmdebstrap, shellcheck, packer, cloud-init and systemd-analyze
// for the AMI tests (`make deps` installs them). Without them
// they skip, unless ANYGUARD_E2E=require, which turns every such skip into a
// failure (CI sets it). Traffic only ever goes to addresses inside the
// namespaces the test made. Namespaces are named agt-<pid>-<n>-<role>; a run
// removes those left behind by earlier runs whose process is gone.
//
// The namespaces, processes, topology and iperf3 runs come from bench/netns,
// which the throughput benchmark (anyguard bench throughput) shares; the
// files here wrap it for testing.TB and add the wg-quick client.
//
// ANYGUARD_BIN=/path/to/anyguard uses a prebuilt binary instead of building.
package e2e
