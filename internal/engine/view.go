package engine

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/nonchan7720/ronin/internal/store"
)

// view is one node's picture of a bucket, folded from what its watcher
// delivers: election records, live sessions, and each session's expiry
// countdown. It is pure: no I/O, no goroutines, no locks; callers pass the
// monotonic time and hold the bucket's lock.
type view struct {
	synced    bool   // the watcher delivered its initial values
	gen       uint64 // watch generation, to sweep stale entries on resync
	records   map[string]recordEntry
	sessions  map[string]sessionEntry
	bySession map[string]map[string]struct{} // session id -> keys it holds
	obs       *observer
	lastRev   uint64 // highest revision delivered
	genesis   bool   // the genesis record is present
	genGen    uint64 // watch generation that delivered it
	// Sessions that records name but this view has not seen live. A
	// watcher reading a compacted stream can deliver a record before its
	// session: the session's older revision was dropped when it renewed,
	// and the new one comes later. Such a record counts as held until the
	// session is seen (then it is live), its delete marker is seen, or a
	// TTL passes, counted on this node's clock from when the view first
	// missed it, with the store not silent meanwhile (then it is dead).
	unseen map[string]time.Duration
	dead   map[string]bool // sessions known to have ended
}

// recordEntry is the last state of an election record.
type recordEntry struct {
	rev     uint64
	present bool // false: deleted (rev is the delete marker's)
	rec     record
	gen     uint64
	at      time.Time // server time of the write
}

// sessionEntry is the last state of a live session.
type sessionEntry struct {
	rev uint64
	val sessionValue
	gen uint64
	at  time.Time // server time of the write
}

// change says what one fold step changed, for the bucket to act on.
type change struct {
	key        string   // record written ("" for none)
	rev        uint64   // its revision
	dropped    []string // sessions that ended
	freed      []string // keys freed by ended sessions
	membership bool     // the member set or a member's state changed
	unreadable bool     // the value was not Ronin's
}

func newView(ttl, stallGap time.Duration) *view {
	return &view{
		records:   map[string]recordEntry{},
		sessions:  map[string]sessionEntry{},
		bySession: map[string]map[string]struct{}{},
		obs:       newObserver(ttl, stallGap),
		unseen:    map[string]time.Duration{},
		dead:      map[string]bool{},
	}
}

// resync starts a new watch generation: the view is incomplete until
// finishSync.
func (v *view) resync() {
	v.synced = false
	v.gen++
}

// finishSync completes a (re)sync at now: entries the new watch did not
// deliver were deleted (or purged) while nobody watched. Countdowns of
// sessions whose revision did not change keep running. (Every delete
// leaves a marker that a new watch delivers, so only a purge makes
// entries vanish; the genesis rule keeps the view from granting anything
// for a TTL after that.)
func (v *view) finishSync(now time.Duration) (removed []string, c change) {
	for key, e := range v.records {
		if e.gen != v.gen {
			v.unindex(key, e)
			delete(v.records, key)
			removed = append(removed, key)
		}
	}
	for id, s := range v.sessions {
		if s.gen != v.gen {
			// Not delivered by the new watch: deleted and purged, or only
			// renewed while the watch read past it. Its records count as
			// held until a TTL settles which.
			c.merge(v.dropSession(id))
			delete(v.dead, id)
			v.unseen[id] = now
		}
	}
	v.genesis = v.genesis && v.genGen == v.gen
	v.synced = true
	v.obs.event(now)
	return removed, c
}

// apply folds one store entry in at now.
func (v *view) apply(e store.Entry, now time.Duration) change {
	v.obs.event(now)
	v.lastRev = max(v.lastRev, e.Rev)
	put := e.Op == store.Put
	if e.Key == genesisKey {
		v.genesis, v.genGen = put, v.gen
		return change{membership: true}
	}
	if id, ok := sessionID(e.Key); ok {
		return v.applySession(id, e, now)
	}
	c := change{key: e.Key, rev: e.Rev}
	old := v.records[e.Key]
	v.unindex(e.Key, old)
	ne := recordEntry{rev: e.Rev, present: put, gen: v.gen, at: e.Created}
	if put {
		if err := json.Unmarshal(e.Value, &ne.rec); err != nil {
			c.unreadable = true
		}
		if v.bySession[ne.rec.Session] == nil {
			v.bySession[ne.rec.Session] = map[string]struct{}{}
		}
		v.bySession[ne.rec.Session][e.Key] = struct{}{}
	}
	v.records[e.Key] = ne
	if id := ne.rec.Session; put && !c.unreadable && !v.dead[id] {
		if _, live := v.sessions[id]; !live {
			if _, ok := v.unseen[id]; !ok {
				v.unseen[id] = now
			}
		}
	}
	return c
}

