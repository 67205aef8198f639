package status

import (
	"bytes"
	"cmp"
	"fmt"
	"hash/fnv"
	"html/template"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The status page is rendered on the server from a view model (pageOf), so
// the template holds no logic beyond ranges and ifs. Every row has stable
// hooks for tests and scripts:
//
//	<tr class="shard" data-shard="3" data-node="n2">   (class "shard ownerless" without an owner)
//	<tr class="member" data-node="n2">
//	<tr class="key" data-key="leader" data-node="n1">
//
// Each node has a colour of its own (nodeHue), so the spread of shards and
// keys shows at a glance; red is kept for what needs attention.

// shardsPerColumn is how many shard rows one table holds; more shards flow
// into further tables side by side.
const shardsPerColumn = 16

// pageView is what the template renders.
type pageView struct {
	Node    string
	Time    string
	Healthy bool
	Problem string
	Buckets []bucketView
}

type bucketView struct {
	Name     string
	TTL      string
	Replicas int
	Complete bool
	Genesis  bool
	Problem  string
	// Kind is "shards" or "keys".
	Kind      string
	Shards    int
	Ownerless int
	Group     *Group
	// Spread is the number of shards (or keys led) per node, members first.
	Spread       []spreadView
	ShardColumns []shardColumn
	Members      []memberView
	Keys         []keyView
}

type spreadView struct {
	Node  string // "" for the ownerless segment
	Hue   int
	Count int
	Self  bool
}

// shardColumn is one table of at most shardsPerColumn shards.
type shardColumn struct {
	First, Last int
	Rows        []shardView
}

type shardView struct {
	ID        int
	Node      string
	Hue       int
	Self      bool
	Rev       string
	Since     string
	Ownerless bool
}

type memberView struct {
	Node       string
	Hue        int
	Session    string
	Leaving    bool
	Self       bool
	RenewedAgo string
	// Stale marks a member not renewed for more than half the TTL.
	Stale bool
}

type keyView struct {
	Key       string
	Candidate string
	Node      string
	Hue       int
	Self      bool
	Rev       string
	Since     string
}

// pageOf turns n into the page's view model.
func pageOf(n Node) pageView {
	p := pageView{Node: n.Node, Healthy: n.Healthy, Problem: n.Problem}
	if !n.Time.IsZero() {
		p.Time = n.Time.Format("2006-01-02 15:04:05 MST")
	}
	for _, b := range n.Buckets {
		p.Buckets = append(p.Buckets, bucketOf(b, n.Node, n.Time))
	}
	return p
}

func bucketOf(b Bucket, self string, now time.Time) bucketView {
	v := bucketView{
		Name:     b.Name,
		TTL:      seconds(b.TTLSeconds),
		Replicas: b.Replicas,
		Complete: b.Complete,
		Genesis:  b.Genesis,
		Problem:  b.Problem,
		Kind:     "keys",
		Shards:   len(b.Shards),
		Group:    b.Group,
	}
	counts := map[string]int{}
	for _, m := range b.Members {
		v.Members = append(v.Members, memberView{
			Node:       m.Node,
			Hue:        nodeHue(m.Node),
			Session:    m.Session,
			Leaving:    m.Leaving,
			Self:       m.Self,
			RenewedAgo: seconds(m.RenewedAgoSeconds) + " ago",
			Stale:      b.TTLSeconds > 0 && m.RenewedAgoSeconds > b.TTLSeconds/2,
		})
		if !m.Leaving {
			counts[m.Node] += 0 // a member without shards shows as 0
		}
	}
	ownerless := 0
	if len(b.Shards) > 0 {
		v.Kind = "shards"
		var col shardColumn
		for _, s := range b.Shards {
			sv := shardView{ID: s.Shard, Since: age(s.Since, now), Ownerless: s.Ownerless || s.Node == ""}
			if sv.Ownerless {
				ownerless++
			} else {
				sv.Node, sv.Hue, sv.Self = s.Node, nodeHue(s.Node), s.Node == self && self != ""
				counts[s.Node]++
			}
			if s.Rev != 0 {
				sv.Rev = strconv.FormatUint(s.Rev, 10)
			}
			if len(col.Rows) == 0 {
				col.First = s.Shard
			}
			col.Last = s.Shard
			col.Rows = append(col.Rows, sv)
			if len(col.Rows) == shardsPerColumn {
				v.ShardColumns = append(v.ShardColumns, col)
				col = shardColumn{}
			}
		}
		if len(col.Rows) > 0 {
			v.ShardColumns = append(v.ShardColumns, col)
		}
	} else {
		for _, k := range b.Keys {
			kv := keyView{Key: k.Key, Candidate: k.Candidate, Node: k.Node, Since: age(k.Since, now)}
			if k.Candidate != "" {
				kv.Hue, kv.Self = nodeHue(k.Node), k.Node == self && self != ""
				counts[k.Node]++
			} else {
				kv.Node = ""
				ownerless++
			}
			if k.Rev != 0 {
				kv.Rev = strconv.FormatUint(k.Rev, 10)
			}
			v.Keys = append(v.Keys, kv)
		}
	}
	for node, c := range counts {
		v.Spread = append(v.Spread, spreadView{Node: node, Hue: nodeHue(node), Count: c, Self: node == self && self != ""})
	}
	slices.SortFunc(v.Spread, func(x, y spreadView) int { return cmp.Compare(x.Node, y.Node) })
	v.Ownerless = ownerless
	if ownerless > 0 {
		v.Spread = append(v.Spread, spreadView{Count: ownerless})
	}
	return v
}

// nodeHue is a node's colour: a hue derived from its ID alone, so it is the
// same on every page and every node. IDs that end in a number (n1, n2,
// ronin-0, ronin-1, ...) are spread by the golden angle from their prefix's
// hue, which keeps consecutive nodes far apart; others hash. Hues avoid the
// reds, which mean "no owner".
func nodeHue(id string) int {
	prefix := strings.TrimRight(id, "0123456789")
	h := fnv.New32a()
	_, _ = h.Write([]byte(prefix))
	x := h.Sum32()
	if num, err := strconv.ParseUint(id[len(prefix):], 10, 32); err == nil && len(prefix) < len(id) {
		x = x%360*1000 + uint32(num%1000)*137508 // golden angle, in thousandths of a degree
		return 25 + int(x/1000%360)*300/360
	}
	h.Reset()
	_, _ = h.Write([]byte(id))
	x = h.Sum32()
	x ^= x >> 16
	x *= 0x45d9f3b
	x ^= x >> 16
	return 25 + int(uint64(x)*300>>32)
}

// age formats how long before now t was, as "12s ago"; "" for a zero t.
func age(t, now time.Time) string {
	if t.IsZero() || now.IsZero() {
		return ""
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < 10*time.Second:
		return fmt.Sprintf("%.1fs ago", d.Seconds())
	case d < time.Minute:
		return fmt.Sprintf("%ds ago", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm %02ds ago", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %02dm ago", int(d.Hours()), int(d.Minutes())%60)
	default:
		return fmt.Sprintf("%dd ago", int(d.Hours()/24))
	}
}

// seconds formats s seconds compactly: "2s", "0.5s", "1.3s", "1m 30s".
func seconds(s float64) string {
	switch {
	case s >= 60:
		return (time.Duration(s) * time.Second).Round(time.Second).String()
	case s == math.Trunc(s) || s >= 10:
		return fmt.Sprintf("%.0fs", s)
	default:
		return fmt.Sprintf("%.1fs", s)
	}
}

var page = template.Must(template.New("status").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="2">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{if .Healthy}}✓{{else}}✗{{end}} Ronin {{.Node}}</title>
<style>
*{box-sizing:border-box}
body{margin:0;font:14px/1.35 system-ui,"DejaVu Sans","Helvetica Neue",Arial,sans-serif;color:#1d2330;background:#f3f5f8}
header{display:flex;align-items:center;gap:14px;flex-wrap:wrap;padding:10px 18px;background:#1d2330;color:#fff}
header h1{margin:0;font-size:19px;font-weight:600}
header .time{color:#b9c2d3;font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:2px 10px;border-radius:11px;font-weight:700;font-size:13px;letter-spacing:.02em}
.badge.ok{background:#1f9d55;color:#fff}
.badge.bad{background:#d93025;color:#fff}
header .problem{color:#ffb4ab;font-weight:600}
main{padding:12px 18px}
section.bucket{background:#fff;border:1px solid #d8dde6;border-radius:8px;padding:10px 14px 12px;margin-bottom:14px}
section.bucket h2{margin:0;font-size:17px;display:inline}
.facts{display:flex;align-items:baseline;gap:10px;flex-wrap:wrap}
.fact{color:#566074}
.fact b{color:#1d2330;font-weight:600}
.warn{display:inline-block;padding:1px 8px;border-radius:4px;background:#fff1c2;color:#7a4b00;border:1px solid #f0c14b;font-weight:600}
.alert{display:inline-block;padding:1px 8px;border-radius:4px;background:#fde2e1;color:#a50e0e;border:1px solid #f3a29c;font-weight:700}
.good{color:#1f7a45;font-weight:600}
.spread{display:flex;height:24px;margin:9px 0 10px;border-radius:5px;overflow:hidden;border:1px solid #cfd5df}
.spread span{display:flex;align-items:center;justify-content:center;min-width:44px;font-size:12.5px;font-weight:700;white-space:nowrap;color:#132;border-right:1px solid #fff}
.spread span.none{background:#d93025;color:#fff}
.spread span.zero{flex:0 0 auto;padding:0 6px;background:repeating-linear-gradient(45deg,#eef0f4,#eef0f4 4px,#e2e6ec 4px,#e2e6ec 8px)}
.cols{display:flex;gap:18px;align-items:flex-start;flex-wrap:wrap}
table{border-collapse:collapse;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;color:#566074;padding:0 0 3px;font-size:12.5px;text-transform:uppercase;letter-spacing:.04em}
th{text-align:left;font-size:12px;color:#566074;font-weight:600;padding:2px 10px 3px 6px;border-bottom:2px solid #d8dde6}
td{padding:2px 10px 2px 6px;border-bottom:1px solid #eef0f4;white-space:nowrap}
td.num{text-align:right}
td.id{font-weight:700;text-align:right;padding-right:12px}
.mono{font-family:"DejaVu Sans Mono",ui-monospace,Menlo,monospace;font-size:12.5px}
.muted{color:#8a93a6}
.node{display:inline-block;min-width:3.2em;padding:0 7px;border-radius:4px;font-weight:700;background:hsl(var(--h) 70% 86%);border-left:4px solid hsl(var(--h) 65% 38%);color:hsl(var(--h) 60% 18%)}
tr.shard td:first-child,tr.key td:first-child{border-left:4px solid hsl(var(--h) 65% 45%)}
tr.shard,tr.key{background:hsl(var(--h) 80% 97%)}
tr.ownerless,tr.leaderless{background:#fcd5d2 !important}
tr.ownerless td:first-child,tr.leaderless td:first-child{border-left:4px solid #d93025}
.noowner{color:#c5221f;font-weight:800;text-transform:uppercase;font-size:12.5px}
.me{font-size:11px;font-weight:600;color:#3b4a66;border:1px solid #8c97ad;border-radius:3px;padding:0 4px;margin-left:5px;background:#fff}
tr.member.leaving{color:#8a93a6}
.stale{color:#c5221f;font-weight:700}
</style></head>
<body>
<header>
<h1>Ronin · node {{if .Node}}{{.Node}}{{else}}(reader){{end}}</h1>
{{if .Healthy}}<span class="badge ok" id="health" data-healthy="true">HEALTHY</span>{{else}}<span class="badge bad" id="health" data-healthy="false">UNHEALTHY</span>{{end}}
{{if .Problem}}<span class="problem">{{.Problem}}</span>{{end}}
<span class="time">{{.Time}}</span>
</header>
<main>
{{if not .Buckets}}<p class="muted">This node uses no bucket yet.</p>{{end}}
{{range .Buckets}}<section class="bucket" data-bucket="{{.Name}}" data-kind="{{.Kind}}">
<div class="facts">
<h2>{{.Name}}</h2>
<span class="fact">{{if eq .Kind "shards"}}<b>{{.Shards}}</b> shard{{if ne .Shards 1}}s{{end}}{{else}}<b>{{len .Keys}}</b> key{{if ne (len .Keys) 1}}s{{end}}{{end}}</span>
<span class="fact">TTL <b>{{.TTL}}</b></span>
<span class="fact">replicas <b>{{.Replicas}}</b></span>
{{if .Complete}}<span class="fact good">view complete</span>{{else}}<span class="warn">⚠ view incomplete: entries may be missing</span>{{end}}
{{if not .Genesis}}<span class="warn">no genesis yet: nothing is granted for a TTL</span>{{end}}
{{if .Ownerless}}{{if eq .Kind "shards"}}<span class="alert">{{.Ownerless}} without owner</span>{{else}}<span class="warn">{{.Ownerless}} without leader</span>{{end}}{{end}}
{{with .Group}}<span class="fact">this node: {{if .Draining}}<span class="warn">draining</span>{{else if .Ready}}<span class="good">ready</span>{{else}}<span class="warn">not ready</span>{{end}} · owns <b>{{.Owned}}</b></span>{{end}}
{{if .Problem}}<span class="alert">{{.Problem}}</span>{{end}}
</div>
{{$kind := .Kind}}{{if .Spread}}<div class="spread" title="{{if eq .Kind "shards"}}shards{{else}}keys led{{end}} per node">{{range .Spread}}{{if not .Node}}<span class="none" style="flex:{{.Count}}">{{if eq $kind "shards"}}no owner{{else}}no leader{{end}} · {{.Count}}</span>{{else if .Count}}<span style="flex:{{.Count}};background:hsl({{.Hue}} 70% 80%)">{{.Node}} · {{.Count}}</span>{{else}}<span class="zero">{{.Node}} · 0</span>{{end}}{{end}}</div>{{end}}
<div class="cols">
{{range .ShardColumns}}<table class="shards"><caption>shards {{.First}}–{{.Last}}</caption>
<thead><tr><th>shard</th><th>owner</th><th>token</th><th>since</th></tr></thead><tbody>
{{range .Rows}}{{if .Ownerless}}<tr class="shard ownerless" data-shard="{{.ID}}" data-node=""><td class="id">{{.ID}}</td><td><span class="noowner">no owner</span></td><td class="num mono muted">{{.Rev}}</td><td class="muted" title="last write of the shard's record">{{.Since}}</td></tr>
{{else}}<tr class="shard" data-shard="{{.ID}}" data-node="{{.Node}}" style="--h:{{.Hue}}"><td class="id">{{.ID}}</td><td><span class="node">{{.Node}}</span>{{if .Self}}<span class="me">this node</span>{{end}}</td><td class="num mono">{{.Rev}}</td><td>{{.Since}}</td></tr>
{{end}}{{end}}</tbody></table>
{{end}}
{{if .Keys}}<table class="keys"><caption>keys</caption>
<thead><tr><th>key</th><th>leader candidate</th><th>node</th><th>token</th><th>since</th></tr></thead><tbody>
{{range .Keys}}{{if .Node}}<tr class="key" data-key="{{.Key}}" data-node="{{.Node}}" style="--h:{{.Hue}}"><td class="mono">{{.Key}}</td><td>{{.Candidate}}</td><td><span class="node">{{.Node}}</span>{{if .Self}}<span class="me">this node</span>{{end}}</td><td class="num mono">{{.Rev}}</td><td>{{.Since}}</td></tr>
{{else}}<tr class="key leaderless" data-key="{{.Key}}" data-node=""><td class="mono">{{.Key}}</td><td colspan="2"><span class="noowner">no leader</span></td><td class="num mono muted">{{.Rev}}</td><td class="muted">{{.Since}}</td></tr>
{{end}}{{end}}</tbody></table>
{{end}}
<table class="members"><caption>members</caption>
<thead><tr><th>node</th><th>session</th><th>state</th><th>renewed</th></tr></thead><tbody>
{{range .Members}}<tr class="member{{if .Leaving}} leaving{{end}}{{if .Self}} self{{end}}" data-node="{{.Node}}" style="--h:{{.Hue}}"><td><span class="node">{{.Node}}</span>{{if .Self}}<span class="me">this node</span>{{end}}</td><td class="mono">{{.Session}}</td><td>{{if .Leaving}}<span class="warn">leaving</span>{{else}}member{{end}}</td><td class="num{{if .Stale}} stale{{end}}">{{.RenewedAgo}}</td></tr>
{{else}}<tr><td colspan="4" class="muted">no live session</td></tr>
{{end}}</tbody></table>
</div>
</section>
{{end}}</main>
</body></html>
`))

// renderHTML writes n as the status page. The page is rendered whole
// before it is written, so that an error is reported before anything was
// sent; a failed write (the client went away) is not an error.
func renderHTML(w io.Writer, n Node) error {
	var buf bytes.Buffer
	if err := page.Execute(&buf, pageOf(n)); err != nil {
		return err
	}
	_, _ = buf.WriteTo(w)
	return nil
}
