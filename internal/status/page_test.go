package status

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// sampleNode is n1's picture of a 6-shard bucket (shard 4 ownerless) and a
// bucket of candidates (one key without a leader).
func sampleNode() Node {
	now := time.Date(2026, 5, 1, 12, 0, 30, 0, time.UTC)
	ago := func(d time.Duration) time.Time { return now.Add(-d) }
	owners := []string{"n1", "n2", "n3", "n1", "", "n2"}
	var shards []Shard
	for id, o := range owners {
		s := Shard{Shard: id, Node: o, Rev: uint64(100 + id), Since: ago(12 * time.Second)}
		if o == "" {
			s = Shard{Shard: id, Since: ago(3 * time.Second), Ownerless: true}
		}
		shards = append(shards, s)
	}
	return Node{
		Node: "n1", Time: now, Healthy: true,
		Buckets: []Bucket{
			{
				Name: "orders", TTLSeconds: 2, Replicas: 3, Complete: true, Genesis: true,
				Members: []Member{
					{Node: "n1", Session: "n1.aaaa", Self: true, RenewedAgoSeconds: 0.2},
					{Node: "n2", Session: "n2.bbbb", RenewedAgoSeconds: 0.4},
					{Node: "n3", Session: "n3.cccc", Leaving: true, RenewedAgoSeconds: 1.7},
				},
				Shards: shards, Ownerless: 1,
				Group: &Group{Ready: true, Owned: 2},
			},
			{
				Name: "leaders", TTLSeconds: 5, Replicas: 3, Complete: false, Genesis: false,
				Members: []Member{{Node: "n2", Session: "n2.dddd", RenewedAgoSeconds: 0.1}},
				Keys: []Key{
					{Key: "billing", Candidate: "worker-2", Node: "n2", Rev: 7, Since: ago(90 * time.Second)},
					{Key: "<script>", Since: ago(time.Second)},
				},
			},
		},
	}
}

func render(t *testing.T, n Node) string {
	t.Helper()
	var b strings.Builder
	require.NoError(t, renderHTML(&b, n))
	if dir := os.Getenv("RONIN_PAGE_OUT"); dir != "" { // to look at it in a browser
		require.NoError(t, os.WriteFile(dir+"/"+t.Name()+".html", []byte(b.String()), 0o644))
	}
	return b.String()
}

var (
	shardRow  = regexp.MustCompile(`<tr class="(shard[^"]*)" data-shard="(\d+)" data-node="([^"]*)"[^>]*>(.*?)</tr>`)
	memberRow = regexp.MustCompile(`<tr class="(member[^"]*)" data-node="([^"]*)"[^>]*>(.*?)</tr>`)
	keyRow    = regexp.MustCompile(`<tr class="(key[^"]*)" data-key="([^"]*)" data-node="([^"]*)"[^>]*>(.*?)</tr>`)
)

func TestPageShards(t *testing.T) {
	html := render(t, sampleNode())
	assert.Contains(t, html, `<meta http-equiv="refresh" content="2">`)
	assert.Contains(t, html, `data-healthy="true"`)
	assert.NotContains(t, html, "<script>", "everything is escaped")

	rows := shardRow.FindAllStringSubmatch(html, -1)
	require.Len(t, rows, 6)
	want := []string{"n1", "n2", "n3", "n1", "", "n2"}
	for i, r := range rows {
		class, id, node, cells := r[1], r[2], r[3], r[4]
		assert.Equal(t, fmt.Sprint(i), id)
		assert.Equal(t, want[i], node, "shard %s", id)
		if want[i] == "" {
			assert.Equal(t, "shard ownerless", class)
			assert.Contains(t, cells, "no owner")
			assert.Contains(t, cells, "3.0s ago")
			continue
		}
		assert.Equal(t, "shard", class)
		assert.NotContains(t, cells, "no owner")
		assert.Contains(t, cells, fmt.Sprintf(">%d<", 100+i), "token")
		assert.Contains(t, cells, "12s ago")
		assert.Equal(t, node == "n1", strings.Contains(cells, "this node"), "self marked on shard %s", id)
		assert.Contains(t, r[0], fmt.Sprintf("--h:%d", nodeHue(node)))
	}
	// The ownerless row is red and the bucket says how many.
	assert.Regexp(t, `tr\.ownerless[^{]*\{background:#fcd5d2`, html)
	assert.Contains(t, html, `<span class="alert">1 without owner</span>`)
	assert.Contains(t, html, "no owner · 1", "spread bar")
	assert.Contains(t, html, "n1 · 2")
	assert.Contains(t, html, "n3 · 1")
	// Facts of the bucket and this node's group.
	assert.Contains(t, html, "TTL <b>2s</b>")
	assert.Contains(t, html, "replicas <b>3</b>")
	assert.Contains(t, html, "view complete")
	assert.Regexp(t, `this node: <span class="good">ready</span> · owns <b>2</b>`, html)

	members := memberRow.FindAllStringSubmatch(html, -1)
	require.Len(t, members, 4) // 3 in orders, 1 in leaders
	assert.Equal(t, "member self", members[0][1])
	assert.Equal(t, "n1", members[0][2])
	assert.Contains(t, members[0][3], "this node")
	assert.Contains(t, members[0][3], "0.2s ago")
	assert.Equal(t, "member", members[1][1])
	assert.NotContains(t, members[1][3], "this node")
	assert.Equal(t, "member leaving", members[2][1])
	assert.Contains(t, members[2][3], "leaving")
	assert.Contains(t, members[2][3], `class="num stale"`, "renewed more than TTL/2 ago")
}

