package config

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/anyguard/anyguard/internal/keys"
)

// The peers file (clients.peers_file).
//
// Operators with tens of thousands of clients generate the list with
// tooling, and go.yaml.in/yaml/v3 parses about 10 MB/s: 100k clients in
// YAML take over a second to load. A peers file holds the same clients one
// per line, in a format a shell script can write and a loop without
// allocations per field can read (100k lines in a few tens of ms):
//
//	# NAME  PUBLIC_KEY  ALLOWED_IPS[,ALLOWED_IPS...]  [PRESHARED_KEY_FILE]
//	alice   tiV7rrxiHS2Tf5jIfVMp9SLwz1m1QLVMpMwPP3N2fGk=  10.99.0.2/32
//	bob     5hOstxRujSvsLBcu0CzlspvSpBGzsW4xUp/llcUUXRk=  10.99.0.3/32,10.99.1.0/24  bob.psk
//
// Fields are separated by spaces or tabs; a field that starts with # starts
// a comment; blank lines, CRLF line ends and a UTF-8 byte order mark are
// allowed. The preshared key can only come from a file here (relative to
// the configuration file's directory, like every *_file field): an inline
// preshared_key is YAML-only, so that the generated list holds no secret.

// MaxPeersFileLine is the longest line, in bytes, a peers file may have
// (a client with more allowed IPs than fit belongs in clients.peers).
const MaxPeersFileLine = 4096

// peersFileFields names the fields of a line, for errors.
const peersFileFields = "NAME PUBLIC_KEY ALLOWED_IPS[,ALLOWED_IPS...] [PRESHARED_KEY_FILE]"

// loadPeersFile reads the clients of the peers file named by c.PeersFile
// (relative to baseDir), replaces PeersFile by the path it read and
// appends the clients to c.Peers. It returns where they are, for the
// errors of validation.
func (c *Clients) loadPeersFile(v *validator, baseDir string) (*filePeers, error) {
	name := c.PeersFile
	if name == "" {
		if _, given := v.find("clients.peers_file"); given {
			return nil, v.errorf("clients.peers_file", ErrMissing, "empty file name")
		}
		return nil, nil
	}
	if !filepath.IsAbs(name) && baseDir != "" {
		name = filepath.Join(baseDir, name)
	}
	c.PeersFile = name
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, v.fieldError("clients.peers_file", err, "")
	}
	ps, lines, err := parsePeersFile(data, name, baseDir)
	if err != nil {
		return nil, err
	}
	fp := &filePeers{file: name, first: len(c.Peers), lines: lines}
	c.FilePeers = len(ps)
	if len(c.Peers) == 0 {
		c.Peers = ps
	} else {
		c.Peers = append(c.Peers[:len(c.Peers):len(c.Peers)], ps...)
	}
	return fp, nil
}

// parsePeersFile parses the text of the peers file named file: the
// clients, and the line each is on. Relative preshared key file paths
// resolve against baseDir. It checks each line on its own (names, keys,
// prefixes); what concerns several clients (duplicates, overlaps) is
// Clients.validate's. An error is a *FieldError naming file and line.
func parsePeersFile(data []byte, file, baseDir string) ([]Peer, []int32, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	text := string(data) // one copy: fields are sliced from it without allocating
	// Lines are independent: long files are cut at line ends into one
	// piece per core, parsed concurrently.
	workers := 1
	if len(text) >= parallelPeersFileBytes {
		workers = min(runtime.GOMAXPROCS(0), 8)
	}
	type piece struct {
		peers []Peer
		lines []int32
		err   error
	}
	pieces := make([]piece, workers)
	var wg sync.WaitGroup
	for k, from, line := 0, 0, 1; k < workers; k++ {
		to := len(text)
		if k < workers-1 {
			to = max(from, len(text)*(k+1)/workers)
			if i := strings.IndexByte(text[to:], '\n'); i >= 0 {
				to += i + 1
			} else {
				to = len(text)
			}
		}
		wg.Add(1)
		go func(chunk string, line int) {
			defer wg.Done()
			p := &pieces[k]
			p.peers, p.lines, p.err = parsePeerLines(chunk, line, file, baseDir)
		}(text[from:to], line)
		line += strings.Count(text[from:to], "\n")
		from = to
	}
	wg.Wait()
	n := 0
	for _, p := range pieces {
		if p.err != nil {
			return nil, nil, p.err // the first piece's: the first line's
		}
		n += len(p.peers)
	}
	if workers == 1 {
		return pieces[0].peers, pieces[0].lines, nil
	}
	peers := make([]Peer, 0, n)
	lines := make([]int32, 0, n)
	for _, p := range pieces {
		peers = append(peers, p.peers...)
		lines = append(lines, p.lines...)
	}
	return peers, lines, nil
}

