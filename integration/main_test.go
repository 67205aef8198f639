package integration

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if any goroutine outlives the tests: every
// Manager, candidate, group, proxy and history the tests start must stop.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
