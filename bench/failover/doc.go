// Package failover is `anyguard bench failover`: how long real WireGuard
// clients are cut off when a load balancer moves their flows between
// gateways, with the gateways' fast recovery on and off, in one
// unprivileged process.
//
// A run deploys, per scenario and mode, gateways in regions (real
// internal/gateway gateways in one cluster, netstack egress), a load
// balancer model with the parameters of AWS NLB and Global Accelerator
// (lb.go, params.go: health checks over HTTP /readyz or the TCP health
// port, thresholds, stickiness, flows of unhealthy targets, UDP idle
// timeout, deregistration delay; it fails open when no target is
// healthy), and N real wireguard-go clients on in-memory TUNs and binds
// (client.go). Every client sends an echo to a service in the last
// region's private network each interval and answers the private side's
// request to it as often (server.go); each packet names its client, so a
// packet at the wrong client is counted, never taken for an answer.
//
// Per flow move, per direction, the outage is the time from the move to
// the first answer to a request sent after it (measure.go). The report is
// JSON, a markdown table and an SVG (report.go, svg.go). docs/failover.md
// explains parameters, presets and how to read the results.
package failover
