package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/anyguard/anyguard/internal/config"
	"github.com/anyguard/anyguard/internal/gateway"
	"github.com/anyguard/anyguard/internal/keys"
)

// ScaleOptions configure RunScale.
type ScaleOptions struct {
	Anyguard string    // binary run as the child (default: this executable)
	Clients  []int     // configured client counts to measure
	Progress io.Writer // one line per size; nil: none
	Dir      string    // config files; "" a temporary directory
}

// ScalePoint is one gateway measured with Clients configured clients.
type ScalePoint struct {
	Clients     int     `json:"clients"`
	StartSec    float64 `json:"start_s"`    // config.Load + gateway.New
	LoadSec     float64 `json:"load_s"`     // config.Load alone
	ReloadSec   float64 `json:"reload_s"`   // config.Load + Reload with 1% of clients replaced
	RSSBytes    int64   `json:"rss_bytes"`  // after start, after a GC
	HeapBytes   int64   `json:"heap_bytes"` // live heap after a GC
	Goroutines  int     `json:"goroutines"`
	PeakRSSByte int64   `json:"peak_rss_bytes"`
	// Error says why the gateway did not start with this many clients.
	Error string `json:"error,omitempty"`
}

// ScaleReport is the result of RunScale.
type ScaleReport struct {
	Machine Machine      `json:"machine"`
	Points  []ScalePoint `json:"points"`
}

// RunScale measures, for each client count, a netstack-mode gateway
// (unprivileged, UDP on 127.0.0.1, no UAPI socket) in a child process of
// its own, so that each figure starts from an empty process: the time to
// load the configuration and start, the resident memory and goroutines
// once started, and the time to reload with 1% of the clients replaced.
func RunScale(ctx context.Context, opts ScaleOptions) (_ *ScaleReport, err error) {
	if opts.Anyguard == "" {
		if opts.Anyguard, err = os.Executable(); err != nil {
			return nil, err
		}
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "anyguard-scale-"); err != nil {
			return nil, err
		}
		defer os.RemoveAll(opts.Dir)
	}
	rep := &ScaleReport{Machine: DescribeMachine()}
	for _, n := range opts.Clients {
		base, changed, err := writeScaleConfigs(opts.Dir, n)
		if err != nil {
			return nil, err
		}
		cmd := exec.CommandContext(ctx, opts.Anyguard, "bench", "scale", "--child", base, "--child-reload", changed)
		var stderr bytes.Buffer
		cmd.Stderr = io.MultiWriter(opts.Progress, &stderr)
		out, err := cmd.Output()
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if err != nil {
			// A size the gateway cannot start with is a result too.
			why := strings.TrimSpace(stderr.String())
			if i := strings.LastIndexByte(why, '\n'); i >= 0 {
				why = why[i+1:]
			}
			if why == "" {
				why = err.Error()
			}
			rep.Points = append(rep.Points, ScalePoint{Clients: n, Error: why})
			continue
		}
		var p ScalePoint
		if err := json.Unmarshal(out, &p); err != nil {
			return nil, fmt.Errorf("%d clients: child output %q: %w", n, out, err)
		}
		fmt.Fprintf(opts.Progress, "%7d clients: start %.2f s, RSS %.0f MB, %d goroutines, reload (1%% changed) %.2f s\n",
			n, p.StartSec, float64(p.RSSBytes)/1e6, p.Goroutines, p.ReloadSec)
		rep.Points = append(rep.Points, p)
	}
	return rep, nil
}

// writeScaleConfigs writes a configuration with n clients and a second one
// with 1% of them (at least one) replaced by new keys and addresses.
func writeScaleConfigs(dir string, n int) (string, string, error) {
	priv, err := keys.Generate()
	if err != nil {
		return "", "", err
	}
	pubs := make([]keys.Key, n)
	for i := range pubs {
		// Random bytes stand for public keys: deriving 100k real ones
		// would dominate the set-up, and the device treats them alike.
		rand.Read(pubs[i][:])
	}
	base := filepath.Join(dir, fmt.Sprintf("scale-%d.yaml", n))
	changed := filepath.Join(dir, fmt.Sprintf("scale-%d-reload.yaml", n))
	if err := writeScaleConfig(base, priv, pubs); err != nil {
		return "", "", err
	}
	for i := 0; i < max(1, n/100); i++ {
		rand.Read(pubs[i*97%n][:])
	}
	return base, changed, writeScaleConfig(changed, priv, pubs)
}

