package engine

import "slices"

// Subscription delivers a signal on C whenever what it watches may have
// changed. Signals coalesce: C has room for one.
type Subscription struct {
	c   chan struct{}
	key string
	all bool
}

// C is the subscription's signal channel.
func (s *Subscription) C() <-chan struct{} { return s.c }

// Subscribe returns a subscription to changes of key, of the node's session
// and of the bucket's view as a whole (resync).
func (b *Bucket) Subscribe(key string) *Subscription {
	s := &Subscription{c: make(chan struct{}, 1), key: key}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.subs[key] = append(b.subs[key], s)
	return s
}

// SubscribeAll returns a subscription to every change in the bucket,
// membership included.
func (b *Bucket) SubscribeAll() *Subscription {
	s := &Subscription{c: make(chan struct{}, 1), all: true}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.allSubs[s] = struct{}{}
	return s
}

// Unsubscribe ends s.
func (b *Bucket) Unsubscribe(s *Subscription) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if s.all {
		delete(b.allSubs, s)
		return
	}
	subs := slices.DeleteFunc(b.subs[s.key], func(o *Subscription) bool { return o == s })
	if len(subs) == 0 {
		delete(b.subs, s.key)
	} else {
		b.subs[s.key] = subs
	}
}

func (s *Subscription) signal() {
	select {
	case s.c <- struct{}{}:
	default:
	}
}

// notifyKeyLocked signals the subscribers of key and of everything.
func (b *Bucket) notifyKeyLocked(key string) {
	for _, s := range b.subs[key] {
		s.signal()
	}
	for s := range b.allSubs {
		s.signal()
	}
}

// notifyAllLocked signals every subscriber.
func (b *Bucket) notifyAllLocked() {
	for _, subs := range b.subs {
		for _, s := range subs {
			s.signal()
		}
	}
	for s := range b.allSubs {
		s.signal()
	}
}
