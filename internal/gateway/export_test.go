package gateway

// CrashForTest stops the gateway without leaving the cluster, as a crash
// would: the others find out by failure detection.
func (g *Gateway) CrashForTest() {
	if g.cluster != nil {
		g.cluster.left.Store(true)
	}
	g.Close()
}
