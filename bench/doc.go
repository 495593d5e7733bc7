// Package bench measures anyguard against stock wireguard-go: throughput
// through one gateway in network namespaces (RunThroughput, root only),
// memory and start-up time with many configured clients (RunScale),
// handshakes per second and per CPU-second under a storm of initiators
// (RunHandshakes), and
// renders each as JSON and a markdown table that `make bench` splices into
// docs/benchmarks.md (Splice).
//
// The throughput harness interleaves the gateways it compares within every
// repetition and reports medians, so that a machine that speeds up or slows
// down during a run affects every gateway alike; it also measures the
// ceilings (raw veth, one core of chacha20poly1305) that bound any gateway
// here. Its namespaces and processes are removed when it returns, whatever
// the outcome.
package bench
