package valve

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"time"

	"github.com/q4mproxy/q4mproxy/queue"
)

// Elector elects, among the processes that share a queue store, the one
// that runs a valve (queue/sqlstore's Store is one, through the
// upstream's GET_LOCK).
type Elector interface {
	// Lead blocks until this process is elected for name, or ctx ends.
	// The returned context ends when ctx does or the election is lost;
	// release gives the election up.
	Lead(ctx context.Context, name string) (lead context.Context, release func(), err error)
	// AwaitUnowned returns once no row of the tables is owned by any
	// process: a predecessor's rows are back at their places.
	AwaitUnowned(ctx context.Context, dbname string, tables []string) error
}

// RunElected runs the valve whenever this process is elected for it
// through el under name, until ctx is done: several processes sharing a
// store, each configured with the same valve, run it one at a time, and
// when the one running it dies (or loses the election) another takes
// over from the stored state. Meanwhile the process stands by: its
// Status is empty, and it still refuses the normal tables' rows to its
// clients (Reserve).
//
// Each term starts by storing a token of its own in the valve's state
// (the write waits for the writes of a former process still under way),
// and every write of the term requires it (queue.Write.Fence): a process
// that lost the election without noticing yet cannot overwrite its
// successor's state, release a message twice or consume another.
func (v *Valve) RunElected(ctx context.Context, el Elector, name string) error {
	for _, t := range v.cfg.NormalTables {
		v.db.Reserve(v.cfg.Database, t)
	}
	v.setStandby(true)
	v.log.Info("valve standing by", "election", name)
	for {
		lead, release, err := el.Lead(ctx, name)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, queue.ErrClosed) {
				return nil
			}
			return err
		}
		v.log.Info("valve elected", "election", name)
		err = v.term(lead, el)
		v.setStandby(true)
		release()
		if ctx.Err() != nil {
			return err
		}
		v.log.Warn("valve no longer elected; standing by", "election", name, "err", err, "cause", context.Cause(lead))
		sleep(ctx, time.Second)
	}
}

// Election is the name the valve is elected under: its database and name.
func (v *Valve) Election() string { return v.cfg.Database + "_" + v.cfg.Name }

func (v *Valve) setStandby(b bool) {
	v.mu.Lock()
	v.standby = b
	v.mu.Unlock()
}

// term runs the valve for one election term. It first fences its
// predecessor off, then waits for the rows its predecessor owned to be
// back (it would otherwise pass later messages on before them).
func (v *Valve) term(ctx context.Context, el Elector) error {
	token := make([]byte, 16)
	_, _ = rand.Read(token)
	fence := &queue.AuxEntry{NS: v.ns, Key: []byte("epoch"), Value: []byte(hex.EncodeToString(token))}
	if err := v.db.NewInternalConn().Apply(queue.Write{Set: []queue.AuxEntry{*fence}}); err != nil {
		return err
	}
	if err := el.AwaitUnowned(ctx, v.cfg.Database, v.cfg.NormalTables); err != nil {
		return err
	}
	v.fence = fence
	v.setStandby(false)
	return v.Run(ctx)
}
