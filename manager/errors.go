package manager

import (
	"github.com/nonchan7720/ronin/internal/errs"
)

var (
	// ErrInvalidConfig is wrapped by every error that rejects a [Config]
	// field; the message names the field and the offending value.
	// It is the same value in every layer.
	ErrInvalidConfig = errs.ErrInvalidConfig

	// ErrNotStarted is returned by code built on a Manager that is used
	// before a successful [Manager.Start] (Conn and JetStream are nil then).
	ErrNotStarted = errs.ErrNotStarted

	// ErrClosed reports use of a Manager after [Manager.Shutdown] began,
	// including a Start that was interrupted by Shutdown.
	// It is the same value in every layer.
	ErrClosed = errs.ErrClosed

	// ErrDuplicateNode is wrapped by the error of a [Manager.Start] that
	// found another live node using the same [Config.NodeID]; the message
	// names the NodeID. Start stops whatever it had started before it
	// returns it.
	ErrDuplicateNode = errs.ErrDuplicateNode
)
