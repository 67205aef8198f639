package jsstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nonchan7720/ronin/internal/backoff"
	"github.com/nonchan7720/ronin/internal/store"
)

// JetStream API requests that a server forwards (to the stream leader, to
// the meta leader) are lost when that leader dies or is not elected yet,
// and a lost request is never answered: the caller only learns of it when
// its timeout runs out, 5 s by default. So API requests that may be sent
// again (opening a bucket, checking it, starting a watch's consumer)
// overlap: while attempts go unanswered a new one starts every
// attemptEvery, at most maxAttempts at once, each bounded by attemptMax.
// An answer that becomes possible is seen within about attemptEvery, and
// an answer slower than that (a loaded server) is still taken. Writes are
// never sent twice this way: a second CAS would conflict with the first.
const (
	attemptEvery = 250 * time.Millisecond
	attemptMax   = time.Second
	maxAttempts  = 4
)

// requestTimeout bounds an overlapping request whose caller set no
// deadline: nats.go's default API timeout.
const requestTimeout = 5 * time.Second

// overlap runs attempt until one succeeds, fatal reports an error as final,
// or ctx ends; attempts overlap while unanswered (see attemptEvery), and an
// error reply backs off from 50 ms to 1 s. Once one attempt has succeeded,
// discard (if not nil) receives what later attempts return successfully.
func overlap[T any](ctx context.Context, attempt func(context.Context) (T, error), fatal func(error) error, discard func(T)) (T, error) {
	var zero T
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attemptResult[T], maxAttempts) // late attempts never block
	wait := backoff.New(50*time.Millisecond, time.Second)
	var (
		running int
		next    <-chan time.Time // when to start another attempt; nil: when one ends
		lastErr error
	)
	start := func() {
		running++
		go func() {
			c, cancel := context.WithTimeout(actx, attemptMax)
			defer cancel()
			v, err := attempt(c)
			results <- attemptResult[T]{v, err}
		}()
		next = time.After(attemptEvery)
	}
	start()
	for {
		select {
		case <-ctx.Done():
			go drain(results, running, discard)
			return zero, fmt.Errorf("%w (last error: %v)", ctx.Err(), lastErr)
		case <-next:
			next = nil
			if running < maxAttempts {
				start()
			}
		case r := <-results:
			running--
			if r.err == nil {
				go drain(results, running, discard)
				return r.v, nil
			}
			if ferr := fatal(r.err); ferr != nil {
				go drain(results, running, discard)
				return zero, ferr
			}
			lastErr = r.err
			if !errors.Is(r.err, context.DeadlineExceeded) {
				next = time.After(wait.Next()) // an answer, not silence: back off
			} else if next == nil {
				start()
			}
		}
	}
}

// attemptResult is what one attempt of overlap returned.
type attemptResult[T any] struct {
	v   T
	err error
}

// drain waits for the running attempts that lost and hands their
// successes to discard.
func drain[T any](results <-chan attemptResult[T], running int, discard func(T)) {
	for ; running > 0; running-- {
		if r := <-results; r.err == nil && discard != nil {
			discard(r.v)
		}
	}
}

// retryOpen opens bucket name with overlapping attempts (see overlap).
func retryOpen(ctx context.Context, name string, attempt func(context.Context) (store.Opened, error), fatal func(error) error) (store.Opened, error) {
	o, err := overlap(ctx, attempt, fatal, nil)
	if err != nil && ctx.Err() != nil {
		return o, fmt.Errorf("ronin: open bucket %q: %w", name, err)
	}
	return o, err
}

// answered treats every answer as final: only silence is retried.
func answered(err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// bounded gives ctx nats.go's default request timeout if it has no deadline.
func bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, requestTimeout)
}
