package archtest

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/anyguard/anyguard"

// anything marks a package that may import every package of the module:
// the wiring (internal/gateway) and the command.
var anything = []string{"*"}

// rules is each package of the module (relative to the module path) and the
// module packages its non-test files may import. A package missing from
// the table fails the test, so a new package needs a line here; a package
// under internal/gateway that the gateway's split adds gets one like any
// other (anything, or the narrow list it needs).
//
// Standard library and third-party imports are free, except that the
// packages with noGVisor must not depend on gVisor, even indirectly, that
// a package imports none of its forbid prefixes, and that no production
// code but a *test helper package imports testing or a *test package.
var rules = map[string]struct {
	may      []string
	noGVisor bool
	forbid   []string
}{
	"packet":            {noGVisor: true},
	"wgkey":             {noGVisor: true},
	"router":            {may: []string{"packet"}, noGVisor: true},
	"router/routertest": {may: []string{"packet", "router"}},
	"device":            {may: []string{"packet", "wgkey"}, noGVisor: true},
	// The reader works on message bytes alone: no wireguard-go.
	"device/handshake":    {may: []string{"wgkey"}, noGVisor: true, forbid: []string{"golang.zx2c4.com/"}},
	"device/netstack":     {may: []string{"packet"}},
	"cluster":             {may: []string{"wgkey"}, noGVisor: true},
	"cluster/clustertest": {may: []string{"cluster", "wgkey"}},
	// health reads the gateway through interfaces it declares itself, and
	// writes the Prometheus text format itself (expo.go): client_golang
	// would bring protobuf and push the image past 20 MB.
	"health":           {noGVisor: true, forbid: []string{"github.com/prometheus/", "google.golang.org/protobuf"}},
	"bench":            {may: []string{"bench/netns", "cluster", "internal/config", "internal/gateway", "internal/wgclient", "wgkey"}},
	"bench/failover":   {may: []string{"bench", "cluster", "health", "internal/config", "internal/gateway", "internal/keys", "router"}},
	"bench/netns":      {may: []string{"wgkey"}},
	"internal/keys":    {may: []string{"wgkey"}},
	"internal/config":  {may: []string{"internal/keys", "wgkey"}},
	"internal/gateway": {may: anything},
	// The gateway's parts never import the gateway (nor each other but
	// for a type): each declares narrow interfaces for what it needs.
	"internal/gateway/admission": {may: []string{"device", "device/handshake", "internal/config", "internal/keys"}},
	"internal/gateway/recovery":  {may: []string{"cluster", "internal/config", "internal/gateway/probe", "internal/keys", "packet"}},
	"internal/gateway/membership": {may: []string{"cluster", "device", "health", "internal/config", "internal/gateway/admission",
		"internal/gateway/probe", "internal/keys", "router"}},
	"internal/gateway/relay": {may: []string{"cluster", "device"}},
	"internal/gateway/probe": {may: []string{"device", "internal/config", "internal/keys", "packet"}},
	"internal/demo":          {may: []string{"internal/config", "internal/gateway", "internal/keys", "internal/lbsim", "internal/wgclient"}},
	"internal/wgclient":      {may: []string{"internal/keys", "wgkey"}},
	"internal/lbsim":         {},
	"internal/sdnotify":      {},
	"internal/testwait":      {}, // imports no testing: takes a TB-like interface
	"internal/e2etest":       {},
	"internal/archtest":      {},
	"e2e":                    {}, // tests only
	"cmd/anyguard":           {may: anything},
}

// pkg is what go list says of a package.
type pkg struct {
	ImportPath string
	Imports    []string
	Deps       []string
	Error      *struct{ Err string }
}