func (v *view) applySession(id string, e store.Entry, now time.Duration) change {
	if e.Op != store.Put {
		return v.dropSession(id)
	}
	var c change
	var val sessionValue
	if err := json.Unmarshal(e.Value, &val); err != nil {
		c.unreadable = true
	}
	old, existed := v.sessions[id]
	v.sessions[id] = sessionEntry{rev: e.Rev, val: val, gen: v.gen, at: e.Created}
	delete(v.unseen, id)
	delete(v.dead, id)
	v.obs.seen(id, e.Rev, now)
	c.membership = !existed || old.val != val
	return c
}

// dropSession forgets a deleted session: the keys it held are free.
func (v *view) dropSession(id string) change {
	v.dead[id] = true
	if _, unseen := v.unseen[id]; unseen {
		delete(v.unseen, id)
		return change{freed: v.keysOf(id)}
	}
	if _, ok := v.sessions[id]; !ok {
		return change{}
	}
	delete(v.sessions, id)
	v.obs.gone(id)
	return change{dropped: []string{id}, membership: true, freed: v.keysOf(id)}
}

// keysOf lists the keys whose records name session id.
func (v *view) keysOf(id string) []string {
	var keys []string
	for key := range v.bySession[id] {
		keys = append(keys, key)
	}
	return keys
}

// settleUnseen declares dead the unseen sessions missed for a TTL at now
// (unless the store has been silent: nothing is concluded from a stale
// view) and returns the keys that frees; and when the next one is due.
func (v *view) settleUnseen(now time.Duration) (c change, next time.Duration, ok bool) {
	if v.obs.silent(now) {
		return c, 0, false
	}
	for id, since := range v.unseen {
		if now-since >= v.obs.ttl {
			delete(v.unseen, id)
			v.dead[id] = true
			c.freed = append(c.freed, v.keysOf(id)...)
			continue
		}
		if at := since + v.obs.ttl; !ok || at < next {
			next, ok = at, true
		}
	}
	return c, next, ok
}

func (c *change) merge(o change) {
	c.dropped = append(c.dropped, o.dropped...)
	c.freed = append(c.freed, o.freed...)
	c.membership = c.membership || o.membership
}

func (v *view) unindex(key string, e recordEntry) {
	if !e.present {
		return
	}
	if set := v.bySession[e.rec.Session]; set != nil {
		delete(set, key)
		if len(set) == 0 {
			delete(v.bySession, e.rec.Session)
		}
	}
}

// rev is the revision of key's last write in the view, 0 if it has none
// (a session key's, while the session lives).
func (v *view) rev(key string) uint64 {
	if id, ok := sessionID(key); ok {
		return v.sessions[id].rev
	}
	return v.records[key].rev
}

// holder returns the holder of key and the revision a CAS write must
// expect to take it. A record whose session is gone is free.
func (v *view) holder(key string) (Holder, uint64) {
	e := v.records[key]
	if !e.present {
		return Holder{Since: e.at, Released: e.rev != 0}, e.rev
	}
	if _, live := v.sessions[e.rec.Session]; !live {
		if _, unseen := v.unseen[e.rec.Session]; unseen {
			// Its session may be live and not delivered yet: held.
			return Holder{Candidate: e.rec.Candidate, Node: e.rec.Node, Rev: e.rev, Since: e.at}, e.rev
		}
		return Holder{Since: e.at}, e.rev
	}
	return Holder{Candidate: e.rec.Candidate, Node: e.rec.Node, Rev: e.rev, Since: e.at}, e.rev
}

// holders returns the live holder of every held key.
func (v *view) holders() map[string]Holder {
	out := make(map[string]Holder, len(v.records))
	for key := range v.records {
		if h, _ := v.holder(key); h.Candidate != "" {
			out[key] = h
		}
	}
	return out
}

// liveSession returns a live, not leaving session of node (the newest if
// it has several), and whether it has one.
func (v *view) liveSession(node string) (string, bool) {
	var id string
	var rev uint64
	for sid, s := range v.sessions {
		if s.val.Node == node && !s.val.Leaving && s.rev > rev {
			id, rev = sid, s.rev
		}
	}
	return id, id != ""
}

// members returns the sorted, distinct nodes with a live session that is
// not leaving.
func (v *view) members() []string {
	var out []string
	for _, s := range v.sessions {
		if !s.val.Leaving {
			out = append(out, s.val.Node)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}
