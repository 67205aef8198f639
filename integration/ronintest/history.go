package ronintest

import (
	"fmt"
	"sync"
	"time"
)

// Leader is what the history checker samples: anything that reports its
// own view of leadership, such as *ronin.Candidate.
type Leader interface {
	IsLeader() bool
	LeaderRev() uint64
}

// Term is one observed leadership interval of one participant.
type Term struct {
	Key, Who   string
	Rev        uint64
	Start, End time.Time // End is zero while the term lasts
}

// History samples, in a tight loop, every participant's own IsLeader view
// of each key and fails on two simultaneous leaders of one key or on a
// term whose token does not exceed the previous term's.
//
// A sample round reads every participant twice. A participant that reports
// the same token in both reads led for the whole span between them (a term
// never pauses and never reuses a token), so another participant reporting
// leadership inside that span is a certain overlap, never an artefact of the
// reads being sequential.
type History struct {
	mu         sync.Mutex
	keys       map[string]map[string]Leader // key -> who -> participant
	open       map[string]*Term             // key/who -> running term
	terms      []Term
	lastRev    map[string]uint64
	violations []string
	stop       chan struct{}
	done       chan struct{}
}

// NewHistory starts sampling; call Stop to end it.
func NewHistory() *History {
	h := &History{
		keys:    map[string]map[string]Leader{},
		open:    map[string]*Term{},
		lastRev: map[string]uint64{},
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	go h.loop()
	return h
}

// Add samples participant who for key from now on.
func (h *History) Add(key, who string, l Leader) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.keys[key] == nil {
		h.keys[key] = map[string]Leader{}
	}
	h.keys[key][who] = l
}

// Stop ends sampling and returns the violations and all terms seen.
func (h *History) Stop() (violations []string, terms []Term) {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
	h.mu.Lock()
	defer h.mu.Unlock()
	now := time.Now()
	for _, t := range h.open {
		t.End = now
		h.terms = append(h.terms, *t)
	}
	h.open = map[string]*Term{}
	return h.violations, h.terms
}

type reading struct {
	who    string
	leader bool
	token  uint64
}

func (h *History) loop() {
	defer close(h.done)
	for {
		select {
		case <-h.stop:
			return
		default:
		}
		h.mu.Lock()
		for key, parts := range h.keys {
			h.sampleLocked(key, parts)
		}
		h.mu.Unlock()
		time.Sleep(50 * time.Microsecond)
	}
}

func (h *History) sampleLocked(key string, parts map[string]Leader) {
	order := make([]string, 0, len(parts))
	for who := range parts {
		order = append(order, who)
	}
	read := func() []reading {
		out := make([]reading, len(order))
		for i, who := range order {
			l := parts[who]
			tok := l.LeaderRev()
			out[i] = reading{who: who, leader: tok != 0 && l.IsLeader(), token: tok}
		}
		return out
	}
	first, second := read(), read()
	now := time.Now()
	for i, a := range first {
		if !a.leader || !second[i].leader || a.token != second[i].token {
			continue
		}
		// a led throughout [first[i], second[i]]: reads of others after
		// it in the first pass and before it in the second fall inside.
		for j := range order {
			if j == i {
				continue
			}
			if (j > i && first[j].leader) || (j < i && second[j].leader) {
				other := first[j]
				if j < i {
					other = second[j]
				}
				h.violations = append(h.violations, fmt.Sprintf("%s: %s (token %d) and %s (token %d) led at once",
					key, a.who, a.token, other.who, other.token))
			}
		}
	}
	for _, r := range second {
		id := key + "/" + r.who
		t := h.open[id]
		switch {
		case r.leader && t == nil:
			h.openTermLocked(key, r, now)
		case t != nil && (!r.leader || r.token != t.Rev):
			t.End = now
			h.terms = append(h.terms, *t)
			delete(h.open, id)
			if r.leader { // a new term at once
				h.openTermLocked(key, r, now)
			}
		}
	}
}

// openTermLocked starts a term; its token must exceed every earlier one.
func (h *History) openTermLocked(key string, r reading, now time.Time) {
	if r.token <= h.lastRev[key] {
		h.violations = append(h.violations, fmt.Sprintf("%s: %s got token %d, not above the previous %d",
			key, r.who, r.token, h.lastRev[key]))
	}
	h.lastRev[key] = max(h.lastRev[key], r.token)
	h.open[key+"/"+r.who] = &Term{Key: key, Who: r.who, Rev: r.token, Start: now}
}
