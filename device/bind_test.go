package device

import (
	"encoding/binary"
	"testing"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/conn/bindtest"
)

func msg(typ uint32, size int) []byte {
	b := make([]byte, size)
	if size >= 4 {
		binary.LittleEndian.PutUint32(b, typ)
	}
	return b
}

func TestClassify(t *testing.T) {
	tests := []struct {
		p    []byte
		want int
	}{
		{msg(1, 148), 1}, {msg(1, 147), 0}, {msg(1, 149), 0},
		{msg(2, 92), 2}, {msg(2, 93), 0},
		{msg(3, 64), 3}, {msg(3, 65), 0},
		{msg(4, 32), 4}, {msg(4, 1452), 4}, {msg(4, 31), 0}, {msg(4, 65536), 0},
		{msg(5, 148), 0}, {msg(0x0101, 148), 0}, {msg(0, 0), 0}, {[]byte{1, 0, 0}, 0},
	}
	for _, tc := range tests {
		if got := Classify(tc.p); got != tc.want {
			t.Errorf("Classify(type %d, %d bytes) = %d, want %d", binary.LittleEndian.Uint32(append(tc.p, 0, 0, 0, 0)), len(tc.p), got, tc.want)
		}
	}
}

func TestClassifyingBindZeroesJunk(t *testing.T) {
	b := &ClassifyingBind{}
	packets := [][]byte{msg(1, 148), msg(9, 100), msg(4, 64), make([]byte, 2000)}
	sizes := []int{148, 100, 64, 3}
	b.classify(packets, sizes, nil)
	if sizes[0] != 148 || sizes[1] != 0 || sizes[2] != 64 || sizes[3] != 0 {
		t.Fatalf("sizes = %v", sizes)
	}
	st := b.Stats()
	if st.Initiations != 1 || st.Transport != 1 || st.Junk != 2 {
		t.Fatalf("stats = %+v", st)
	}
}

func FuzzClassify(f *testing.F) {
	f.Add(msg(1, 148))
	f.Add(msg(4, 48))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, p []byte) {
		c := Classify(p)
		if c == 0 {
			return
		}
		if int(binary.LittleEndian.Uint32(p)) != c {
			t.Fatalf("Classify = %d for type %d", c, binary.LittleEndian.Uint32(p))
		}
	})
}

// nopBind is a conn.Bind that sends nothing anywhere.
type nopBind struct{ conn.Bind }

func (nopBind) Send([][]byte, conn.Endpoint) error { return nil }

// TestBindSessionHooks: the received-response hook sees each received
// response's sender index (bytes 4–8) and source, the sent-transport hook
// each sent transport message's receiver index (bytes 4–8) and
// destination; neither sees other kinds, junk or short datagrams, and the
// send path allocates nothing.
func TestBindSessionHooks(t *testing.T) {
	b := NewClassifyingBind(nopBind{})
	ep := bindtest.ChannelEndpoint(3)
	type seen struct {
		index uint32
		ep    conn.Endpoint
	}
	var responses, sent []seen
	b.SetReceivedResponseHook(func(sender uint32, from conn.Endpoint) { responses = append(responses, seen{sender, from}) })
	b.SetSentTransportHook(func(receiver uint32, to conn.Endpoint) { sent = append(sent, seen{receiver, to}) })
	withIndex := func(p []byte, i uint32) []byte { binary.LittleEndian.PutUint32(p[4:8], i); return p }

	packets := [][]byte{withIndex(msg(2, 92), 7), withIndex(msg(2, 93), 8), withIndex(msg(4, 64), 9), withIndex(msg(1, 148), 10)}
	b.classify(packets, []int{92, 93, 64, 148}, []conn.Endpoint{ep, ep, ep, ep})
	if len(responses) != 1 || responses[0] != (seen{7, ep}) {
		t.Fatalf("responses seen: %v", responses)
	}
	out := [][]byte{withIndex(msg(4, 48), 11), withIndex(msg(2, 92), 12), withIndex(msg(4, 31), 13), msg(4, 3), withIndex(msg(4, 1452), 14)}
	if err := b.Send(out, ep); err != nil {
		t.Fatal(err)
	}
	if len(sent) != 2 || sent[0] != (seen{11, ep}) || sent[1] != (seen{14, ep}) {
		t.Fatalf("transport seen: %v", sent)
	}

	b.SetReceivedResponseHook(nil)
	b.SetSentTransportHook(func(uint32, conn.Endpoint) {})
	if n := testing.AllocsPerRun(100, func() { b.Send(out, ep) }); n != 0 {
		t.Fatalf("Send with the hook: %v allocs", n)
	}
	b.SetSentTransportHook(nil)
	sent = nil
	b.Send(out, ep)
	b.classify(packets, []int{92, 93, 64, 148}, []conn.Endpoint{ep, ep, ep, ep})
	if len(sent) != 0 || len(responses) != 1 {
		t.Fatalf("hooks removed, yet: sent %v, responses %v", sent, responses)
	}
}
