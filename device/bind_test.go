package device

import (
	"encoding/binary"
	"testing"
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
