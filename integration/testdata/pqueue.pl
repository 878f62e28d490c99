#!/usr/bin/env perl
# A priority queue in one table (Q4M's 09-pqueue-single-table): rows with
# prio 0 and 1 mixed, drained with queue_wait('t:prio=0', 't:prio=1', 1).
# Every prio-0 row present comes before any prio-1 row, each priority is
# strict FIFO (by an increasing id), nothing is lost or duplicated; rows
# inserted half way through (by another connection) take their place.
# PQ_ROWS rows (default 20000; Q4M's test has 20480).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Time::HiRes ();
use Q4MTest;

my $N = $ENV{PQ_ROWS} || 20000;
my $BATCH = 100;
my $N1 = int($N * 3 / 4);    # inserted before draining; the rest half way
my $dbh = connect_db();
my $other = connect_db();

# A deterministic pseudo-random priority (about a third are prio 0) and a
# ~200-byte payload for each id.
my $x = 12345;
my %prio;
for my $id (1 .. $N) {
    $x = ($x * 1103515245 + 12345) % 2147483648;
    $prio{$id} = (($x >> 16) % 3 == 0) ? 0 : 1;
}
sub payload { my ($id) = @_; sprintf('%08d:', $id) . ('abcdefghijklmnopqrstuvwxyz' x 8) }

fresh_table($dbh, 'q4m_t', 'id INT NOT NULL, prio TINYINT NOT NULL, s VARCHAR(255) NOT NULL');

my @left = ([], []);    # ids not consumed yet, per priority, in order
sub insert_rows {
    my ($c, @ids) = @_;
    while (my @b = splice(@ids, 0, $BATCH)) {
        $c->do('INSERT INTO q4m_t (id, prio, s) VALUES '
            . join(',', map { "($_, $prio{$_}, '" . payload($_) . "')" } @b));
        push @{ $left[ $prio{$_} ] }, $_ for @b;
    }
}

my $t0 = Time::HiRes::time();
insert_rows($dbh, 1 .. $N1);
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), $N1, "$N1 rows inserted");
my $p0 = grep { $prio{$_} == 0 } 1 .. $N1;
is(val($other, 'SELECT COUNT(*) FROM q4m_t WHERE prio = 0'), $p0, "$p0 of them prio 0");
diag(sprintf 'inserted %d rows in %.2fs', $N1, elapsed_since($t0));
die "PQ_ROWS=$N is too small: the first prio-1 row must come before the second INSERTs\n"
    unless $p0 < int($N1 / 2);

my (@seq, @bad);
my $half = int($N1 / 2);
my $t1 = Time::HiRes::time();
for my $k (1 .. $N) {
    my $w = val($dbh, q{SELECT queue_wait('q4m_t:prio=0', 'q4m_t:prio=1', 1)});
    my $r = rows($dbh, 'SELECT id, prio, s FROM q4m_t');
    my $want = @{ $left[0] } ? shift @{ $left[0] } : shift @{ $left[1] };
    my ($id, $p, $s) = @$r == 1 ? @{ $r->[0] } : ('-', '-', '');
    push @seq, [$id, $p];
    push @bad, sprintf('wait %d: queue_wait=%s row=%s prio=%s (want id %s, prio %s)%s',
        $k, $w // 'NULL', $id, $p, $want // '-', defined $want ? $prio{$want} : '-',
        (@$r == 1 && $s ne payload($id)) ? ' PAYLOAD MISMATCH' : '')
        unless defined $w && defined $want && @$r == 1 && $id == $want
        && $p == $prio{$want} && $w == $p + 1 && $s eq payload($id);
    last if @bad > 20;
    if ($k == $half) {
        # Half way through the first rows: another connection adds the rest
        # (both priorities). The model in @left learns about them too.
        insert_rows($other, $N1 + 1 .. $N);
    }
}
my $el = elapsed_since($t1);
diag(sprintf 'drained %d rows in %.2fs', scalar(@seq), $el);
is_deeply(\@bad, [], "$N waits returned the oldest prio-0 row while there was one, else the oldest prio-1 row")
    or diag(join "\n", @bad);
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');

# The same properties, stated on the sequence received.
my (%seen, @dups, @order);
my @last = (0, 0);
my $p1_seen = 0;
for my $i (0 .. $#seq) {
    my ($id, $p) = @{ $seq[$i] };
    push @dups, $id if $seen{$id}++;
    push @order, "id $id (prio $p) after id $last[$p]" if $p =~ /^\d$/ && $id <= $last[$p];
    $last[$p] = $id if $p =~ /^\d$/;
    if ($i < $half) {    # before the second INSERTs: prio 0 first, all of it
        $p1_seen ||= $p eq '1';
        push @order, "prio-0 id $id after a prio-1 row" if $p eq '0' && $p1_seen;
    }
}
is_deeply(\@dups, [], 'no row delivered twice');
is_deeply([ grep { !$seen{$_} } 1 .. $N ], [], 'no row lost');
is_deeply(\@order, [], 'each priority in strict FIFO; prio 0 before prio 1') or diag(join "\n", @order[0 .. ($#order < 9 ? $#order : 9)]);
my $first_p1 = (grep { $seq[$_][1] eq '1' } 0 .. $#seq)[0];
is($first_p1, $p0, "the first prio-1 row came right after the $p0 prio-0 rows of the first INSERTs");
is(val($dbh, q{SELECT queue_wait('q4m_t:prio=0', 'q4m_t:prio=1', 0)}), 0, 'nothing left: 0');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), 0, 'COUNT(*) = 0');

$dbh->do('DROP TABLE q4m_t');
done_testing();
