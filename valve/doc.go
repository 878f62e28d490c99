// Package valve runs Mvalve's throttling message pipe inside the server
// (the "Mode B" of the Mvalve notes): the valve is the only consumer of the
// normal tables (q_incoming by default) and passes each message on into
// the timed table (q_timed) with ready = 0, so that a reader blocked in
// queue_wait('q_timed:ready<NOW', ...) wakes at once.
//
// The limit (at most max_items per interval and destination, Data::Valve's
// sliding log) holds where readers receive messages, not only where the
// valve releases them: a destination's released rows count against its
// budget while they are in the timed table (free, or owned by a reader that
// has not consumed them), and for one interval after they leave it
// (consumed, or found gone). A message is released only when fewer than
// max_items of its destination count; the others wait, in order, in the
// valve's persistent backlog. A reader receives a row between taking it and
// consuming it, so no reader, however late, slow or stalled, receives more
// than max_items of a destination in any interval. See README.md.
//
// Every decision is one atomic batch of the queue store: consuming the
// normal row, inserting the timed row (or the waiting entry), the
// destination's state and the stats-log row. No message is lost or
// duplicated by a crash at any point. Message BLOBs are moved byte for
// byte; the destination comes from the destination column.
//
// Emergency tables stay pass-through: when a connection consumes an
// emergency row for a destination, and drop_on_emergency is set, normal
// messages for that destination arriving within the next interval are
// dropped, as Mvalve's Reader does.
//
// Several processes sharing a queue store (queue/sqlstore) run a valve
// through RunElected: one at a time, elected through the store (an
// Elector); a new term fences its predecessor's writes off
// (queue.Write.Fence) and resumes from the stored state. The consume
// hooks then see every process's consumes, from the store's consume log,
// and acknowledge each in the write that stores what it changed.
package valve
