// Package powerloss holds only a test: the power-loss test of q4mproxy
// (powerloss_test.go). It runs the server in process (server, sqlfront and
// queue wired as cmd/q4mproxy wires them) on Pebble's crashable in-memory
// filesystem, drives it with real clients over TCP, cuts the power at
// random moments by keeping only what was synced, and checks what the
// clients were told against what the reopened store holds.
package powerloss
