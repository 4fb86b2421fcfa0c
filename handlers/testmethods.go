//go:build tethertest

package handlers

import (
	"context"
	"os"
	"time"

	"github.com/tether-dev/tether/progress"
)

// Methods that exist only in test builds (-tags tethertest), so that the
// end-to-end tests can drive cancellation, progress and panics through the
// real binary.
func init() {
	register("test/sleep", Method{Async: true, Handle: typed(testSleep)})
	register("test/panic", Method{Handle: typed(testPanic)})
}

type testSleepParams struct {
	Ms     int    `json:"ms"`
	Marker string `json:"marker"` // written when the request is cancelled
}

func testSleep(ctx context.Context, env *Env, p *testSleepParams) (any, error) {
	deadline := time.After(time.Duration(p.Ms) * time.Millisecond)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case <-deadline:
			return "slept", nil
		case <-tick.C:
			progress.Report(ctx, "tick %d", i)
		case <-ctx.Done():
			if p.Marker != "" {
				_ = os.WriteFile(p.Marker, []byte("cancelled"), 0o644)
			}
			return nil, ctx.Err()
		}
	}
}

func testPanic(ctx context.Context, env *Env, p *struct{}) (any, error) {
	panic("test panic")
}
