#!/usr/bin/env perl
# Mode A: q_timed messages becoming due, as Mvalve's Reader sees them. The
# condition 'q_timed:ready<NOW' carries the client's clock at call time and
# is fixed for the whole wait, so a Reader polls with short timeouts: a row
# is skipped while ready >= NOW, and a later call (after it is due) gets
# it. Among due rows the oldest-inserted comes first, not the smallest
# ready.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Time::HiRes ();
use Q4MTest;
use MvalveWire;

my $writer = connect_db();
my $reader = connect_db();
ok(plugin_version($reader) >= 0.8, 'plugin version check');
mvalve_create($writer);

my $ins = 'INSERT INTO q_timed ( destination, message, ready) VALUES ( ?, ?, ? )';

# Mvalve::Base::defer writes ready = slot (10 us units) and the same value
# in X-Mvalve-Retry-Time. 'later' is due in 3 s (time enough, on a loaded
# machine, for the first polls to come before it); 'past' (inserted after
# it) is already due.
my $due = now_ready(3);
my $later = new_message(destination => 'test', content => 'due in 3 s',
    headers => { 'X-Mvalve-Retry-Time' => $due });
my $past = new_message(destination => 'test', content => 'already due',
    headers => { 'X-Mvalve-Retry-Time' => now_ready(-1) });
my $later_blob = frame($later);
is(q4m_do($writer, $ins, 'test', $later_blob, "$due"), 1, 'insert the message due in 3 s');
is(q4m_do($writer, $ins, 'test', frame($past), '' . now_ready(-1)), 1, 'insert an already due message after it');

# 1. The due row is taken although an older, not yet due row precedes it.
my ($idx, $table, $cond) = q4m_next(dbh => $reader, timeout => 1);
is($table, 'q_timed', 'queue_wait returns the timed table at once');
ok($cond < $due, 'the condition NOW was before the first row was due');
my $row = q4m_fetch($reader, 'q_timed');
is(unframe($row->{message})->{id}, $past->{id}, 'the already due row, skipping the older row not yet due');

# 2. Poll with 1 s timeouts until the other row comes; the call made
# within 1.2 s of the due time waits 2 s, so that it spans the due time by
# far whenever it starts (with 1 s calls only, the due time could fall at
# the end of one, where a loaded machine's delays put it now and then).
my (@calls, $got);
for my $i (1 .. 10) {
    my $t0 = Time::HiRes::time();
    my $timeout = $due - $t0 * 100000 > 120000 ? 1 : 2;
    my ($idx, $table, $now) = q4m_next(dbh => $reader, timeout => $timeout);
    my $t1 = Time::HiRes::time();
    push @calls, { idx => $idx, now => $now, start => $t0, end => $t1, timeout => $timeout };
    if ($idx) {
        is($table, 'q_timed', "call $i returns the timed table");
        $got = q4m_fetch($reader, 'q_timed');
        last;
    }
}
ok($got, 'the message due in 3 s arrived') or diag(explain(\@calls));
my @early = grep { $_->{idx} && $_->{now} <= $due } @calls;
is(scalar(@early), 0, 'no call whose NOW was not past ready returned the row');
my @skipped = grep { !$_->{idx} } @calls;
ok(@skipped >= 1, 'at least one call before the due time timed out (returned 0)');
for my $c (@skipped) {
    cmp_ok($c->{now}, '<=', $due, 'a call that timed out had NOW <= ready');
    cmp_ok($c->{end} - $c->{start}, '>=', $c->{timeout} - 0.1, "and waited its whole $c->{timeout} s timeout");
}
# A row that becomes due during a wait does not wake the waiter: the call
# spanning the due time still times out.
my @spanning = grep { $_->{start} * 100000 < $due && $_->{end} * 100000 > $due + 5000 } @skipped;
ok(@spanning >= 1, 'a wait that spanned the due time still timed out (its condition was fixed)')
    or diag(explain(\@calls));
my $last = $calls[-1];
ok($last->{idx} && $last->{now} > $due, 'the row came to the first call whose NOW was past ready');
cmp_ok($last->{end} - $last->{start}, '<', 0.8, 'and that call returned at once, not later in its wait');
cmp_ok($last->{end} * 100000, '>=', $due, 'not before the due time');
if ($got) {
    ok($got->{message} eq $later_blob, 'it is the message due in 3 s, byte for byte');
    is_deeply(unframe($got->{message}), $later, 'and it decodes to the same message');
    is($got->{ready}, $due, "its ready column is $due");
    is(message_header(unframe($got->{message}), 'X-Mvalve-Retry-Time'), $due,
        'X-Mvalve-Retry-Time header preserved');
}
is(q4m_val($reader, 'select queue_end()'), 1, 'select queue_end()');
is(q4m_val($writer, 'SELECT COUNT(*) FROM q_timed'), 0, 'q_timed drained');

# 3. Priority is by argument order: a due timed row goes before a normal
# one, after an emergency one.
q4m_do($writer, 'INSERT INTO q_incoming ( destination, message) VALUES ( ?, ? )', 'test', frame(new_message(destination => 'test', content => 'n')));
q4m_do($writer, $ins, 'test', frame(new_message(destination => 'test', content => 't')), '' . now_ready(-1));
q4m_do($writer, 'INSERT INTO q_emerg ( destination, message) VALUES ( ?, ? )', 'test', frame(new_message(destination => 'test', content => 'e')));
my @order;
for (1 .. 3) {
    my (undef, $table) = q4m_next(dbh => $reader, timeout => 5);
    my $r = $table ? q4m_fetch($reader, $table) : undef;
    push @order, $r ? unframe($r->{message})->{content} : 'none';
}
is_deeply(\@order, [qw(e t n)], 'emergency, then due timed, then normal');
is(q4m_val($reader, 'select queue_end()'), 1, 'select queue_end()');
$_->disconnect for $writer, $reader;
done_testing();