func listModule(t *testing.T) []pkg {
	t.Helper()
	cmd := exec.Command("go", "list", "-e", "-deps=false", "-json=ImportPath,Imports,Deps,Error", module+"/...")
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	var pkgs []pkg
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p pkg
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if p.Error != nil {
			t.Fatalf("go list %s: %s", p.ImportPath, p.Error.Err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// violations returns what p breaks of its rule, one message each.
func violations(p pkg) []string {
	rel := strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")
	rule, ok := rules[rel]
	if !ok {
		return []string{rel + " is not in the import rules table (internal/archtest): add it with the module packages it may import"}
	}
	var out []string
	helper := strings.HasSuffix(rel, "test") // routertest, e2etest: helpers for tests
	for _, imp := range p.Imports {
		for _, f := range rule.forbid {
			if strings.HasPrefix(imp, f) {
				out = append(out, rel+" imports "+imp+", which its rule forbids")
			}
		}
		if !helper && (imp == "testing" || strings.HasPrefix(imp, module+"/") && strings.HasSuffix(imp, "test")) {
			out = append(out, rel+" imports "+imp+" outside its tests")
		}
		dep, ok := strings.CutPrefix(imp, module+"/")
		if !ok || slices.Equal(rule.may, anything) || slices.Contains(rule.may, dep) {
			continue
		}
		out = append(out, rel+" imports "+dep+", which its rule does not allow")
	}
	if rule.noGVisor {
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "gvisor.dev/") {
				out = append(out, rel+" depends on "+d+" (no gVisor allowed)")
				break
			}
		}
	}
	return out
}

func TestImportRules(t *testing.T) {
	seen := make(map[string]bool)
	for _, p := range listModule(t) {
		seen[strings.TrimPrefix(strings.TrimPrefix(p.ImportPath, module), "/")] = true
		for _, v := range violations(p) {
			t.Error(v)
		}
	}
	for rel := range rules {
		if !seen[rel] {
			t.Errorf("the import rules name %s, which is no package of the module any more", rel)
		}
	}
}

// TestViolations: the checks catch what they are for.
func TestViolations(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    pkg
		want string
	}{
		{"forbidden module import", pkg{ImportPath: module + "/router", Imports: []string{module + "/health"}}, "router imports health, which its rule does not allow"},
		{"gvisor dependency", pkg{ImportPath: module + "/device", Deps: []string{"fmt", "gvisor.dev/gvisor/pkg/tcpip"}}, "device depends on gvisor.dev/gvisor/pkg/tcpip"},
		{"forbidden third-party import", pkg{ImportPath: module + "/health", Imports: []string{"github.com/prometheus/client_golang/prometheus"}}, "health imports github.com/prometheus/client_golang/prometheus, which its rule forbids"},
		{"part imports the gateway", pkg{ImportPath: module + "/internal/gateway/admission", Imports: []string{module + "/internal/gateway"}}, "internal/gateway/admission imports internal/gateway, which its rule does not allow"},
		{"unknown package", pkg{ImportPath: module + "/newpkg"}, "newpkg is not in the import rules table"},
		{"testing in production", pkg{ImportPath: module + "/cluster", Imports: []string{"testing"}}, "cluster imports testing outside its tests"},
		{"test helper in production", pkg{ImportPath: module + "/internal/gateway", Imports: []string{module + "/router/routertest"}}, "internal/gateway imports " + module + "/router/routertest outside its tests"},
	} {
		got := violations(tc.p)
		if len(got) == 0 || !strings.Contains(strings.Join(got, "\n"), tc.want) {
			t.Errorf("%s: %q, want a message containing %q", tc.name, got, tc.want)
		}
	}
	ok := []pkg{
		{ImportPath: module + "/router", Imports: []string{"fmt", module + "/packet", "github.com/gaissmai/bart"}, Deps: []string{"fmt"}},
		{ImportPath: module + "/internal/gateway", Imports: []string{module + "/device/netstack", module + "/cluster"}},
		{ImportPath: module + "/internal/e2etest", Imports: []string{"testing"}},
	}
	for _, p := range ok {
		if v := violations(p); len(v) != 0 {
			t.Errorf("%s: %q", p.ImportPath, v)
		}
	}
}
