package redistest

import (
	"context"
	"strings"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// HoldGet is a go-redis hook that, once armed, holds the reply of the
// first GET of a key containing Key until Release is closed: a read whose
// reply is on its way while other things happen. Held is closed when the
// reply is held. Add it with AddHook to a client that sends GETs one by
// one (a pipelined GET is not held).
type HoldGet struct {
	Key     string
	Armed   atomic.Bool
	Held    chan struct{}
	Release chan struct{}
}

// NewHoldGet returns an unarmed HoldGet for key.
func NewHoldGet(key string) *HoldGet {
	return &HoldGet{Key: key, Held: make(chan struct{}), Release: make(chan struct{})}
}

// Read arms h, runs read on a goroutine of its own and returns once the
// reply of its GET is held; the channel receives what read returns, after
// Release is closed.
func (h *HoldGet) Read(read func() string) <-chan string {
	out := make(chan string, 1)
	h.Armed.Store(true)
	go func() { out <- read() }()
	<-h.Held
	return out
}

// DialHook passes dials through.
func (h *HoldGet) DialHook(next redis.DialHook) redis.DialHook { return next }

// ProcessHook holds the reply of the first GET of a key containing Key
// after the hook was armed.
func (h *HoldGet) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		if cmd.Name() == "get" && len(cmd.Args()) == 2 && strings.Contains(cmd.Args()[1].(string), h.Key) && h.Armed.CompareAndSwap(true, false) {
			close(h.Held)
			<-h.Release
		}
		return err
	}
}

// ProcessPipelineHook passes pipelines through.
func (h *HoldGet) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
