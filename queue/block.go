package queue

import "context"

// A statement that blocks (in Owner.Wait, or SLEEP) lets the code that runs
// it know just before it parks, through a hook carried by its context: the
// server then starts watching the client's socket for a disconnect, which
// statements that return at once do not need.

type blockHookKey struct{}

// WithBlockHook returns a context whose blocking waits call f just before
// they park. f runs on the waiting goroutine and may be called more than
// once.
func WithBlockHook(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, blockHookKey{}, f)
}

// Blocking calls the hook of ctx, if any: the caller is about to park.
func Blocking(ctx context.Context) {
	if f, ok := ctx.Value(blockHookKey{}).(func()); ok {
		f()
	}
}
