#!/usr/bin/env perl
# Mode A: the timeout trap of Mvalve::Queue::Q4M::next. With timeout <= 0
# the Reader leaves the timeout out, so it sends
#   SELECT queue_wait('q_emerg','q_timed:ready<N','q_incoming')
# and q4m takes the LAST argument as the timeout: 'q_incoming' becomes the
# integer 0 and q_incoming is never waited on. Emergency and due timed rows
# still come; a queued normal row never does.
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

my $normal = frame(new_message(destination => 'test', content => 'normal'));
is(q4m_do($writer, 'INSERT INTO q_incoming (destination, message) VALUES (?, ?)', 'test', $normal),
    1, 'a normal message is queued');

for my $i (1 .. 3) {
    my $t0 = Time::HiRes::time();
    my ($idx, undef, undef, $args) = q4m_next(dbh => $reader, timeout => 0);
    my $took = Time::HiRes::time() - $t0;
    is(scalar(@$args), 3, "call $i: three arguments, no timeout");
    is($args->[-1], 'q_incoming', "call $i: the last argument is q_incoming");
    is($idx, 0, "call $i: queue_wait returns 0 although q_incoming has a row");
    cmp_ok($took, '<', 20, "call $i: at once ('q_incoming' is the timeout: 0, not the default 60 s)");
}
is(q4m_val($writer, 'SELECT COUNT(*) FROM q_incoming'), 1, 'the normal row is still queued');

my $emerg = frame(new_message(destination => 'test', content => 'emergency'));
q4m_do($writer, 'INSERT INTO q_emerg (destination, message) VALUES (?, ?)', 'test', $emerg);
my ($idx, $table) = q4m_next(dbh => $reader, timeout => 0);
is($idx, 1, 'an emergency row is still returned');
is(q4m_fetch($reader, 'q_emerg')->{message}, $emerg, 'the emergency BLOB');

my $timed = frame(new_message(destination => 'test', content => 'timed'));
q4m_do($writer, 'INSERT INTO q_timed (destination, message, ready) VALUES (?, ?, ?)', 'test', $timed, '' . now_ready(-1));
($idx, $table) = q4m_next(dbh => $reader, timeout => 0);
is($idx, 2, 'a due timed row is still returned');
is(q4m_fetch($reader, 'q_timed')->{message}, $timed, 'the timed BLOB');

($idx) = q4m_next(dbh => $reader, timeout => 0);
is($idx, 0, 'and the normal row is not, even with nothing else queued');

# With the timeout sent, the same row comes at once.
($idx, $table) = q4m_next(dbh => $reader, timeout => 60);
is($idx, 3, "with the timeout ('60') the normal table is index 3");
is(q4m_fetch($reader, 'q_incoming')->{message}, $normal, 'the normal BLOB');
is(q4m_val($reader, 'select queue_end()'), 1, 'select queue_end()');
is(q4m_val($writer, 'SELECT COUNT(*) FROM q_incoming'), 0, 'q_incoming drained');
$_->disconnect for $writer, $reader;
done_testing();
