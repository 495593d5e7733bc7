package wgkey

import (
	"encoding/base64"
	"errors"
	"strings"
	"testing"
)

// Test vector from wg(8): the RFC 7748 Alice key pair, base64-encoded.
func TestPublicKnownVector(t *testing.T) {
	// RFC 7748 section 6.1.
	priv := Key{0x77, 0x07, 0x6d, 0x0a, 0x73, 0x18, 0xa5, 0x7d, 0x3c, 0x16, 0xc1, 0x72, 0x51, 0xb2, 0x66, 0x45, 0xdf, 0x4c, 0x2f, 0x87, 0xeb, 0xc0, 0x99, 0x2a, 0xb1, 0x77, 0xfb, 0xa5, 0x1d, 0xb9, 0x2c, 0x2a}
	want := Key{0x85, 0x20, 0xf0, 0x09, 0x89, 0x30, 0xa7, 0x54, 0x74, 0x8b, 0x7d, 0xdc, 0xb4, 0x3e, 0xf7, 0x5a, 0x0d, 0xbf, 0x3a, 0x0d, 0x26, 0x38, 0x1a, 0xf4, 0xeb, 0xa4, 0xa9, 0x8e, 0xaa, 0x9b, 0x4e, 0x6a}
	if got := priv.Public(); got != want {
		t.Fatalf("Public() = %x, want %x", got, want)
	}
}

func TestParseRoundTrip(t *testing.T) {
	k, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if k[0]&7 != 0 || k[31]&128 != 0 || k[31]&64 == 0 {
		t.Fatalf("generated key not clamped: %x", k)
	}
	got, err := Parse(" " + k.String() + "\n")
	if err != nil || got != k {
		t.Fatalf("Parse(String()) = %v, %v", got, err)
	}
}

func TestParseBad(t *testing.T) {
	for _, s := range []string{"", "abc", "!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==",
		// The key of all zeros with a padding bit set: wg(8) refuses it.
		"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=",
		"yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmn="} {
		if _, err := Parse(s); !errors.Is(err, ErrBadKey) {
			t.Errorf("Parse(%q) err = %v, want ErrBadKey", s, err)
		}
	}
}

func TestHex(t *testing.T) {
	k := Key{0: 0xab, 31: 0x01}
	want := "ab" + "000000000000000000000000000000000000000000000000000000000000" + "01"
	if k.Hex() != want {
		t.Fatalf("Hex() = %s", k.Hex())
	}
}

// FuzzParse: Parse never panics, accepts exactly the 44-character
// strict standard base64 encodings of 32 bytes (after trimming space:
// nonzero padding bits refused, as wg(8) does), and what it accepts
// prints as exactly the text it parsed.
func FuzzParse(f *testing.F) {
	f.Add("yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=")
	f.Add(" AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA==")
	f.Add("")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAB=")
	f.Fuzz(func(t *testing.T, s string) {
		k, err := Parse(s)
		trimmed := strings.TrimSpace(s)
		b, refErr := base64.StdEncoding.Strict().DecodeString(trimmed)
		refOK := refErr == nil && len(b) == Len && len(trimmed) == 44
		if (err == nil) != refOK {
			t.Fatalf("Parse(%q) err %v; base64 says ok=%v", s, err, refOK)
		}
		if err != nil {
			if !errors.Is(err, ErrBadKey) {
				t.Fatalf("Parse(%q) err %v, want ErrBadKey", s, err)
			}
			return
		}
		if k != Key(b) {
			t.Fatalf("Parse(%q) = %v, base64 decodes %x", s, k, b)
		}
		if k.String() != trimmed {
			t.Fatalf("Parse(%q) = %v: another text for the same key", s, k)
		}
	})
}
