// Package netns builds throwaway network-namespace topologies for the
// benchmark harness (anyguard bench) and the end-to-end tests: namespaces
// with veths between them, processes started inside them with their logs
// kept, and userspace WireGuard devices configured with wg(8) and ip(8).
//
// Everything here needs root. Namespaces are named <prefix><pid>-<n>-<role>
// so that Sweep can remove those a crashed earlier run left behind, and
// Remove ends every process still inside a namespace before deleting it.
// Traffic only ever goes to addresses inside the namespaces.
package netns
