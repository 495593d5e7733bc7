// Package health answers load balancers, monitoring and people about one
// gateway: ONE HTTP listener serving
//
//   - /livez: 200 while the process serves HTTP at all;
//   - /readyz (and its alias /healthz): 200 only while every registered
//     check passes and the gateway is not draining, 503 otherwise;
//     /readyz?verbose lists each check and why it fails;
//   - /metrics: Prometheus text format, anyguard_ prefix;
//   - /status: JSON of the node, members, regions, clients and convergence;
//   - /: a small self-contained HTML page of the same, for people;
//
// plus a TCP health port that accepts connections only while ready (for
// TCP health checks such as Global Accelerator's), and the drain state that
// SIGTERM sets.
//
// Readiness is not a flag: [State] runs named [Check]s on a schedule and
// caches their results, so a load balancer polling /readyz costs nothing but
// a lock. The gateway registers its checks (the data-path probe, the client
// device, the egress, and later cluster membership) as a plain list.
//
// The package knows nothing of the gateway: it reads what it shows through
// the narrow [MetricsSource] and [StatusSource] interfaces declared here, so
// router and device never import it and it never imports them.
package health
