package main

import (
	"context"
	"errors"
	"fmt"
	"html/template"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/attribute"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/resource"

	"github.com/nonchan7720/ronin"
)

// target is one node the HTTP endpoints show: its Manager and shard group,
// nil while the node is down (down then says why) or not yet started.
type target struct {
	id       string
	mgr      *ronin.Manager
	group    *ronin.ShardGroup
	down     string
	stopping bool // the process is shutting down
}

// endpoints serve the status page and the probes of the nodes that
// targets lists, looked up at every request: nodes come and go.
type endpoints struct {
	targets func() []target
}

// register adds the endpoints to mux:
//
//	/                 the status page of the first live node (HTML; ?format=json)
//	/node/<id>/       node <id>'s status page
//	/healthz          200 while the process serves
//	/readyz           200 when every node is healthy and its shard group ready, else 503 with the reasons
//	/node/<id>/readyz the same for node <id>
func (e endpoints) register(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		writeReady(w, e.targets())
	})
	mux.HandleFunc("GET /node/{id}/readyz", func(w http.ResponseWriter, r *http.Request) {
		if t, ok := e.find(r.PathValue("id")); ok {
			writeReady(w, []target{t})
			return
		}
		http.NotFound(w, r)
	})
	mux.HandleFunc("GET /node/{id}/{$}", func(w http.ResponseWriter, r *http.Request) {
		t, ok := e.find(r.PathValue("id"))
		switch {
		case !ok:
			http.NotFound(w, r)
		case t.mgr == nil:
			writeDown(w, e.targets(), t.id+" is down: "+t.down)
		default:
			ronin.StatusHandler(t.mgr).ServeHTTP(w, r)
		}
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		ts := e.targets()
		for _, t := range ts {
			if t.mgr != nil {
				ronin.StatusHandler(t.mgr).ServeHTTP(w, r)
				return
			}
		}
		writeDown(w, ts, "no node is running")
	})
}

func (e endpoints) find(id string) (target, bool) {
	for _, t := range e.targets() {
		if t.id == id {
			return t, true
		}
	}
	return target{}, false
}

// notReady returns why t is not ready, "" if it is: its Manager is
// healthy (Manager.Healthy) and its shard group takes its full part
// (ShardGroup.Ready).
func notReady(t target) string {
	switch {
	case t.mgr == nil:
		return "down: " + t.down
	case t.stopping:
		return "shutting down: draining the shard group"
	case t.mgr.Healthy() != nil:
		return "unhealthy: " + t.mgr.Healthy().Error()
	case t.group == nil:
		return "shard group not running yet"
	case t.group.Draining():
		return "shard group draining"
	case !t.group.Ready():
		return "shard group not ready: view incomplete or its shards not all running here yet"
	}
	return ""
}

// writeReady answers a readiness probe for ts: 200 "ready" if all are,
// else 503 with one line per node that is not.
func writeReady(w http.ResponseWriter, ts []target) {
	var bad []string
	for _, t := range ts {
		if why := notReady(t); why != "" {
			bad = append(bad, t.id+": "+why)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if len(ts) == 0 {
		bad = append(bad, "no node")
	}
	if len(bad) > 0 {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, strings.Join(bad, "\n"))
		return
	}
	fmt.Fprintln(w, "ready")
}

var downPage = template.Must(template.New("down").Parse(`<!doctype html>
<html><head><meta charset="utf-8"><meta http-equiv="refresh" content="2"><title>Ronin: {{.Why}}</title>
<style>body{font:15px/1.4 system-ui,"DejaVu Sans",sans-serif;margin:24px;color:#1d2330}b{color:#c5221f}</style></head>
<body><p><b>{{.Why}}</b>. This page reloads every 2 s.</p>
<p>{{range .Nodes}}<a href="/node/{{.id}}/">{{.id}}</a>{{if not .mgr}} (down){{end}} {{end}}</p></body></html>
`))

// writeDown serves a page saying why there is no status to show; it
// reloads itself, so it turns into the status page when a node is back.
func writeDown(w http.ResponseWriter, ts []target, why string) {
	nodes := make([]map[string]any, 0, len(ts))
	for _, t := range ts {
		nodes = append(nodes, map[string]any{"id": t.id, "mgr": t.mgr != nil})
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusServiceUnavailable)
	_ = downPage.Execute(w, map[string]any{"Why": why, "Nodes": nodes})
}

// newMetrics returns a MeterProvider whose instruments the returned handler
// serves in Prometheus' text format, with the Go runtime's and the
// process's own metrics.
func newMetrics() (*sdkmetric.MeterProvider, http.Handler, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exp, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, nil, err
	}
	mp := sdkmetric.NewMeterProvider(
		sdkmetric.WithReader(exp),
		sdkmetric.WithResource(resource.NewSchemaless(attribute.String("service.name", "ronin-shards-demo"))),
	)
	return mp, promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), nil
}

