package netstack

import (
	"net"
	"syscall"
)

type rawConn = syscall.RawConn

// hostRawConn returns c's raw connection when c is a socket.
func hostRawConn(c net.Conn) rawConn {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// waitFDReadable waits, through the runtime's poller and honouring the read
// deadline, until a recv on the socket would not block. A zero-length
// MSG_PEEK recv tells without consuming data; a pending socket error (a
// reset, an ICMP port unreachable) is returned, and consumed.
func waitFDReadable(rc rawConn) error {
	var serr error
	err := rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), nil, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch e {
		case syscall.EAGAIN, syscall.EINTR:
			return false
		}
		serr = e
		return true
	})
	if err != nil {
		return err
	}
	return serr
}
