package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// The project's documentation is README.md and docs/*.md. These tests keep
// it inside the repository: a clone must be able to follow every link.

const readmeMaxLines = 200

// repoRoot is the module root, two directories above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root not found above cmd/anyguard: %v", err)
	}
	return root
}

func docFiles(t *testing.T, root string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(root, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	return append([]string{filepath.Join(root, "README.md")}, files...)
}

// mdLink matches the target of an inline markdown link or image,
// [text](target) or [text](target "title"); reference definitions,
// [name]: target, are matched by mdRef.
var (
	mdLink = regexp.MustCompile(`\]\(\s*<?([^)\s>]+)>?(?:\s+"[^"]*")?\s*\)`)
	mdRef  = regexp.MustCompile(`(?m)^ {0,3}\[[^\]]+\]:\s+<?(\S+?)>?(?:\s|$)`)
	mdCode = regexp.MustCompile("(?s)```.*?```|`[^`\n]*`")
)

// docLinks returns the link targets in markdown text, outside code.
func docLinks(text string) []string {
	text = mdCode.ReplaceAllString(text, "")
	var out []string
	for _, re := range []*regexp.Regexp{mdLink, mdRef} {
		for _, m := range re.FindAllStringSubmatch(text, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// checkLink reports what is wrong with target, a link in the file from,
// or "" if it names a file or directory of the repository at root (or a
// place on the web, or an anchor in from itself).
func checkLink(root, from, target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return "not a URL: " + err.Error()
	}
	switch {
	case u.Scheme == "http" || u.Scheme == "https" || u.Scheme == "mailto":
		return ""
	case u.Scheme != "" || u.Host != "":
		return "a " + u.Scheme + " link: only relative links into the repository or web links"
	case u.Path == "":
		return "" // #anchor in the same file
	case strings.HasPrefix(u.Path, "/"):
		return "an absolute path: link relative to the file instead"
	}
	p := filepath.Join(filepath.Dir(from), filepath.FromSlash(u.Path))
	rel, err := filepath.Rel(root, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return "leaves the repository"
	}
	if _, err := os.Stat(p); err != nil {
		return "no such file in the repository: " + rel
	}
	if u.Fragment != "" && strings.HasSuffix(p, ".md") {
		b, err := os.ReadFile(p)
		if err != nil {
			return err.Error()
		}
		if !slices.Contains(headingAnchors(string(b)), u.Fragment) {
			return "no heading #" + u.Fragment + " in " + rel
		}
	}
	return ""
}

// headingAnchors returns the anchors GitHub gives the headings of a
// markdown text: lower case, punctuation other than - and _ removed,
// spaces turned into -, and -1, -2... for repeats.
func headingAnchors(text string) []string {
	text = regexp.MustCompile("(?s)```.*?```").ReplaceAllString(text, "")
	seen := map[string]int{}
	var out []string
	for _, m := range regexp.MustCompile(`(?m)^#{1,6}[ \t]+(.+?)[ \t#]*$`).FindAllStringSubmatch(text, -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(m[1]) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out = append(out, fmt.Sprintf("%s-%d", a, n))
		} else {
			out = append(out, a)
		}
		seen[a]++
	}
	return out
}

// TestDocLinksStayInRepository: every relative link in README.md and
// docs/*.md resolves to a file or directory of the repository (and a
// heading there, when it names one), none leaves it (../shared is not in a
// clone), and none is absolute.
func TestDocLinksStayInRepository(t *testing.T) {
	root := repoRoot(t)
	files := docFiles(t, root)
	if len(files) < 5 {
		t.Fatalf("found only %v: README.md and docs/*.md expected", files)
	}
	links := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		name, _ := filepath.Rel(root, f)
		for _, target := range docLinks(string(b)) {
			links++
			if why := checkLink(root, f, target); why != "" {
				t.Errorf("%s: link %q: %s", name, target, why)
			}
		}
	}
	if links < 20 {
		t.Errorf("found only %d links in %d files: is the link pattern broken?", links, len(files))
	}
}

// TestCheckLink is the link check itself, on links it must refuse.
func TestCheckLink(t *testing.T) {
	root := repoRoot(t)
	readme := filepath.Join(root, "README.md")
	doc := filepath.Join(root, "docs", "x.md")
	for _, c := range []struct {
		from, target string
		ok           bool
	}{
		{readme, "docs/architecture.md", true},
		{readme, "docs/architecture.md#packet-path", true},
		{readme, "docs/operations.md#keys-and-rotation", true},
		{readme, "docs/architecture.md#no-such-heading", false},
		{readme, "#quick-start", true},
		{readme, "https://www.wireguard.com/", true},
		{doc, "../README.md", true},
		{doc, "../examples/anyguard.yaml", true},
		{doc, "architecture.md", true},
		{readme, "../shared/DESIGN.md", false},
		{doc, "../../shared/notes/wireguard-go.md", false},
		{doc, "../docs/../../x", false},
		{readme, "/work/shared/DESIGN.md", false},
		{readme, "file:///etc/passwd", false},
		{readme, "docs/no-such-file.md", false},
		{doc, "no-such-file.md", false},
		{readme, "%zz", false},
	} {
		why := checkLink(root, c.from, c.target)
		if (why == "") != c.ok {
			t.Errorf("checkLink(%s, %q) = %q, want ok=%v", filepath.Base(c.from), c.target, why, c.ok)
		}
	}
	if got := headingAnchors("# A `b` c\n## Keys and rotation\n```\n# not a heading\n```\n## Keys and rotation\n### Ownership over gossip, and failure detection ##\n"); strings.Join(got, " ") != "a-b-c keys-and-rotation keys-and-rotation-1 ownership-over-gossip-and-failure-detection" {
		t.Errorf("headingAnchors = %q", got)
	}
	got := docLinks("[a](x.md) `[b](in-code.md)` [c](<y.md> \"t\")\n```\n[d](fenced.md)\n```\n[e]: z.md\n")
	if strings.Join(got, ",") != "x.md,y.md,z.md" {
		t.Errorf("docLinks = %q, want x.md, y.md and z.md", got)
	}
}

// TestReadmeShort: README.md is what a newcomer reads first; details go
// in docs/.
func TestReadmeShort(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(b, []byte("\n")); n > readmeMaxLines {
		t.Errorf("README.md has %d lines, at most %d: move details into docs/", n, readmeMaxLines)
	}
}

// makeBenchLine matches a benchmark make bench splices into $(BENCH_DOC).
var makeBenchLine = regexp.MustCompile(`bin/anyguard bench (\w+) .*--doc \$\(BENCH_DOC\)`)

// TestMakeBenchWritesBenchmarksDoc: make bench splices every benchmark's
// table into docs/benchmarks.md, which has the markers of each, and the
// --doc flag (and its old name --readme) writes between them.
func TestMakeBenchWritesBenchmarksDoc(t *testing.T) {
	root := repoRoot(t)
	mk, err := os.ReadFile(filepath.Join(root, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	mk = bytes.ReplaceAll(mk, []byte("\\\n"), []byte(" ")) // join continued lines
	if !regexp.MustCompile(`(?m)^BENCH_DOC\s*\?=\s*` + regexp.QuoteMeta(benchDoc) + `\s*$`).Match(mk) {
		t.Errorf("Makefile: BENCH_DOC is not %s", benchDoc)
	}
	if bytes.Contains(mk, []byte("--readme")) {
		t.Error("Makefile still splices with --readme: use --doc $(BENCH_DOC)")
	}
	var names []string
	for _, m := range makeBenchLine.FindAllSubmatch(mk, -1) {
		names = append(names, string(m[1]))
	}
	for _, want := range []string{"micro", "throughput", "scale", "handshakes", "cluster"} {
		if !strings.Contains(" "+strings.Join(names, " ")+" ", " "+want+" ") {
			t.Errorf("make bench does not splice %q into $(BENCH_DOC); it splices %v", want, names)
		}
	}
	doc, err := os.ReadFile(filepath.Join(root, benchDoc))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		for _, m := range []string{"<!-- bench:" + n + ":begin -->\n", "<!-- bench:" + n + ":end -->"} {
			if bytes.Count(doc, []byte(m)) != 1 {
				t.Errorf("%s: want the marker %q once", benchDoc, strings.TrimSpace(m))
			}
		}
	}

	// The flag, through the command: micro reads go test output on stdin.
	const out = "goos: linux\npkg: github.com/anyguard/anyguard/router\n" +
		"BenchmarkForward-2   	  100	  21900 ns/op	8179.00 MB/s	0 B/op	0 allocs/op\nPASS\n"
	for _, flag := range []string{"--doc", "--readme"} {
		tmp := filepath.Join(t.TempDir(), "benchmarks.md")
		if err := os.WriteFile(tmp, doc, 0o644); err != nil {
			t.Fatal(err)
		}
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), []string{"bench", "micro", flag, tmp}, strings.NewReader(out), &stdout, &stderr); code != 0 {
			t.Fatalf("bench micro %s: exit %d: %s", flag, code, stderr.String())
		}
		got, err := os.ReadFile(tmp)
		if err != nil {
			t.Fatal(err)
		}
		begin := bytes.Index(got, []byte("<!-- bench:micro:begin -->"))
		end := bytes.Index(got, []byte("<!-- bench:micro:end -->"))
		if begin < 0 || end < begin || !bytes.Contains(got[begin:end], []byte("21.9 µs/op")) {
			t.Errorf("bench micro %s: the table is not between the micro markers:\n%s", flag, got[max(begin, 0):max(end, 0)])
		}
		if !bytes.Contains(got, []byte("<!-- bench:cluster:begin -->")) {
			t.Errorf("bench micro %s: lost the other tables", flag)
		}
	}
}

// TestNoPointersToSharedNotes: no file of the repository sends its reader
// to the design notes kept beside it during development (../shared), which
// a clone does not have.
func TestNoPointersToSharedNotes(t *testing.T) {
	root := repoRoot(t)
	bad := regexp.MustCompile(`\.\./shared/|\bshared/notes/|/work/shared\b`)
	self, err := filepath.Abs("docs_test.go")
	if err != nil {
		t.Fatal(err)
	}
	files := 0
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "bin", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".yaml", ".yml", ".sh", ".hcl", ".json", ".service":
		default:
			if filepath.Base(path) != "Makefile" && filepath.Base(path) != "Dockerfile" {
				return nil
			}
		}
		if path == self {
			return nil
		}
		b, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil // removed since it was listed
		}
		if err != nil {
			return err
		}
		files++
		for i, line := range strings.Split(string(b), "\n") {
			if bad.MatchString(line) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d points outside the repository: %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 50 {
		t.Errorf("looked at only %d files", files)
	}
}
