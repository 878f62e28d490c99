package valve

import (
	"context"
	"errors"
	"testing"

	"github.com/q4mproxy/q4mproxy/queue"
)

// termElector elects whenever the test sends a term: a channel whose
// closing ends the term (the election lost).
type termElector struct {
	terms chan chan struct{}
}

func (e *termElector) AwaitUnowned(context.Context, string, []string) error { return nil }

func (e *termElector) Lead(ctx context.Context, name string) (context.Context, func(), error) {
	select {
	case <-ctx.Done():
		return nil, nil, ctx.Err()
	case end := <-e.terms:
		lead, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-end:
				cancel()
			case <-lead.Done():
			}
		}()
		return lead, cancel, nil
	}
}

// TestValveElected: a valve run through an election stands by (Status
// empty, its normal table still refused to clients) until elected; runs;
// stands by again when the term ends; and resumes from the stored state
// in the next term, its counters going on. A write of a former term after
// a new one began is fenced off.
func TestValveElected(t *testing.T) {
	r := startRig(t, t.TempDir(), rateSettings(), nil, true)
	r.stopValve()
	v, err := New(r.db, r.eng, r.s, quietLog())
	if err != nil {
		t.Fatal(err)
	}
	r.v = v
	el := &termElector{terms: make(chan chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- v.RunElected(ctx, el, "test_mvalve") }()

	r.insert("q_incoming", "a", "m1", "m2", "m3")
	client := r.newSession()
	defer client.Close()
	r.waitFor("the standing-by valve to reserve q_incoming", func() bool {
		return strRows(execOn(t, client, "SELECT queue_wait('q_incoming', 0)"))[0][0] == "0"
	})
	if st := v.Status(); len(st) != 0 {
		t.Fatalf("Status while standing by: %+v", st)
	}

	end := make(chan struct{})
	el.terms <- end
	st := r.decided("a", 3)
	wantStatus(t, st, 2, 1, 0, 0, 1, st.NextRelease)
	v.mu.Lock()
	fence := v.fence
	v.mu.Unlock()
	close(end)
	r.waitFor("the valve to stand by", func() bool { return len(v.Status()) == 0 })

	// A write of the former term, once the next began, is fenced off.
	el.terms <- make(chan struct{})
	r.waitFor("the second term", func() bool { return len(v.Status()) > 0 })
	r.waitFor("the second term to load its state", func() bool {
		v.mu.Lock()
		defer v.mu.Unlock()
		return v.started
	})
	late := queue.Write{Fence: fence, Set: []queue.AuxEntry{{NS: v.ns, Key: []byte("d/a"), Value: []byte("{}")}}}
	if err := r.db.NewInternalConn().Apply(late); !errors.Is(err, queue.ErrFenced) {
		t.Fatalf("a write of the former term: %v, want ErrFenced", err)
	}
	st = r.status("a")
	wantStatus(t, st, 2, 1, 0, 0, 1, st.NextRelease)
	// The backlog restored goes on: consume the two released, the third
	// is released.
	reader := r.newSession()
	defer reader.Close()
	for _, want := range []string{"m1", "m2"} {
		r.waitFor("a released message", func() bool {
			got := take(t, reader)
			if got != "" && got != want {
				t.Fatalf("took %q, want %q", got, want)
			}
			return got == want
		})
		consume(t, reader)
	}
	r.waitFor("m3 released", func() bool { return r.status("a").Released == 1 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("RunElected: %v", err)
	}
}
