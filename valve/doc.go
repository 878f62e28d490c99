// Package valve runs Mvalve's throttling message pipe inside the server
// (the "Mode B" of the Mvalve notes): the valve is the only consumer of the
// normal tables (q_incoming by default), throttles per destination with
// Data::Valve's sliding-log semantics (at most max_items releases in any
// window of interval), and releases each message into the timed table
// (q_timed) with ready = 0: at once when admitted, or at the earliest time
// the limit allows when throttled. Throttled messages wait in a persistent
// schedule, so a consumer blocked in queue_wait('q_timed:ready<NOW', ...)
// wakes when the message is due.
//
// Every decision is one atomic batch of the queue store: consuming the
// normal row, inserting the timed row (or the schedule entry), the
// destination's state and the stats-log row. No message is lost or
// duplicated by a crash at any point. Message BLOBs are moved byte for
// byte; the destination comes from the destination column.
//
// Emergency tables stay pass-through: when a connection consumes an
// emergency row for a destination, and drop_on_emergency is set, normal
// messages for that destination arriving within the next interval are
// dropped, as Mvalve's Reader does.
package valve
