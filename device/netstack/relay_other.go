//go:build !linux

package netstack

import "net"

type rawConn = any

// hostRawConn reports no buffer-less wait on this platform: reads of host
// sockets block holding their buffer.
func hostRawConn(net.Conn) rawConn { return nil }

func waitFDReadable(rawConn) error { return nil }
