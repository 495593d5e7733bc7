package netstack

import (
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/waiter"
)

// Flows copy between a stack endpoint and a host socket. An idle flow holds
// no copy buffer: each side first waits until it is readable, then borrows
// a pooled buffer for one read and one write. With tens of thousands of
// mostly idle flows this is the difference between kilobytes and a
// gigabyte.

// Copy buffer sizes: a TCP read takes what is there up to the buffer; a UDP
// read takes one whole datagram, which may be up to 64 KiB.
const (
	tcpCopyBufSize = 32 << 10
	udpCopyBufSize = 65535
)

var (
	tcpBufPool = sync.Pool{New: func() any { b := make([]byte, tcpCopyBufSize); return &b }}
	udpBufPool = sync.Pool{New: func() any { b := make([]byte, udpCopyBufSize); return &b }}
)

var (
	// errNotReady is a spurious wakeup: nothing to read after all.
	errNotReady = errors.New("not ready")
	// errIdle is a wait that reached its deadline.
	errIdle = errors.New("idle")
)

// flowReader is one side of a flow as seen by relay.
type flowReader interface {
	// waitReadable blocks until a Read would not block, or deadline (zero:
	// none) passes (errIdle), or the side fails or closes (another error).
	waitReadable(deadline time.Time) error
	// Read reads what is ready; errNotReady if nothing was after all.
	Read(b []byte) (int, error)
}

// stackReader reads a gVisor endpoint.
type stackReader struct {
	ep    tcpip.Endpoint
	wq    *waiter.Queue
	entry waiter.Entry
	ch    chan struct{}
	timer *time.Timer
	tcp   bool
}

func newStackReader(ep tcpip.Endpoint, wq *waiter.Queue, tcp bool) *stackReader {
	r := &stackReader{ep: ep, wq: wq, tcp: tcp}
	r.entry, r.ch = waiter.NewChannelEntry(waiter.ReadableEvents | waiter.EventHUp | waiter.EventErr)
	wq.EventRegister(&r.entry)
	r.timer = time.NewTimer(time.Hour)
	r.timer.Stop()
	return r
}

// close unregisters the reader; the endpoint is closed by its owner.
func (r *stackReader) close() {
	r.wq.EventUnregister(&r.entry)
	r.timer.Stop()
}

func (r *stackReader) waitReadable(deadline time.Time) error {
	for r.ep.Readiness(waiter.ReadableEvents) == 0 {
		if deadline.IsZero() {
			<-r.ch
			continue
		}
		d := time.Until(deadline)
		if d <= 0 {
			return errIdle
		}
		r.timer.Reset(d)
		select {
		case <-r.ch:
			r.timer.Stop()
		case <-r.timer.C:
			return errIdle
		}
	}
	return nil
}

func (r *stackReader) Read(b []byte) (int, error) {
	w := tcpip.SliceWriter(b)
	res, err := r.ep.Read(&w, tcpip.ReadOptions{})
	switch err.(type) {
	case nil:
	case *tcpip.ErrWouldBlock:
		return 0, errNotReady
	case *tcpip.ErrClosedForReceive:
		return 0, io.EOF
	default:
		return 0, errors.New(err.String())
	}
	if r.tcp && res.Count > 0 {
		r.ep.ModerateRecvBuf(res.Count) // lets receive-window auto-tuning work
	}
	return res.Count, nil
}

// hostReader reads a host socket. Where the platform lets it wait for
// readability without a buffer (hostRawConn), it does; elsewhere Read
// blocks holding the buffer.
type hostReader struct {
	conn     net.Conn
	raw      rawConn // nil: no buffer-less wait
	deadline time.Time
}

func newHostReader(c net.Conn) *hostReader {
	return &hostReader{conn: c, raw: hostRawConn(c)}
}

func (r *hostReader) waitReadable(deadline time.Time) error {
	if !deadline.Equal(r.deadline) {
		r.conn.SetReadDeadline(deadline)
		r.deadline = deadline
	}
	if r.raw == nil {
		return nil
	}
	return timeoutToIdle(waitFDReadable(r.raw))
}

func (r *hostReader) Read(b []byte) (int, error) {
	n, err := r.conn.Read(b)
	return n, timeoutToIdle(err)
}

func timeoutToIdle(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errIdle
	}
	return err
}

// relayStream copies a byte stream from src to dst until EOF (nil) or an
// error.
func relayStream(dst io.Writer, src flowReader) error {
	for {
		if err := src.waitReadable(time.Time{}); err != nil {
			return err
		}
		bp := tcpBufPool.Get().(*[]byte)
		n, err := src.Read(*bp)
		if n > 0 {
			if _, werr := dst.Write((*bp)[:n]); werr != nil {
				tcpBufPool.Put(bp)
				return werr
			}
		}
		tcpBufPool.Put(bp)
		switch {
		case err == nil, errors.Is(err, errNotReady):
		case errors.Is(err, io.EOF):
			return nil
		default:
			return err
		}
	}
}
