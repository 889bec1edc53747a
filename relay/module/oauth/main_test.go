package oauth

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run when a test leaves goroutines behind (provider calls,
// re-checks, servers).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
