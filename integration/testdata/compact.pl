#!/usr/bin/env perl
# Compaction under load (Q4M's 11-conc-compact and 11-conc-compact-w-insert,
# semantics only, scaled down): CC_ROWS (20000) rows of ~1 KB, 74% deleted
# with DELETE ... LIMIT, then CONSUMERS forked consumers take rows while the
# parent inserts more and calls queue_compact every few INSERTs. In the end
# every row was deleted or consumed exactly once, consumers saw their rows
# in FIFO order with the right rowids and contents, and the table is empty.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use File::Temp qw(tempdir);
use Time::HiRes ();
use Q4MTest qw(:DEFAULT fork_child child_line child_send child_done queue_stats_of);

my $N = $ENV{CC_ROWS} || 20000;
my $EXTRA = int($N / 4);            # inserted while the consumers run
my $CONSUMERS = $ENV{CC_CONSUMERS} || 10;
my $BATCH = 50;
my $DEL = int($N * 0.74);
my $dir = tempdir(CLEANUP => 1);
my $dbh = connect_db();
my $other = connect_db();

sub payload { my ($id) = @_; substr(sprintf('%010d', $id) . ('0123456789abcdef' x 64), 0, 1000) }
sub insert_rows {
    my (@ids) = @_;
    while (my @b = splice(@ids, 0, $BATCH)) {
        $dbh->do('INSERT INTO q4m_t (id, s) VALUES '
            . join(',', map { "($_, '" . payload($_) . "')" } @b));
    }
}

fresh_table($dbh, 'q4m_t', 'id INT NOT NULL, s TEXT NOT NULL');
my $t0 = Time::HiRes::time();
insert_rows(1 .. $N);
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), $N, "$N rows of 1 KB inserted");
is($dbh->do("DELETE FROM q4m_t LIMIT $DEL"), $DEL, "DELETE FROM q4m_t LIMIT $DEL deletes $DEL rows (74%)");
is_deeply(rows($other, 'SELECT id FROM q4m_t'), col($DEL + 1 .. $N),
    'the first rows in insertion order were deleted');
my $st = queue_stats_of($other, 'q4m_t');
my $ratio = $st->{bytes_total} ? $st->{bytes_removed} / $st->{bytes_total} : 0;
ok($ratio >= 0.72 && $ratio <= 0.76,
    "queue_stats: bytes_removed ($st->{bytes_removed}) is about 74% of bytes_total ($st->{bytes_total})");
diag(sprintf 'inserted and deleted in %.2fs', elapsed_since($t0));

