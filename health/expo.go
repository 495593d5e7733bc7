package health

import (
	"bufio"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// This file writes the Prometheus text exposition format (version 0.0.4)
// itself. Every series here is computed at scrape time from a snapshot, so
// the gateway needs no registry, and leaving out client_golang leaves out
// protobuf and its reflection with it: about 1.7 MB of the static binary
// (docs/container.md). Tests parse the output with Prometheus' own parser.

// metricType is a family's # TYPE.
type metricType string

const (
	typeGauge     metricType = "gauge"
	typeCounter   metricType = "counter"
	typeHistogram metricType = "histogram"
)

// desc describes one metric family: its name, help, type and label names.
type desc struct {
	name   string
	help   string
	typ    metricType
	labels []string
}

func gaugeDesc(name, help string, labels ...string) *desc {
	return &desc{name: name, help: help, typ: typeGauge, labels: labels}
}

func counterDesc(name, help string, labels ...string) *desc {
	return &desc{name: name, help: help, typ: typeCounter, labels: labels}
}

func histogramDesc(name, help string) *desc {
	return &desc{name: name, help: help, typ: typeHistogram}
}

// sample is one line of a family: a suffix of the family's name ("" or,
// for histograms, "_bucket", "_sum", "_count"), label values in the order
// of the desc's label names (then "le" for buckets), and the value.
type sample struct {
	suffix string
	values []string
	le     string // histogram buckets only
	value  float64
}

type family struct {
	d       *desc
	samples []sample
}

// exposition collects the families of one scrape, in any order, and
// writes them sorted by name, each family's series sorted by label values,
// as client_golang's registry does.
type exposition struct {
	fams map[*desc]*family
}

func newExposition() *exposition { return &exposition{fams: make(map[*desc]*family)} }

func (e *exposition) family(d *desc) *family {
	f := e.fams[d]
	if f == nil {
		f = &family{d: d}
		e.fams[d] = f
	}
	return f
}

// add records one gauge or counter series. A wrong number of label values
// is a programmer error.
func (e *exposition) add(d *desc, v float64, values ...string) {
	if len(values) != len(d.labels) || d.typ == typeHistogram {
		panic("health: metric " + d.name + ": wrong label values or type")
	}
	f := e.family(d)
	f.samples = append(f.samples, sample{values: values, value: v})
}

func (e *exposition) gauge(d *desc, v float64, values ...string) { e.add(d, v, values...) }

func (e *exposition) counter(d *desc, v uint64, values ...string) { e.add(d, float64(v), values...) }

// histogram records a histogram without labels from cumulative bucket
// counts (upper bound → count at or below it); +Inf is count.
func (e *exposition) histogram(d *desc, s HistogramSnapshot) {
	if d.typ != typeHistogram {
		panic("health: metric " + d.name + " is not a histogram")
	}
	f := e.family(d)
	bounds := make([]float64, 0, len(s.Buckets))
	for b := range s.Buckets {
		if !math.IsInf(b, +1) { // written below from Count
			bounds = append(bounds, b)
		}
	}
	slices.Sort(bounds)
	for _, b := range bounds {
		f.samples = append(f.samples, sample{suffix: "_bucket", le: expoFloat(b), value: float64(s.Buckets[b])})
	}
	f.samples = append(f.samples,
		sample{suffix: "_bucket", le: "+Inf", value: float64(s.Count)},
		sample{suffix: "_sum", value: s.Sum},
		sample{suffix: "_count", value: float64(s.Count)})
}

// writeTo writes every family in the text format.
func (e *exposition) writeTo(w io.Writer) error {
	fams := make([]*family, 0, len(e.fams))
	for _, f := range e.fams {
		fams = append(fams, f)
	}
	slices.SortFunc(fams, func(a, b *family) int { return strings.Compare(a.d.name, b.d.name) })
	bw := bufio.NewWriter(w)
	for _, f := range fams {
		if f.d.typ != typeHistogram {
			slices.SortStableFunc(f.samples, func(a, b sample) int { return slices.Compare(a.values, b.values) })
		}
		bw.WriteString("# HELP ")
		bw.WriteString(f.d.name)
		bw.WriteByte(' ')
		writeEscaped(bw, f.d.help, false)
		bw.WriteString("\n# TYPE ")
		bw.WriteString(f.d.name)
		bw.WriteByte(' ')
		bw.WriteString(string(f.d.typ))
		bw.WriteByte('\n')
		for _, s := range f.samples {
			bw.WriteString(f.d.name)
			bw.WriteString(s.suffix)
			n := 0
			label := func(name, value string) {
				if n == 0 {
					bw.WriteByte('{')
				} else {
					bw.WriteByte(',')
				}
				n++
				bw.WriteString(name)
				bw.WriteString(`="`)
				writeEscaped(bw, value, true)
				bw.WriteByte('"')
			}
			for i, v := range s.values {
				label(f.d.labels[i], v)
			}
			if s.le != "" {
				label("le", s.le)
			}
			if n > 0 {
				bw.WriteByte('}')
			}
			bw.WriteByte(' ')
			bw.WriteString(expoFloat(s.value))
			bw.WriteByte('\n')
		}
	}
	return bw.Flush()
}

// writeEscaped writes s with the text format's escapes: backslash and
// newline always, the double quote in label values. Invalid UTF-8 (a label
// value is a client or node name from outside) becomes U+FFFD, which the
// format requires.
func writeEscaped(w *bufio.Writer, s string, quote bool) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			w.WriteString(`\\`)
		case c == '\n':
			w.WriteString(`\n`)
		case c == '"' && quote:
			w.WriteString(`\"`)
		default:
			w.WriteByte(c)
		}
	}
}

// expoFloat formats a value as Prometheus does: shortest 'g' form, and
// +Inf, -Inf and NaN by name.
func expoFloat(v float64) string {
	switch {
	case math.IsInf(v, +1):
		return "+Inf"
	case math.IsInf(v, -1):
		return "-Inf"
	case math.IsNaN(v):
		return "NaN"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
