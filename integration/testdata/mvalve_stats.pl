#!/usr/bin/env perl
# Mode A: Mvalve::Logger::Stats (t/05_log.t's checks). The logger has its
# own connection and never sends S1; it logs 'enqueue' before each Writer
# insert and 'dequeue' after each Reader fetch, with CURRENT_TIMESTAMP.
# S12 counts them on that connection, which is never in owner mode.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use POSIX ();
use Q4MTest;
use MvalveWire;

my $N = 24;
my $writer = connect_db();
my $reader = connect_db();
my $logger = connect_db();
ok(plugin_version($writer) >= 0.8, 'writer plugin check');
ok(plugin_version($reader) >= 0.8, 'reader plugin check');
mvalve_create($writer);

my $log = 'INSERT INTO q_statslog ( action, destination, logged_on) VALUES ( ?, ?, CURRENT_TIMESTAMP )';
my $count = 'SELECT COUNT(*) FROM q_statslog WHERE action = ?';
ok(defined q4m_do($logger, 'DELETE FROM q_statslog'), 'DELETE FROM q_statslog (t/05 starts clean)');

my (%sent, %per_dest);
for my $i (1 .. $N) {
    my $dest = $i % 3 ? 'alpha' : 'beta';
    my $m = new_message(destination => $dest, content => "message $i");
    my $blob = frame($m);
    q4m_do($logger, $log, 'enqueue', $dest);
    q4m_do($writer, 'INSERT INTO q_incoming ( destination, message) VALUES ( ?, ? )', $dest, $blob);
    $sent{ $m->{id} } = $blob;
    $per_dest{$dest}++;
}
is(q4m_val($logger, $count, 'enqueue'), $N, "S12: $N enqueue rows");
is(q4m_val($logger, $count, 'dequeue'), 0, 'S12: no dequeue rows yet');

my (%got, @bad);
for my $i (1 .. $N) {
    my ($idx, $table) = q4m_next(dbh => $reader, timeout => 5);
    unless ($idx) {
        push @bad, "call $i: timed out";
        last;
    }
    my $row = q4m_fetch($reader, $table);
    my $m = unframe($row->{message});
    unless ($m) { push @bad, "call $i: undecodable BLOB"; next }
    push @bad, "call $i: duplicate $m->{id}" if $got{ $m->{id} }++;
    push @bad, "call $i: BLOB differs" unless ($sent{ $m->{id} } // '') eq $row->{message};
    q4m_do($logger, $log, 'dequeue', message_header($m, 'X-Mvalve-Destination'));
    if ($i == $N / 2) {
        # The logger's connection is not in owner mode while the reader is.
        is(q4m_val($logger, $count, 'dequeue'), $N / 2, 'S12 mid-way, while the reader owns a row');
    }
}
is_deeply(\@bad, [], 'every message read once, byte for byte');
is(scalar(keys %got), $N, "all $N messages read");
my ($idx) = q4m_next(dbh => $reader, timeout => 1);
is($idx, 0, 'nothing left');
is(q4m_val($logger, $count, 'enqueue'), $N, "S12: still $N enqueue rows");
is(q4m_val($logger, $count, 'dequeue'), $N, "S12: $N dequeue rows");
for my $d (sort keys %per_dest) {
    is(q4m_val($logger, 'SELECT COUNT(*) FROM q_statslog WHERE action = ? AND destination = ?', 'dequeue', $d),
        $per_dest{$d}, "dequeue rows for $d");
}
# logged_on is the server's CURRENT_TIMESTAMP (local time, whole seconds).
my $now = POSIX::strftime('%Y-%m-%d %H:%M:%S', localtime);
my $start = POSIX::strftime('%Y-%m-%d %H:%M:%S', localtime(time - 120));
my @odd = grep { $_->[0] !~ /\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\z/ || $_->[0] lt $start || $_->[0] gt $now }
    @{ rows($logger, 'SELECT logged_on FROM q_statslog') };
is_deeply(\@odd, [], "logged_on values are timestamps of the last 2 minutes (now $now)");
is(q4m_val($reader, 'select queue_end()'), 1, 'select queue_end()');
$_->disconnect for $writer, $reader, $logger;
done_testing();
