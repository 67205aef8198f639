// Package errs holds the sentinel errors that every layer of Ronin wraps,
// so that one errors.Is test works whichever layer returned the error. The
// root package ronin re-exports each of them.
package errs

import "errors"

var (
	// ErrInvalidConfig is wrapped by every error that rejects a
	// configuration field; the message names the field and the value.
	ErrInvalidConfig = errors.New("ronin: invalid config")
	// ErrClosed means the Manager is shut down (or shutting down).
	ErrClosed = errors.New("ronin: manager shut down")
)
