package health

import (
	"bytes"
	"html/template"
	"net/http"
	"time"
)

// The status page: one self-contained document (no scripts, fonts or
// images from elsewhere) that refreshes itself every 5 seconds.
var pageTemplate = template.Must(template.New("page").Funcs(template.FuncMap{
	"ago": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return time.Since(t).Round(time.Second).String() + " ago"
	},
	"bytes": func(n uint64) string {
		const unit = 1024
		if n < unit {
			return itoa(n) + " B"
		}
		div, exp := uint64(unit), 0
		for m := n / unit; m >= unit; m /= unit {
			div *= unit
			exp++
		}
		return formatFloat(float64(n)/float64(div)) + " " + string("KMGTPE"[exp]) + "iB"
	},
	"ms": func(s float64) string { return formatFloat(s*1000) + " ms" },
}).Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta http-equiv="refresh" content="5">
<title>anyguard {{.Node.Name}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.4em;margin-bottom:.2em}
h2{font-size:1.1em;margin-top:1.5em}
table{border-collapse:collapse;font-size:.9em}
th,td{border-bottom:1px solid #ddd;padding:.25em .8em;text-align:left}
th{background:#f4f4f4}
.ok{color:#176f2c;font-weight:bold}
.bad{color:#b00020;font-weight:bold}
.muted{color:#777}
</style>
</head>
<body>
<h1>anyguard gateway <span id="node">{{.Node.Name}}</span></h1>
<p>region <b>{{.Node.Region}}</b> · version {{.Node.Version}} · egress {{.Node.EgressMode}} · UDP port {{.Node.ListenPort}} · started {{ago .Node.Started}}</p>
<p id="readiness">{{if .Node.Ready}}<span class="ok">READY</span>{{else}}<span class="bad">NOT READY</span>{{end}}{{if .Node.Draining}} · <span class="bad">DRAINING</span>{{end}}</p>

<h2>Checks</h2>
<table id="checks">
<tr><th>check</th><th>result</th><th>since</th><th>detail</th></tr>
{{range .Checks}}<tr><td>{{.Name}}</td><td>{{if .OK}}<span class="ok">ok</span>{{else if .Advisory}}<span class="bad">warning</span>{{else}}<span class="bad">failed</span>{{end}}</td><td>{{ago .Since}}</td><td>{{.Error}}</td></tr>
{{end}}</table>
<p>Data-path probe: {{if .Probe.OK}}<span class="ok">ok</span>{{else}}<span class="bad">failing</span>{{end}} · {{.Probe.Target}} · last success {{ago .Probe.LastSuccess}} · round trip {{ms .Probe.RTTSeconds}} · {{.Probe.Successes}} ok / {{.Probe.Failures}} failed{{if .Probe.Error}} · {{.Probe.Error}}{{end}}</p>

<h2>Members</h2>
{{if .Members}}<table id="members">
<tr><th>name</th><th>region</th><th>address</th><th>state</th><th>ready</th><th>client set</th></tr>
{{range .Members}}<tr><td>{{.Name}}{{if .Self}} <span class="muted">(this gateway)</span>{{end}}</td><td>{{.Region}}</td><td>{{.Address}}</td><td>{{.State}}</td><td>{{if .Ready}}yes{{else}}no{{end}}</td><td>{{.ConfigDigest}}</td></tr>
{{end}}</table>{{else}}<p class="muted">none</p>{{end}}

<h2>Regions</h2>
{{if .Regions}}<table id="regions">
<tr><th>region</th><th>members</th><th>prefixes</th></tr>
{{range .Regions}}<tr><td>{{.Name}}</td><td>{{.Members}}</td><td>{{range $i, $p := .Prefixes}}{{if $i}}, {{end}}{{$p}}{{end}}</td></tr>
{{end}}</table>{{else}}<p class="muted">none</p>{{end}}

{{if .RefusedPrefixes}}<h2>Refused prefixes</h2>
<table id="refused">
<tr><th>member</th><th>region</th><th>prefix</th><th>reason</th><th>detail</th><th>since</th></tr>
{{range .RefusedPrefixes}}<tr><td>{{.Member}}</td><td>{{.Region}}</td><td>{{.Prefix}}</td><td class="bad">{{.Reason}}</td><td>{{.Detail}}</td><td>{{ago .Since}}</td></tr>
{{end}}</table>{{end}}

<h2>Clients ({{len .Clients}})</h2>
{{if .Clients}}<table id="clients">
<tr><th>client</th><th>addresses</th><th>owner</th><th>endpoint</th><th>last handshake</th><th>received</th><th>sent</th></tr>
{{range .Clients}}<tr><td>{{.Name}}</td><td>{{range $i, $p := .AllowedIPs}}{{if $i}}, {{end}}{{$p}}{{end}}</td><td>{{.Owner}}</td><td>{{.Endpoint}}</td><td>{{ago .LastHandshake}}</td><td>{{bytes .RxBytes}}</td><td>{{bytes .TxBytes}}</td></tr>
{{end}}</table>{{else}}<p class="muted">none configured</p>{{end}}

<h2>Convergence</h2>
<p>{{.Convergence.Observations}} ownership changes measured{{if .Convergence.Observations}} · p50 {{ms .Convergence.P50Seconds}} · p99 {{ms .Convergence.P99Seconds}}{{end}}</p>
<p class="muted">Machine-readable: <a href="status">/status</a> · <a href="metrics">/metrics</a> · <a href="readyz?verbose">/readyz?verbose</a></p>
</body>
</html>
`))

func (h *handlers) page(w http.ResponseWriter, _ *http.Request) {
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, h.snapshot()); err != nil {
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	noCache(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	w.Write(b.Bytes())
}
