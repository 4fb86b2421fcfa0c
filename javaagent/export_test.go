package javaagent

import (
	"testing"
	"time"
)

// SetOneShotTimeout shortens the one-shot window for a test.
func SetOneShotTimeout(t *testing.T, d time.Duration) {
	old := oneShotTimeout
	oneShotTimeout = d
	t.Cleanup(func() { oneShotTimeout = old })
}