func TestPageKeys(t *testing.T) {
	html := render(t, sampleNode())
	keys := keyRow.FindAllStringSubmatch(html, -1)
	require.Len(t, keys, 2)
	assert.Equal(t, []string{"key", "billing", "n2"}, keys[0][1:4])
	assert.Contains(t, keys[0][4], "worker-2")
	assert.Contains(t, keys[0][4], ">7<")
	assert.Contains(t, keys[0][4], "1m 30s ago")
	assert.Equal(t, []string{"key leaderless", "&lt;script&gt;", ""}, keys[1][1:4])
	assert.Contains(t, keys[1][4], "no leader")
	// The candidate bucket's view is incomplete and has no genesis.
	leaders := html[strings.Index(html, `data-bucket="leaders"`):]
	assert.Contains(t, leaders, "view incomplete")
	assert.Contains(t, leaders, "no genesis yet")
	assert.NotContains(t, leaders, "this node:", "no group on this bucket")
}

func TestPageUnhealthy(t *testing.T) {
	n := Node{Node: "n2", Time: time.Now(), Problem: "ronin: unavailable: NATS connection CLOSED", Buckets: []Bucket{}}
	html := render(t, n)
	assert.Contains(t, html, `data-healthy="false"`)
	assert.Contains(t, html, "UNHEALTHY")
	assert.Contains(t, html, "ronin: unavailable: NATS connection CLOSED")
	assert.Contains(t, html, "uses no bucket yet")
}

func TestPageManyShardsFlowIntoColumns(t *testing.T) {
	b := Bucket{Name: "big", TTLSeconds: 5, Replicas: 3, Complete: true, Genesis: true, Members: []Member{}}
	for id := range 40 {
		b.Shards = append(b.Shards, Shard{Shard: id, Node: fmt.Sprintf("n%d", id%4+1), Rev: 1})
	}
	html := render(t, Node{Node: "n1", Time: time.Now(), Healthy: true, Buckets: []Bucket{b}})
	assert.Len(t, shardRow.FindAllString(html, -1), 40)
	assert.Equal(t, 3, strings.Count(html, `<table class="shards">`))
}

func TestHandlerServesPageAndJSON(t *testing.T) {
	h := Handler(func(*http.Request) Node { return sampleNode() })
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
	assert.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "text/html; charset=utf-8", rec.Header().Get("Content-Type"))
	assert.Len(t, shardRow.FindAllString(rec.Body.String(), -1), 6)

	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/?format=json", nil))
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Contains(t, rec.Body.String(), `"ownerless": 1`)
}

func TestNodeHue(t *testing.T) {
	for _, id := range []string{"n1", "ronin-0", "node-a", ""} {
		h := nodeHue(id)
		assert.Equal(t, h, nodeHue(id), "stable")
		assert.True(t, h >= 25 && h < 325, "%s: hue %d avoids the reds", id, h)
	}
	// Consecutive numbered nodes are far apart on the colour wheel.
	for _, prefix := range []string{"n", "ronin-", "node-"} {
		var hues []int
		for i := range 3 {
			hues = append(hues, nodeHue(fmt.Sprintf("%s%d", prefix, i+1)))
		}
		for i := range hues {
			for j := range i {
				d := min((hues[i]-hues[j]+360)%360, (hues[j]-hues[i]+360)%360)
				assert.GreaterOrEqual(t, d, 40, "%s: hues %v", prefix, hues)
			}
		}
	}
}

func TestAge(t *testing.T) {
	now := time.Now()
	for d, want := range map[time.Duration]string{
		300 * time.Millisecond:      "0.3s ago",
		12 * time.Second:            "12s ago",
		90 * time.Second:            "1m 30s ago",
		3*time.Hour + 4*time.Minute: "3h 04m ago",
		72 * time.Hour:              "3d ago",
		-2 * time.Second:            "0.0s ago", // a clock ahead of ours
	} {
		assert.Equal(t, want, age(now.Add(-d), now), "%v", d)
	}
	assert.Empty(t, age(time.Time{}, now))
}
