package manager

import "errors"

var (
	// ErrInvalidConfig is wrapped by every error that rejects a [Config]
	// field; the message names the field and the offending value.
	ErrInvalidConfig = errors.New("ronin: invalid config")

	// ErrNotStarted is returned by code built on a Manager that is used
	// before a successful [Manager.Start] (Conn and JetStream are nil then).
	ErrNotStarted = errors.New("ronin: manager not started")

	// ErrClosed reports use of a Manager after [Manager.Shutdown] began,
	// including a Start that was interrupted by Shutdown.
	ErrClosed = errors.New("ronin: manager shut down")
)