// parallelPeersFileBytes is the size of a peers file from which it is
// parsed in pieces (a variable for tests).
var parallelPeersFileBytes = 256 << 10

// parsePeerLines parses text, the lines of file from line on.
func parsePeerLines(text string, line int, file, baseDir string) ([]Peer, []int32, error) {
	n := strings.Count(text, "\n") + 1
	peers := make([]Peer, 0, n)
	lines := make([]int32, 0, n)
	ips := make([]netip.Prefix, 0, n) // every client's allowed IPs, back to back
	ends := make([]int, 0, n)         // where each client's end in ips
	p := lineParser{file: file, baseDir: baseDir, line: line - 1}
	for off := 0; off < len(text); {
		p.line++
		end := strings.IndexByte(text[off:], '\n')
		if end < 0 {
			end = len(text)
		} else {
			end += off
		}
		line := text[off:end]
		off = end + 1
		peer, more, err := p.parse(line, ips)
		if err != nil {
			return nil, nil, err
		}
		if more == nil {
			continue // blank or comment
		}
		ips = more
		peers = append(peers, peer)
		lines = append(lines, int32(p.line))
		ends = append(ends, len(ips))
	}
	start := 0
	for i, end := range ends {
		peers[i].AllowedIPs = ips[start:end:end]
		start = end
	}
	return peers, lines, nil
}

// lineParser parses the lines of one peers file.
type lineParser struct {
	file, baseDir string
	line          int
}

// fail returns err, a *FieldError for a field of the line, placed at the
// line.
func (p *lineParser) fail(err error) error {
	fe := err.(*FieldError)
	fe.File, fe.Line = p.file, p.line
	return fe
}

func (p *lineParser) errorf(field string, kind error, format string, args ...any) error {
	return p.fail(&FieldError{Path: field, Err: errorf(kind, format, args...)})
}