// web is the demo's HTTP side: the endpoints on -http, /metrics on
// -metrics (one server if both name the same address).
type web struct {
	servers    []*http.Server
	statusURL  string // "" without -http
	metricsURL string // "" without -metrics
	// meters is the MeterProvider the groups report to; nil without
	// -metrics (the global one, a no-op, is then used).
	meters *sdkmetric.MeterProvider
}

// startWeb listens on the addresses of -http and -metrics and serves e
// and the metrics there. A listen failure is a usageError naming the flag.
func startWeb(o options, e endpoints) (*web, error) {
	w := &web{}
	muxes := map[string]*http.ServeMux{}
	flags := map[string][]string{}
	mux := func(addr, flag string) *http.ServeMux {
		if muxes[addr] == nil {
			muxes[addr] = http.NewServeMux()
		}
		flags[addr] = append(flags[addr], "-"+flag)
		return muxes[addr]
	}
	if o.httpAddr != "" {
		e.register(mux(o.httpAddr, "http"))
	}
	if o.metricsAddr != "" {
		mp, h, err := newMetrics()
		if err != nil {
			return nil, err
		}
		w.meters = mp
		mux(o.metricsAddr, "metrics").Handle("GET /metrics", h)
	}
	urls := map[string]string{}
	for addr, m := range muxes {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			w.close()
			return nil, usageError{fmt.Sprintf("flag %s %s: %v", strings.Join(flags[addr], " and "), addr, err)}
		}
		urls[addr] = baseURL(l.Addr().(*net.TCPAddr))
		srv := &http.Server{Handler: m, ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				log.Printf("http %s: %v", addr, err)
			}
		}()
		w.servers = append(w.servers, srv)
	}
	if o.httpAddr != "" {
		w.statusURL = urls[o.httpAddr]
	}
	if o.metricsAddr != "" {
		w.metricsURL = urls[o.metricsAddr] + "metrics"
	}
	return w, nil
}

// meterProvider is what the groups and candidates report to (nil: the
// global one).
func (w *web) meterProvider() metric.MeterProvider {
	if w.meters == nil {
		return nil
	}
	return w.meters
}

// close stops serving, letting running requests finish for a second.
func (w *web) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for _, s := range w.servers {
		_ = s.Shutdown(ctx)
	}
	if w.meters != nil {
		_ = w.meters.Shutdown(ctx)
	}
}

// baseURL is where a person on this machine reaches a listener: an
// unspecified host (":8080", "0.0.0.0:8080") is shown as 127.0.0.1.
func baseURL(a *net.TCPAddr) string {
	host := a.IP.String()
	if a.IP.IsUnspecified() {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, fmt.Sprint(a.Port)) + "/"
}

// printURLs writes where the demo serves what; ids are the nodes.
func (w *web) printURLs(ids []string) {
	if w.statusURL != "" {
		fmt.Printf("status page  %s  (%s)\n", w.statusURL, map[bool]string{true: "this node", false: "the first live node's view"}[len(ids) == 1])
		for _, id := range ids {
			fmt.Printf("  node %-6s %snode/%s/\n", id, w.statusURL, id)
		}
		fmt.Printf("JSON         %s?format=json\n", w.statusURL)
		fmt.Printf("probes       %shealthz  %sreadyz\n", w.statusURL, w.statusURL)
	}
	if w.metricsURL != "" {
		fmt.Printf("metrics      %s\n", w.metricsURL)
	}
}
