#!/usr/bin/env perl
# Priority for a waiter that is already asleep (Q4M's
# 09-pqueue-single-table-wake-listener): a connection blocked in
# queue_wait('t:prio=0', 't:prio=1', 10) receives one INSERT that brings
# (1,1), (2,0), (3,1) [id, prio]; it must return 1 with the row (2,0).
# Waiters are served in the order they started waiting.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest qw(:DEFAULT poll_until fork_child child_line child_send child_done
    queue_stats_of);

my $dbh = connect_db();

fresh_table($dbh, 'q4m_t', 'id INT NOT NULL, prio INT NOT NULL');

# start_waiter forks a child that owns the only row of its signal table
# $sig, then calls queue_wait(@conds, 10) -- whose first step consumes the
# signal row -- and reports "RESULT <ret> <id>,<prio> <rowid>". The parent
# knows the child is asleep in queue_wait once COUNT(*) of $sig reads 0.
# The child keeps its row until told to go, then ends with queue_end.
sub start_waiter {
    my ($sig, @conds) = @_;
    fresh_table($dbh, $sig, 'v INT NOT NULL');
    $dbh->do("INSERT INTO $sig (v) VALUES (1)");
    my $ch = fork_child(sub {
        my ($in, $out) = @_;
        my $c = connect_db();
        my $s = val($c, "SELECT queue_wait('$sig')");
        die "queue_wait('$sig') = " . ($s // 'NULL') . "\n" unless defined $s && $s == 1;
        my $r = val($c, 'SELECT queue_wait(' . join(', ', map { $c->quote($_) } @conds) . ', 30)');
        my $row = join ';', map { join ',', @$_ } @{ rows($c, 'SELECT id, prio FROM q4m_t') };
        my $rowid = defined $r && $r ? val($c, 'SELECT queue_rowid()') : '-';
        print $out 'RESULT ', $r // 'NULL', " $row $rowid\n";
        <$in>;
        $c->do('SELECT queue_end()');
        $c->disconnect;
    });
    ok(poll_until(30, sub { val($dbh, "SELECT COUNT(*) FROM $sig") == 0 }),
        "waiter on (@conds) is asleep in queue_wait");
    return $ch;
}

# delayed checks, through queue_stats, that the last $n rows handed out on
# q4m_t went to waiters that had gone to sleep (wait_delayed), not to an
# immediate check (wait_immediate): the scenario did test a sleeping waiter.
my %last = (wait_delayed => 0, wait_immediate => 0);
sub delayed {
    my ($n) = @_;
    my $st = queue_stats_of($dbh, 'q4m_t');
    my %d = map { $_ => $st->{$_} - $last{$_} } keys %last;
    %last = map { $_ => $st->{$_} } keys %last;
    is_deeply(\%d, { wait_delayed => $n, wait_immediate => 0 },
        "queue_stats: $n delayed hit(s), no immediate one");
}

sub finish {
    my ($ch, $sig) = @_;
    child_send($ch, 'go');
    is(child_done($ch), 0, 'the waiter exited cleanly');
    $dbh->do("DROP TABLE $sig");
}

# ---- the scenario of the Q4M test -------------------------------------------
my $w = start_waiter('q4m_sig1', 'q4m_t:prio=0', 'q4m_t:prio=1');
$dbh->do('INSERT INTO q4m_t (id, prio) VALUES (1, 1), (2, 0), (3, 1)');
is(child_line($w), 'RESULT 1 2,0 2', 'the sleeping waiter got (2,0), rowid 2, with return value 1');
delayed(1);
is_deeply(rows($dbh, 'SELECT id, prio FROM q4m_t'), [[1, 1], [3, 1]],
    'the prio-1 rows stay, in order');
finish($w, 'q4m_sig1');
is_deeply(rows($dbh, 'SELECT id, prio FROM q4m_t'), [[1, 1], [3, 1]], 'only (2,0) was consumed');
$dbh->do('DELETE FROM q4m_t');

# ---- the prio-0 row last in the batch -----------------------------------------
$w = start_waiter('q4m_sig1', 'q4m_t:prio=0', 'q4m_t:prio=1');
$dbh->do('INSERT INTO q4m_t (id, prio) VALUES (4, 1), (5, 1), (6, 1), (7, 0)');
is(child_line($w), 'RESULT 1 7,0 7', 'got (7,0), the last row of the batch');
delayed(1);
finish($w, 'q4m_sig1');
$dbh->do('DELETE FROM q4m_t');

# ---- no prio-0 row in the batch: the second condition wins --------------------
$w = start_waiter('q4m_sig1', 'q4m_t:prio=0', 'q4m_t:prio=1');
$dbh->do('INSERT INTO q4m_t (id, prio) VALUES (8, 2), (9, 1), (10, 1)');
is(child_line($w), 'RESULT 2 9,1 9', 'got (9,1) with return value 2; (8,2) matches neither');
delayed(1);
finish($w, 'q4m_sig1');
is_deeply(rows($dbh, 'SELECT id, prio FROM q4m_t'), [[8, 2], [10, 1]], '(8,2) and (10,1) are left');
$dbh->do('DELETE FROM q4m_t');

# ---- the conditions in the other order -----------------------------------------
$w = start_waiter('q4m_sig1', 'q4m_t:prio=1', 'q4m_t:prio=0');
$dbh->do('INSERT INTO q4m_t (id, prio) VALUES (11, 0), (12, 0), (13, 1)');
is(child_line($w), 'RESULT 1 13,1 13', q{waiting on ('prio=1', 'prio=0'): got (13,1), return value 1});
delayed(1);
finish($w, 'q4m_sig1');
$dbh->do('DELETE FROM q4m_t');

# ---- two sleeping waiters, served in the order they started waiting -----------
my $w1 = start_waiter('q4m_sig1', 'q4m_t:prio=0', 'q4m_t:prio=1');
my $w2 = start_waiter('q4m_sig2', 'q4m_t:prio=0', 'q4m_t:prio=1');
$dbh->do('INSERT INTO q4m_t (id, prio) VALUES (21, 1), (22, 0), (23, 1)');
is(child_line($w1), 'RESULT 1 22,0 15', 'the first waiter got (22,0)');
is(child_line($w2), 'RESULT 2 21,1 14', 'the second waiter got the oldest prio-1 row (21,1)');
delayed(2);
is_deeply(rows($dbh, 'SELECT id, prio FROM q4m_t'), [[23, 1]], '(23,1) is left');
finish($w1, 'q4m_sig1');
finish($w2, 'q4m_sig2');
is_deeply(rows($dbh, 'SELECT id, prio FROM q4m_t'), [[23, 1]], 'both owned rows were consumed');

$dbh->do('DROP TABLE q4m_t');
done_testing();