func writeScaleConfig(path string, priv keys.Key, pubs []keys.Key) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	fmt.Fprintf(w, `node: {name: scale, region: scale}
clients:
  private_key: %s
  listen_port: 0
  address: 10.64.0.1/10
  uapi: false
  peers:
`, priv)
	base := netip.MustParseAddr("10.64.0.2").As4()
	ip := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i, k := range pubs {
		a := ip + uint32(i)
		fmt.Fprintf(w, "    - {name: c%d, public_key: %s, allowed_ips: [%d.%d.%d.%d/32]}\n",
			i, k, a>>24, a>>16&0xff, a>>8&0xff, a&0xff)
	}
	fmt.Fprintf(w, `egress:
  mode: netstack
  prefixes: [10.1.0.0/16]
health: {listen: "127.0.0.1:0", tcp_listen: "off"}
log: {level: error}
`)
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ScaleChild is the child side of RunScale: it starts a gateway from the
// configuration at path, measures it, reloads it from reloadPath and
// writes one ScalePoint as JSON to w.
func ScaleChild(path, reloadPath string, w io.Writer) error {
	start := time.Now()
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	loaded := time.Since(start)
	g, err := gateway.New(cfg, gateway.Options{})
	if err != nil {
		return err
	}
	defer g.Close()
	p := ScalePoint{Clients: len(cfg.Clients.Peers), StartSec: time.Since(start).Seconds(), LoadSec: loaded.Seconds()}
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.HeapBytes = int64(ms.HeapAlloc)
	p.Goroutines = runtime.NumGoroutine()
	p.RSSBytes, p.PeakRSSByte = selfRSS()

	start = time.Now()
	cfg2, err := config.Load(reloadPath)
	if err != nil {
		return err
	}
	if err := g.Reload(cfg2); err != nil {
		return err
	}
	p.ReloadSec = time.Since(start).Seconds()
	return json.NewEncoder(w).Encode(p)
}

// selfRSS reads VmRSS and VmHWM of this process.
func selfRSS() (rss, peak int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		}
	}
	return rss, peak
}

// Markdown renders the scale report.
func (r *ScaleReport) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Configured clients (`anyguard bench scale`), one netstack-mode gateway per size in a fresh process, %s, %s, %d cores.\n\n",
		m.Date[:10], m.CPU, m.Cores)
	b.WriteString("| clients | start (load + up) | of which config load | RSS | Go heap | goroutines | reload, 1% changed |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, p := range r.Points {
		if p.Error != "" {
			fmt.Fprintf(&b, "| %d | does not start: %s | | | | | |\n", p.Clients, strings.ReplaceAll(p.Error, "|", "/"))
			continue
		}
		fmt.Fprintf(&b, "| %d | %.2f s | %.2f s | %.0f MB | %.0f MB | %d | %.2f s |\n",
			p.Clients, p.StartSec, p.LoadSec, float64(p.RSSBytes)/1e6, float64(p.HeapBytes)/1e6, p.Goroutines, p.ReloadSec)
	}
	if perClient, ok := r.perClientRSS(); ok {
		fmt.Fprintf(&b, "\nEach configured client adds ≈ %.0f KB of RSS here.", perClient/1e3)
	}
	b.WriteString("\nEvery configured client is today a live wireguard-go peer (≈ 18 KB and two goroutines each), so memory and\n")
	b.WriteString("start-up grow linearly with the configured set; the goals (100k clients in ≤ 200 MB, start ≤ 2 s, reload ≤ 1 s)\n")
	b.WriteString("need peers added just in time on their first handshake, which is planned work. wireguard-go also refuses\n")
	b.WriteString("more than 65,536 peers per device (device.MaxPeers), so today 100k configured clients cannot start at all.\n")
	return b.String()
}

// perClientRSS is the growth of RSS per configured client between the
// smallest and the largest size that started.
func (r *ScaleReport) perClientRSS() (float64, bool) {
	var lo, hi *ScalePoint
	for i := range r.Points {
		p := &r.Points[i]
		if p.Error != "" {
			continue
		}
		if lo == nil || p.Clients < lo.Clients {
			lo = p
		}
		if hi == nil || p.Clients > hi.Clients {
			hi = p
		}
	}
	if lo == nil || hi.Clients == lo.Clients {
		return 0, false
	}
	return float64(hi.RSSBytes-lo.RSSBytes) / float64(hi.Clients-lo.Clients), true
}
