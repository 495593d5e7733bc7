package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/anyguard/anyguard/internal/e2etest"
	"github.com/anyguard/anyguard/internal/keys"
)

// The observability pack in images/monitoring: alert rules checked and
// unit-tested by promtool, and every anyguard_ metric that the rules and
// the Grafana dashboard query present in the /metrics of a running
// (clustered) gateway, so a rename cannot silently blank a panel or mute
// an alert.

var monitoringDir = filepath.Join("..", "..", "images", "monitoring")

func TestAlertRulesPromtool(t *testing.T) {
	e2etest.RequireTools(t, "promtool")
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}, {"check", "config", "prometheus.yml"}} {
		cmd := exec.Command("promtool", args...)
		cmd.Dir = monitoringDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// monitoringExprs returns every PromQL expression of the alert rules and
// the dashboard, named by where it is.
func monitoringExprs(t *testing.T) map[string]string {
	t.Helper()
	exprs := map[string]string{}
	b, err := os.ReadFile(filepath.Join(monitoringDir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
			}
		}
	}
	if err := yaml.Unmarshal(b, &rules); err != nil {
		t.Fatalf("alerts.yml: %v", err)
	}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			exprs["alert "+r.Alert] = r.Expr
		}
	}
	b, err = os.ReadFile(filepath.Join(monitoringDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string
		Panels []struct {
			Title, Type string
			Targets     []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("dashboard panel %q queries nothing", p.Title)
		}
		for i, tg := range p.Targets {
			exprs[fmt.Sprintf("panel %q target %d", p.Title, i)] = tg.Expr
		}
	}
	return exprs
}

var metricName = regexp.MustCompile(`\banyguard_[a-z0-9_]+\b`)

func TestMonitoringMetricsExist(t *testing.T) {
	exprs := monitoringExprs(t)
	if len(exprs) < 20 {
		t.Fatalf("only %d expressions in the rules and dashboard", len(exprs))
	}
	names := scrapeClusteredGateway(t)
	for where, expr := range exprs {
		found := metricName.FindAllString(expr, -1)
		if len(found) == 0 && !strings.Contains(expr, "up{") {
			t.Errorf("%s: %q queries no anyguard_ metric", where, expr)
		}
		for _, n := range found {
			if !names[n] {
				t.Errorf("%s queries %s, which a running gateway's /metrics does not have", where, n)
			}
		}
	}
}

// scrapeClusteredGateway runs `anyguard run` as a cluster member of one
// (netstack, loopback only) and returns the metric names of its /metrics.
func scrapeClusteredGateway(t *testing.T) map[string]bool {
	t.Helper()
	client, _ := keys.Generate()
	backbone, _ := keys.Generate()
	gossip, _ := keys.Generate()
	health, admin := freePort(t), freePort(t)
	gossipAddr := freePort(t)
	env := []string{
		runMainEnv + "=1",
		stateDirEnv + "=" + filepath.Join(t.TempDir(), "state"),
		configEnv + "=",
		"ANYGUARD_NODE_NAME=mon-gw", "ANYGUARD_NODE_REGION=test",
		"ANYGUARD_CLIENTS_PRIVATE_KEY=" + client.String(), "ANYGUARD_CLIENTS_ADDRESS=10.99.0.1/24", "ANYGUARD_CLIENTS_LISTEN_PORT=0", "ANYGUARD_CLIENTS_UAPI=false",
		"ANYGUARD_EGRESS_MODE=netstack", "ANYGUARD_EGRESS_PREFIXES=10.1.0.0/16",
		"ANYGUARD_HEALTH_LISTEN=" + health, "ANYGUARD_HEALTH_TCP_LISTEN=off",
		"ANYGUARD_HEALTH_ADMIN_LISTEN=" + admin,
		"ANYGUARD_BACKBONE_PRIVATE_KEY=" + backbone.String(), "ANYGUARD_BACKBONE_LISTEN_PORT=0",
		"ANYGUARD_BACKBONE_ENDPOINT=127.0.0.1:1",
		"ANYGUARD_CLUSTER_BIND=" + gossipAddr, "ANYGUARD_CLUSTER_SECRET_KEY=" + gossip.String(),
		"ANYGUARD_CLUSTER_PROFILE=lan",
	}
	_, out, done := startChild(t, append(slices.DeleteFunc(os.Environ(), func(kv string) bool {
		return strings.HasPrefix(kv, "ANYGUARD_") && !strings.HasPrefix(kv, "ANYGUARD_E2E=")
	}), env...), "run")
	// Ready means every check ran once, the probe included: its series
	// exist from then on.
	waitFor(t, out, done, "ready: every check passes")
	// /metrics is on the admin listener, as Prometheus must be told
	// (docs/monitoring.md); the load balancers' port does not serve it.
	if resp, err := http.Get("http://" + health + "/metrics"); err != nil {
		t.Errorf("/metrics on health.listen: %v", err)
	} else {
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("/metrics on health.listen = %d, want 404", resp.StatusCode)
		}
	}
	resp, err := http.Get("http://" + admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	names := map[string]bool{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		names[name] = true
	}
	for _, want := range []string{"anyguard_gossip_events_total", "anyguard_node_info", "anyguard_config_reloads_total"} {
		if !names[want] {
			t.Fatalf("/metrics of a clustered gateway lacks %s:\n%s", want, body)
		}
	}
	return names
}
