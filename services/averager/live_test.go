package averager

import (
	"context"
	"testing"
	"time"

	"github.com/loopstock/loopstock/internal/logging"
	"github.com/loopstock/loopstock/internal/slotlease"
	"github.com/loopstock/loopstock/internal/testenv"
	"github.com/loopstock/loopstock/internal/wire"
)

// The live generators are those whose coordination index is locked: one
// that releases its lease drops out.
func TestLiveGeneratorsFollowTheCoordinationKeys(t *testing.T) {
	c := testenv.StartConsul(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := followGenerators(ctx, c.Client, "test/gen", logging.Discard())

	ids := []wire.InstanceID{{1}, {2}}
	stops := make([]context.CancelFunc, len(ids))
	done := make([]chan struct{}, len(ids))
	for i, id := range ids {
		coord := slotlease.New(c.Client, slotlease.Options{Prefix: "test/gen", Instance: id.String(), Interval: 10 * time.Millisecond,
			Min: 1, Max: 10000, MaxGenerators: 4, LeaseAhead: 200 * time.Millisecond, SessionTTL: 10 * time.Second}, logging.Discard())
		cctx, stop := context.WithCancel(ctx)
		stops[i], done[i] = stop, make(chan struct{})
		go func() { coord.Run(cctx); close(done[i]) }()
	}
	has := func(want ...wire.InstanceID) func() bool {
		return func() bool {
			live, ok := w.Live()
			if !ok || len(live) != len(want) {
				return false
			}
			for _, id := range want {
				if _, in := live[id]; !in {
					return false
				}
			}
			return true
		}
	}
	testenv.Eventually(t, 15*time.Second, "both generators live", has(ids...))
	stops[0]()
	<-done[0]
	testenv.Eventually(t, 15*time.Second, "the stopped generator gone from the live set", has(ids[1]))
}
