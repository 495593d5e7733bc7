package bench

import (
	"bufio"
	"crypto/rand"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"golang.org/x/crypto/chacha20poly1305"
)

// Machine says where a benchmark ran.
type Machine struct {
	Date      string `json:"date"` // UTC, RFC 3339
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	Kernel    string `json:"kernel"`
	GoVersion string `json:"go"`
}

// DescribeMachine reads the CPU model and kernel of this machine.
func DescribeMachine() Machine {
	m := Machine{
		Date:      time.Now().UTC().Format(time.RFC3339),
		CPU:       cpuModel(),
		Cores:     runtime.NumCPU(),
		GoVersion: runtime.Version(),
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// versionOf returns the first line `bin --version` prints.
func versionOf(bin string) string {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	if err != nil {
		return bin
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	return line
}

// SealRate measures chacha20poly1305 Seal on one core for about d, with
// messages of size bytes, in gigabytes (1e9) per second: the ceiling of
// one encrypting core.
func SealRate(size int, d time.Duration) float64 {
	var key [chacha20poly1305.KeySize]byte
	rand.Read(key[:])
	aead, err := chacha20poly1305.New(key[:])
	if err != nil {
		panic(err) // the key size is right by construction
	}
	msg := make([]byte, size)
	dst := make([]byte, 0, size+aead.Overhead())
	var nonce [chacha20poly1305.NonceSize]byte
	start := time.Now()
	var n int64
	for time.Since(start) < d {
		for range 64 {
			nonce[0]++
			dst = aead.Seal(dst[:0], nonce[:], msg, nil)
			n += int64(size)
		}
	}
	return float64(n) / time.Since(start).Seconds() / 1e9
}
