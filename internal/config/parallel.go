package config

import (
	"bytes"
	"errors"
	"io"
	"runtime"
	"sync"

	"go.yaml.in/yaml/v3"
)

// Parsing a long list of peers in parallel.
//
// go.yaml.in/yaml/v3 parses about 10 MB/s here, and a file with 100k
// clients is 11 MB: parsing is most of the time to load it. The list of
// peers is almost all of such a file, and its entries are independent, so
// parallelPeers cuts it at entry boundaries (lines that start a list item
// at the list's own indentation), parses the pieces and the rest of the
// file concurrently, each at its own line numbers, and joins the trees.
//
// It is only a shortcut: whenever the file does not have the expected
// simple shape, or any piece does not parse as a list, it reports false
// and the caller parses the whole file as before, so errors, and every
// file the shortcut does not recognise, come out exactly as without it.

// parallelMinLines is the size of a peer list below which it is not worth
// splitting (a variable for tests).
var parallelMinLines = 5000

// parallelPeers parses data into doc, splitting its clients.peers list,
// and reports whether it could.
func parallelPeers(data []byte, doc *yaml.Node) bool {
	workers := min(runtime.GOMAXPROCS(0), 8)
	if workers < 2 || bytes.HasPrefix(data, []byte("\xef\xbb\xbf")) || len(data) > 0 && (data[0] == 0xfe || data[0] == 0xff || data[0] == 0) {
		return false
	}
	lines := bytes.SplitAfter(data, []byte("\n"))
	// The "peers:" key with no value on its line, indented (inside clients).
	key := -1
	var keyIndent int
	for i, l := range lines {
		t := bytes.TrimRight(l, " \r\n")
		ind := indentOf(t)
		if ind > 0 && string(t[ind:]) == "peers:" {
			if key >= 0 {
				return false // two of them: not the simple shape
			}
			key, keyIndent = i, ind
		}
	}
	if key < 0 {
		return false
	}
	// The list: items at indentation j >= the key's; it ends at the first
	// line that is not blank, a comment, deeper, or another item at j.
	j := -1
	end := len(lines)
	var starts []int // lines that start an item
	for i := key + 1; i < len(lines); i++ {
		t := bytes.TrimRight(lines[i], " \r\n")
		if bytes.IndexByte(lines[i], '\t') >= 0 {
			return false
		}
		ind := indentOf(t)
		if ind == len(t) || t[ind] == '#' {
			continue
		}
		if j < 0 {
			if ind < keyIndent || !isItem(t[ind:]) {
				return false
			}
			j = ind
		}
		if ind < j || ind == j && !isItem(t[ind:]) {
			end = i
			break
		}
		if ind == j {
			starts = append(starts, i)
		}
	}
	if len(starts) < parallelMinLines {
		return false
	}
	// Pieces of about equal numbers of items.
	n := min(workers, len(starts))
	bounds := make([]int, 0, n+1)
	for k := range n {
		bounds = append(bounds, starts[k*len(starts)/n])
	}
	bounds = append(bounds, end)

	// The rest of the file keeps its line numbers: the list's lines
	// become empty lines.
	var rest bytes.Buffer
	rest.Grow(len(data))
	for i, l := range lines {
		if i > key && i < end {
			rest.WriteByte('\n')
			continue
		}
		rest.Write(l)
	}
	pieces := make([]yaml.Node, n)
	var restErr error
	errs := make([]error, n)
	var wg sync.WaitGroup
	for k := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var b bytes.Buffer
			b.Grow(bounds[k] + lineBytes(lines[bounds[k]:bounds[k+1]]))
			for range bounds[k] {
				b.WriteByte('\n') // the same line numbers as in data
			}
			for _, l := range lines[bounds[k]:bounds[k+1]] {
				b.Write(l)
			}
			errs[k] = parseOne(b.Bytes(), &pieces[k])
		}()
	}
	restErr = parseOne(rest.Bytes(), doc)
	wg.Wait()
	if restErr != nil || errors.Join(errs...) != nil {
		return false
	}
	// Join: every piece is a document holding one block list.
	var items []*yaml.Node
	for k := range pieces {
		p := &pieces[k]
		if p.Kind != yaml.DocumentNode || len(p.Content) != 1 {
			return false
		}
		seq := p.Content[0]
		if seq.Kind != yaml.SequenceNode || seq.Style != 0 || seq.Tag != "!!seq" || seq.Anchor != "" || seq.Column != j+1 {
			return false
		}
		items = append(items, seq.Content...)
	}
	slot := peersSlot(doc, key+1)
	if slot == nil {
		return false
	}
	first := pieces[0].Content[0]
	*slot = &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq", Line: first.Line, Column: first.Column, Content: items}
	return true
}

// parseOne parses data, which must hold exactly one YAML document.
func parseOne(data []byte, doc *yaml.Node) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(doc); err != nil {
		return err
	}
	var next yaml.Node
	if err := dec.Decode(&next); !errors.Is(err, io.EOF) {
		return errors.New("more than one document")
	}
	return nil
}

// peersSlot returns where the value of clients.peers sits in doc, if the
// key is on line and its value is empty (the list's lines were blanked).
func peersSlot(doc *yaml.Node, line int) **yaml.Node {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 {
		return nil
	}
	root := doc.Content[0]
	clients := mappingValue(root, "clients")
	if clients == nil || (*clients).Kind != yaml.MappingNode || (*clients).Tag != "!!map" || (*clients).Anchor != "" {
		return nil
	}
	m := *clients
	var slot **yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "peers" {
			v := m.Content[i+1]
			if slot != nil || k.Line != line || k.Style != 0 || v.Kind != yaml.ScalarNode || v.Tag != "!!null" || v.Value != "" || v.Anchor != "" {
				return nil
			}
			slot = &m.Content[i+1]
		}
	}
	return slot
}

// mappingValue returns where the value of key sits in the mapping m.
func mappingValue(m *yaml.Node, key string) **yaml.Node {
	if m.Kind != yaml.MappingNode || m.Tag != "!!map" || m.Anchor != "" {
		return nil
	}
	var out **yaml.Node
	for i := 0; i+1 < len(m.Content); i += 2 {
		if k := m.Content[i]; k.Kind == yaml.ScalarNode && k.Value == key {
			if out != nil {
				return nil // repeated: let the full parse report it
			}
			out = &m.Content[i+1]
		}
	}
	return out
}

func indentOf(t []byte) int {
	i := 0
	for i < len(t) && t[i] == ' ' {
		i++
	}
	return i
}

// isItem reports whether t (a line without its indentation) starts a
// block list item: "-" alone or followed by a space.
func isItem(t []byte) bool {
	return len(t) > 0 && t[0] == '-' && (len(t) == 1 || t[1] == ' ')
}

func lineBytes(ls [][]byte) int {
	n := 0
	for _, l := range ls {
		n += len(l)
	}
	return n
}
