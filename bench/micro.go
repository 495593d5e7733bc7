package bench

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// MicroResult is one line of `go test -bench -benchmem` output.
type MicroResult struct {
	Package string             `json:"package"`
	Name    string             `json:"name"` // without the Benchmark prefix and -GOMAXPROCS suffix
	N       int64              `json:"n"`
	Metrics map[string]float64 `json:"metrics"` // unit → value: ns/op, B/op, allocs/op, MB/s, custom
	units   []string           // in the order printed
}

// MicroReport is a set of Go micro-benchmark results.
type MicroReport struct {
	Machine Machine       `json:"machine"`
	Results []MicroResult `json:"results"`
}

// ParseMicro reads `go test -bench` output (the standard text format, as
// many packages as it holds) and keeps the benchmark lines.
func ParseMicro(r io.Reader) (*MicroReport, error) {
	rep := &MicroReport{Machine: DescribeMachine()}
	var pkg string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		if p, ok := strings.CutPrefix(line, "pkg: "); ok {
			pkg = strings.TrimSpace(p)
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") || len(f)%2 != 0 {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		name := strings.TrimPrefix(f[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		res := MicroResult{Package: pkg, Name: name, N: n, Metrics: map[string]float64{}}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				continue
			}
			res.Metrics[f[i+1]] = v
			res.units = append(res.units, f[i+1])
		}
		rep.Results = append(rep.Results, res)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(rep.Results) == 0 {
		return nil, fmt.Errorf("no benchmark results in the input")
	}
	return rep, nil
}

// Markdown renders the results as one table.
func (r *MicroReport) Markdown() string {
	var b strings.Builder
	m := r.Machine
	fmt.Fprintf(&b, "Go micro-benchmarks (`go test -bench . -benchmem`), %s, %s, %d cores, %s.\n\n", m.Date[:10], m.CPU, m.Cores, m.GoVersion)
	b.WriteString("| package | benchmark | result |\n|---|---|---|\n")
	for _, x := range r.Results {
		var parts []string
		for _, u := range x.units {
			parts = append(parts, formatMetric(x.Metrics[u], u))
		}
		pkg := x.Package
		if i := strings.LastIndexByte(pkg, '/'); i >= 0 {
			pkg = pkg[i+1:]
		}
		fmt.Fprintf(&b, "| %s | `%s` | %s |\n", pkg, x.Name, strings.Join(parts, ", "))
	}
	return b.String()
}

func formatMetric(v float64, unit string) string {
	switch unit {
	case "ns/op":
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms/op", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1f µs/op", v/1e3)
		}
		return fmt.Sprintf("%.0f ns/op", v)
	case "B/op", "allocs/op":
		return fmt.Sprintf("%.0f %s", v, unit)
	}
	if v >= 1e6 && strings.HasSuffix(unit, "/s") && unit != "MB/s" {
		return fmt.Sprintf("%.2f M %s", v/1e6, unit)
	}
	return fmt.Sprintf("%.0f %s", v, unit)
}