// parse parses one line (without its "\n") and appends its allowed IPs to
// ips. It returns ips == nil for a line without a client.
func (p *lineParser) parse(line string, ips []netip.Prefix) (Peer, []netip.Prefix, error) {
	if len(line) > MaxPeersFileLine {
		return Peer{}, nil, p.errorf("", ErrInvalidValue, "line is longer than %d bytes", MaxPeersFileLine)
	}
	var f [4]string
	nf := 0
	for rest := line; ; {
		rest = strings.TrimLeft(rest, " \t\r")
		if rest == "" || rest[0] == '#' {
			break
		}
		end := strings.IndexAny(rest, " \t\r")
		if end < 0 {
			end = len(rest)
		}
		if nf == len(f) {
			return Peer{}, nil, p.errorf("", ErrInvalidValue, "more than %d fields: want %s", len(f), peersFileFields)
		}
		f[nf], rest = rest[:end], rest[end:]
		nf++
	}
	switch nf {
	case 0:
		return Peer{}, nil, nil
	case 1:
		return Peer{}, nil, p.errorf("public_key", ErrMissing, "required: want %s", peersFileFields)
	case 2:
		return Peer{}, nil, p.errorf("allowed_ips", ErrMissing, "required: want %s", peersFileFields)
	}
	var peer Peer
	if !validName(f[0], 64, "._@+-") {
		return Peer{}, nil, p.fail(checkName(&validator{}, "name", f[0], 64, "._@+-", ""))
	}
	peer.Name = strings.Clone(f[0])

	var err error
	if peer.PublicKey, err = parseKey(f[1]); err != nil {
		return Peer{}, nil, p.fail(&FieldError{Path: "public_key", Err: err}) // never echo key text
	}

	n := len(ips)
	for j, rest := 0, f[2]; ; j++ {
		s, more, _ := strings.Cut(rest, ",")
		field := func() string { return "allowed_ips[" + strconv.Itoa(j) + "]" } // for errors only
		if s == "" {
			return Peer{}, nil, p.errorf(field(), ErrMissing, "empty: separate prefixes by single commas, e.g. 10.99.0.2/32,10.99.1.0/24")
		}
		ip, err := netip.ParsePrefix(s)
		if err != nil {
			fe := &FieldError{Path: field(), Err: errorf(ErrInvalidValue, "%q is not a valid IP prefix", s)}
			if a, err := netip.ParseAddr(s); err == nil {
				fe.Hint = fmt.Sprintf("write %s/%d for a single address", s, a.BitLen())
			}
			return Peer{}, nil, p.fail(fe)
		}
		if !isNetwork(ip) {
			return Peer{}, nil, p.fail(checkNetwork(&validator{}, field(), ip))
		}
		ips = append(ips, ip)
		if len(rest) == len(s) {
			break
		}
		rest = more
	}
	peer.AllowedIPs = ips[n:len(ips):len(ips)] // set again by the caller, once ips stops growing

	if nf == 4 {
		name := f[3]
		if !filepath.IsAbs(name) && p.baseDir != "" {
			name = filepath.Join(p.baseDir, name)
		}
		k, err := keys.ReadFile(name)
		switch {
		case err != nil:
			return Peer{}, nil, p.fail(&FieldError{Path: "preshared_key_file", Err: err})
		case k.IsZero():
			return Peer{}, nil, p.errorf("preshared_key_file", ErrInvalidValue, "an all-zero key is not a key")
		}
		peer.PresharedKey = k
	}
	return peer, ips, nil
}

// parseKey parses a base64 public key without allocating.
func parseKey(s string) (keys.Key, error) {
	var k keys.Key
	var buf [keys.Len + 1]byte
	if len(s) != base64.StdEncoding.EncodedLen(keys.Len) {
		return k, keys.ErrBadKey
	}
	var src [44]byte
	copy(src[:], s)
	if n, err := base64.StdEncoding.Decode(buf[:], src[:]); err != nil || n != keys.Len {
		return k, keys.ErrBadKey
	}
	copy(k[:], buf[:keys.Len])
	if k.IsZero() {
		return k, errorf(ErrInvalidValue, "an all-zero key is not a key")
	}
	return k, nil
}

// CheckClientName returns an error unless name is a valid client name
// (1-64 of A-Z a-z 0-9 . _ @ + -), as clients.peers[].name and the peers
// file require.
func CheckClientName(name string) error {
	return checkName(&validator{}, "name", name, 64, "._@+-", "")
}

// PeersFileLine returns p as a line of a peers file (without the line
// end). A preshared key cannot be written there (it comes from a file).
func PeersFileLine(p Peer) string {
	var b strings.Builder
	b.WriteString(p.Name)
	b.WriteString(" ")
	b.WriteString(p.PublicKey.String())
	b.WriteString(" ")
	for i, ip := range p.AllowedIPs {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString(ip.String())
	}
	return b.String()
}

// PeersFileName returns the first field of a peers file line: the name of
// its client, or "" for a blank or comment line.
func PeersFileName(line string) string {
	f := strings.Fields(line)
	if len(f) == 0 || strings.HasPrefix(f[0], "#") {
		return ""
	}
	return f[0]
}
