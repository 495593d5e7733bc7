package device

import (
	"bytes"
	"errors"
	"os"
	"sync"
	"testing"
	"time"
)

func readAll(t *testing.T, p *Port, want int) [][]byte {
	t.Helper()
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 16+2048)
	}
	sizes := make([]int, 128)
	var got [][]byte
	for len(got) < want {
		n, err := p.Read(bufs, sizes, 16)
		if err != nil {
			t.Fatalf("Read after %d packets: %v", len(got), err)
		}
		for i := range n {
			got = append(got, append([]byte(nil), bufs[i][16:16+sizes[i]]...))
		}
	}
	return got
}

func TestPortDeliverRead(t *testing.T) {
	p := NewPort("t", 1420, func([][]byte, int) {})
	defer p.Close()
	var in [][]byte
	for i := range 300 { // more than a batch, so batches chain
		pkt := bytes.Repeat([]byte{byte(i)}, 1+i%1400)
		in = append(in, append(make([]byte, 16), pkt...))
	}
	done := make(chan error)
	go func() { done <- p.Deliver(in, 16) }()
	got := readAll(t, p, len(in))
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := range in {
		if !bytes.Equal(got[i], in[i][16:]) {
			t.Fatalf("packet %d differs: len %d vs %d", i, len(got[i]), len(in[i])-16)
		}
	}
}

func TestPortWriteForwards(t *testing.T) {
	var mu sync.Mutex
	var seen [][]byte
	p := NewPort("t", 1420, func(bufs [][]byte, off int) {
		mu.Lock()
		defer mu.Unlock()
		for _, b := range bufs {
			seen = append(seen, append([]byte(nil), b[off:]...))
		}
	})
	n, err := p.Write([][]byte{append(make([]byte, 16), 1, 2, 3)}, 16)
	if err != nil || n != 1 {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if len(seen) != 1 || !bytes.Equal(seen[0], []byte{1, 2, 3}) {
		t.Fatalf("forwarded %v", seen)
	}
	p.Close()
	if _, err := p.Write([][]byte{make([]byte, 20)}, 16); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Write after Close: %v", err)
	}
}

func TestPortOversizedDropped(t *testing.T) {
	p := NewPort("t", 1420, func([][]byte, int) {})
	defer p.Close()
	big := make([]byte, 16+1500)
	small := append(make([]byte, 16), 7)
	go p.Deliver([][]byte{big, small}, 16)
	// Read buffers hold only 1024 bytes: the 1500-byte packet cannot fit.
	bufs := [][]byte{make([]byte, 16+1024), make([]byte, 16+1024)}
	sizes := make([]int, 2)
	var got int
	for got == 0 {
		n, err := p.Read(bufs, sizes, 16)
		if err != nil {
			t.Fatal(err)
		}
		got = n
	}
	if got != 1 || sizes[0] != 1 || p.Oversized() != 1 {
		t.Fatalf("got %d packets (size %d), oversized %d", got, sizes[0], p.Oversized())
	}
}

// TestPortBackpressureAndClose: Deliver blocks when nobody reads, and Close
// releases it with os.ErrClosed instead of leaving it stuck.
func TestPortBackpressureAndClose(t *testing.T) {
	p := NewPort("t", 1420, func([][]byte, int) {})
	pkt := [][]byte{append(make([]byte, 16), make([]byte, 1400)...)}
	blocked := make(chan error, 1)
	go func() {
		for {
			if err := p.Deliver(pkt, 16); err != nil {
				blocked <- err
				return
			}
		}
	}()
	select {
	case err := <-blocked:
		t.Fatalf("Deliver never blocked: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.Close()
	select {
	case err := <-blocked:
		if !errors.Is(err, os.ErrClosed) {
			t.Fatalf("Deliver after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Deliver still blocked after Close")
	}
	if _, err := p.Read(make([][]byte, 1), make([]int, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Fatalf("Read after Close: %v", err)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func BenchmarkPortDeliverRead(b *testing.B) {
	p := NewPort("b", 1420, func([][]byte, int) {})
	defer p.Close()
	in := make([][]byte, 128)
	for i := range in {
		in[i] = make([]byte, 16+1400)
	}
	bufs := make([][]byte, 128)
	for i := range bufs {
		bufs[i] = make([]byte, 16+65535)
	}
	sizes := make([]int, 128)
	b.ReportAllocs()
	b.SetBytes(128 * 1400)
	go func() {
		for {
			if _, err := p.Read(bufs, sizes, 16); err != nil {
				return
			}
		}
	}()
	for b.Loop() {
		if err := p.Deliver(in, 16); err != nil {
			b.Fatal(err)
		}
	}
}