# ---- consumers ---------------------------------------------------------------
# Each consumer takes rows until it gets a sentinel row (id < 0); the
# parent inserts one sentinel per consumer after everything else, so a
# consumer stops only when no regular row is left for it. It writes to
# $dir/c.<i>: the ids it got, then the problems it saw.
my @kids;
for my $i (1 .. $CONSUMERS) {
    push @kids, fork_child(sub {
        my ($in, $out) = @_;
        my $c = connect_db();
        print $out "READY\n";
        <$in>;    # start barrier
        my (@ids, @bad);
        my $timeouts = 0;
        while (1) {
            my $w = val($c, q{SELECT queue_wait('q4m_t', 10)});
            if (!defined $w || $w != 1) {
                push @bad, 'queue_wait returned ' . ($w // 'NULL');
                last if !defined $w || ++$timeouts >= 3;
                next;
            }
            my $r = rows($c, 'SELECT id, s FROM q4m_t');
            my $rowid = val($c, 'SELECT queue_rowid()');
            if (@$r != 1) {
                push @bad, 'owner view has ' . scalar(@$r) . ' rows';
                next;
            }
            my ($id, $s) = @{ $r->[0] };
            push @ids, $id;
            my $want_rowid = $id > 0 ? $id : $N + $EXTRA - $id;    # sentinels last
            push @bad, "id $id: rowid $rowid, want $want_rowid" unless $rowid == $want_rowid;
            push @bad, "id $id: wrong payload" if $id > 0 && $s ne payload($id);
            last if $id < 0;
        }
        val($c, 'SELECT queue_end()');
        open(my $fh, '>', "$dir/c.$i") or die "$dir/c.$i: $!";
        print $fh join(' ', @ids), "\n", map {"$_\n"} @bad;
        close $fh or die "close: $!";
        $c->disconnect;
        print $out "DONE\n";
    }, 150);
}
my @ready = grep { (child_line($_) // '') eq 'READY' } @kids;
is(scalar(@ready), $CONSUMERS, "$CONSUMERS consumers connected");
child_send($_, 'go') for @kids;

# ---- the parent inserts more and compacts meanwhile -----------------------------
my $t1 = Time::HiRes::time();
my @extra = ($N + 1 .. $N + $EXTRA);
my ($compactions, @failed) = (0);
while (my @chunk = splice(@extra, 0, $BATCH * 10)) {
    insert_rows(@chunk);
    my $r = val($dbh, q{SELECT queue_compact('q4m_t')});
    $compactions++;
    push @failed, $r // 'NULL' unless defined $r && $r == 1;
}
is_deeply(\@failed, [], "$compactions calls of queue_compact returned 1 while consumers ran");
$dbh->do('INSERT INTO q4m_t (id, s) VALUES ' . join(',', map { "(-$_, 'stop')" } 1 .. $CONSUMERS));

my @done = grep { (child_line($_, 150) // '') eq 'DONE' } @kids;
is(scalar(@done), $CONSUMERS, 'every consumer finished');
my @status = map { child_done($_, 30) } @kids;
is_deeply(\@status, [ (0) x $CONSUMERS ], 'and exited cleanly');
diag(sprintf 'consumed in %.2fs', elapsed_since($t1));

# ---- the accounting ----------------------------------------------------------------
my (%got, @dups, @order, @problems, @sentinels);
for my $i (1 .. $CONSUMERS) {
    open(my $fh, '<', "$dir/c.$i") or do { push @problems, "consumer $i: no output"; next };
    my @lines = <$fh>;
    chomp @lines;
    my @ids = split ' ', shift(@lines) // '';
    push @problems, map {"consumer $i: $_"} @lines;
    my $prev = 0;
    for my $id (@ids) {
        if ($id < 0) { push @sentinels, $id; next }
        push @dups, $id if $got{$id}++;
        push @order, "consumer $i: $id after $prev" if $id <= $prev;
        $prev = $id;
    }
}
is_deeply(\@problems, [], 'consumers saw the right rowids and payloads, no timeouts')
    or diag(join "\n", @problems[0 .. ($#problems < 19 ? $#problems : 19)]);
is_deeply(\@dups, [], 'no row consumed twice');
is_deeply(\@order, [], "each consumer's rows in increasing order (FIFO)");
is_deeply([ sort { $a <=> $b } @sentinels ], [ map { -$_ } reverse 1 .. $CONSUMERS ],
    "the $CONSUMERS sentinels were consumed once each (a consumer stops at its first)");
my @missing = grep { !$got{$_} } $DEL + 1 .. $N + $EXTRA;
my @deleted_consumed = grep { $got{$_} } 1 .. $DEL;
is_deeply(\@missing, [], 'every row not deleted was consumed');
is_deeply(\@deleted_consumed, [], 'no deleted row was consumed');
is(scalar(keys %got) + $DEL, $N + $EXTRA, "consumed + deleted = inserted ($N + $EXTRA)");
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), 0, 'COUNT(*) = 0');
is(val($dbh, q{SELECT queue_wait('q4m_t', 0)}), 0, 'queue_wait finds nothing');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($dbh, q{SELECT queue_compact('q4m_t')}), 1, 'a last queue_compact');
$st = queue_stats_of($other, 'q4m_t');
is_deeply([ @$st{qw(rows_written rows_removed bytes_total bytes_removed)} ],
    [ $N + $EXTRA + $CONSUMERS, $N + $EXTRA + $CONSUMERS, 0, 0 ],
    'queue_stats: every row written was removed; no bytes left after compaction');

$dbh->do('DROP TABLE q4m_t');
done_testing();
