#!/usr/bin/env perl
# Conditions on an INT column declared after a MEDIUMBLOB (Q4M's
# 04-blob-cond): rowids (1, then i+2, ...) that stay stable across
# queue_compact, BC_ROWS + BC_ROWS rows of 16 KB (default 2000 + 2000, as
# Q4M's) consumed in order with the right
# rowids, 'id>=0' versus 'id>=-1', and queue_stats: its nine lines in order
# and format, and values that add up.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use DBI qw(:sql_types);
use Q4MTest qw(:DEFAULT parse_queue_stats queue_stats_of);

my $BATCH = 20;        # rows per INSERT
my $SIZE = 16384;      # bytes per blob
# Rows per round; a multiple of 4 * $BATCH, so that the checkpoints below
# fall on INSERT boundaries. The default is kept small because each
# conditional wait costs time in proportion to the rows consumed since the
# last compaction (see the report in q4m_surface_test.go).
my $M = $ENV{BC_ROWS} || 2000;
die "BC_ROWS must be a multiple of " . 4 * $BATCH . "\n" if $M % (4 * $BATCH);
my $dbh = connect_db();
my $other = connect_db();

# blob($id) is a 16 KB binary value (every byte value, NULs and quotes
# included) that differs from one id to the next.
my $bytes = join '', map { chr } 0 .. 255;
my $pattern = $bytes x (int($SIZE / 256) + 2);
sub blob { my ($id) = @_; pack('N', $id) . substr($pattern, $id % 256, $SIZE - 4) }

my @STAT_NAMES = qw(rows_written rows_removed wait_immediate wait_delayed
    wait_timeout restored_by_abort restored_by_close bytes_total bytes_removed);
my %exp = map { $_ => 0 } @STAT_NAMES;    # the counters this script expects

# check_stats compares queue_stats('q4m_t') with %exp for the names given
# (all but the byte counts by default).
sub check_stats {
    my ($what, @names) = @_;
    @names = @STAT_NAMES[0 .. 6] unless @names;
    my $st = queue_stats_of($other, 'q4m_t');
    is_deeply({ map { $_ => $st->{$_} } @names }, { map { $_ => $exp{$_} } @names },
        "queue_stats $what");
    return $st;
}

sub wait_on {
    my ($c, $cond, $timeout) = @_;
    return val($c, 'SELECT queue_wait(' . $c->quote($cond)
        . (defined $timeout ? ", $timeout" : '') . ')');
}

fresh_table($dbh, 'q4m_t', 's MEDIUMBLOB NOT NULL, id INT NOT NULL');

# ---- queue_stats: format --------------------------------------------------
my $text = val($dbh, q{SELECT queue_stats('q4m_t')});
is($text, join('', map {"$_: 0\n"} @STAT_NAMES),
    'queue_stats of a new table: nine "name: 0\n" lines in the documented order');
is_deeply([ map { $_->[0] } @{ parse_queue_stats(val($dbh, q{SELECT queue_stats('test.q4m_t')})) } ],
    \@STAT_NAMES, q{queue_stats('test.q4m_t') (db.table) has the same lines});

# ---- one row: a condition on the INT after the BLOB ------------------------
$dbh->do(q{INSERT INTO q4m_t (s, id) VALUES ('hello', 1)});
$exp{rows_written} = 1;
is(wait_on($dbh, 'q4m_t:id=2', 0), 0, q{queue_wait('q4m_t:id=2', 0) = 0});
$exp{wait_timeout}++;
is(val($dbh, 'SELECT queue_abort()'), 1, 'queue_abort after the timeout (no row)');
is(wait_on($dbh, 'q4m_t:id=1'), 1, q{queue_wait('q4m_t:id=1') = 1});
$exp{wait_immediate}++;
is_deeply(rows($dbh, 'SELECT id, s FROM q4m_t'), [[1, 'hello']], 'owns (1, hello)');
is(val($dbh, 'SELECT queue_rowid()'), 1, 'rowid 1');
is(val($dbh, 'SELECT queue_abort()'), 1, 'queue_abort');
$exp{restored_by_abort}++;
is(wait_on($dbh, 'q4m_t:id=1'), 1, 'owns it again');
$exp{wait_immediate}++;
is(val($dbh, 'SELECT queue_rowid()'), 1, 'still rowid 1');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
$exp{rows_removed}++;
my $st = check_stats('after the first row');
my $b1 = $st->{bytes_total};
ok($b1 >= 5 + 4, "bytes_total ($b1) counts the row (5-byte blob, 4-byte row header at least)");
is($st->{bytes_removed}, $b1, 'bytes_removed = bytes_total: the only row was removed');

# insert_blobs inserts rows (blob(id), id) for @ids, $BATCH rows per INSERT,
# and returns how much each INSERT added to bytes_total.
sub insert_blobs {
    my @ids = @_;
    my @added;
    my $before = queue_stats_of($other, 'q4m_t')->{bytes_total};
    while (my @b = splice(@ids, 0, $BATCH)) {
        $dbh->do('INSERT INTO q4m_t (s, id) VALUES '
            . join(',', map { '(' . $dbh->quote(blob($_), SQL_BLOB) . ", $_)" } @b));
        $exp{rows_written} += @b;
        my $now = queue_stats_of($other, 'q4m_t')->{bytes_total};
        push @added, $now - $before;
        $before = $now;
    }
    return \@added;
}

sub sum { my $s = 0; $s += $_ for @_; $s }

# consume takes rows with $cond and checks (id, s, rowid) against @$want
# (pairs [id, rowid]); $at->($k) runs after the k-th row is owned.
sub consume {
    my ($cond, $want, $at) = @_;
    my @bad;
    for my $k (0 .. $#$want) {
        my ($id, $rowid) = @{ $want->[$k] };
        my $w = wait_on($dbh, $cond);
        $exp{rows_removed}++ if $k > 0;    # this wait consumed the previous row
        $exp{wait_immediate}++;
        my $r = rows($dbh, 'SELECT id, s FROM q4m_t');
        my $got_rowid = val($dbh, 'SELECT queue_rowid()');
        push @bad, sprintf('row %d: wait=%s id=%s rowid=%s (want id %d rowid %d)%s',
            $k, $w // 'NULL', @$r ? $r->[0][0] : '-', $got_rowid // 'NULL', $id, $rowid,
            (@$r && $r->[0][1] ne blob($id)) ? ' BLOB MISMATCH' : '')
            unless defined $w && $w == 1 && @$r == 1 && $r->[0][0] == $id
            && $r->[0][1] eq blob($id) && defined $got_rowid && $got_rowid == $rowid;
        $at->($k) if $at;
    }
    is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
    $exp{rows_removed}++;
    return \@bad;
}

# ---- $M rows of 16 KB, consumed with 'id>=0'; compaction half way ---------
# Byte counts are checked per INSERT (rows with equal columns need not take
# equally many bytes), at INSERT boundaries.
my $added = insert_blobs(0 .. $M - 1);
my @small = grep { $_ < $BATCH * ($SIZE + 4) } @$added;
is_deeply(\@small, [], "each INSERT of $BATCH 16 KB rows adds at least $BATCH x ($SIZE + 4) bytes");
$exp{bytes_total} = $b1 + sum(@$added);
$exp{bytes_removed} = $b1;
check_stats("after inserting $M rows", @STAT_NAMES);
my $half = $M / 2;

my $bad = consume('q4m_t:id>=0', [ map { [$_, $_ + 2] } 0 .. $M - 1 ], sub {
    my ($k) = @_;
    return unless $k == $half;
    # Row id $half (rowid $half + 2) is owned; rows 0 .. $half - 1 were consumed.
    $exp{bytes_removed} = $b1 + sum(@$added[0 .. $half / $BATCH - 1]);
    check_stats('half way, before queue_compact', @STAT_NAMES);
    is(val($other, q{SELECT queue_compact('q4m_t')}), 1, q{queue_compact('q4m_t') = 1 while a row is owned});
    # Compaction drops what removed rows left behind; the row counters are
    # kept in memory since the table was opened and stay as they were.
    $exp{bytes_total} -= $exp{bytes_removed};
    $exp{bytes_removed} = 0;
    check_stats('after queue_compact', @STAT_NAMES);
    is(val($dbh, 'SELECT queue_rowid()'), $half + 2, 'the owner keeps its row (rowid ' . ($half + 2) . ')');
    is_deeply(rows($dbh, 'SELECT id FROM q4m_t'), col($half), 'and sees it');
    is_deeply(rows($other, 'SELECT id FROM q4m_t'), col($half + 1 .. $M - 1),
        'the other connection sees the rows left, in order');
    is(val($other, 'SELECT COUNT(*) FROM q4m_t'), $M - $half, 'COUNT(*) = ' . ($M - $half) . ' (the owned row included)');
});
is_deeply($bad, [], "$M rows consumed in order, rowids i+2, across queue_compact")
    or diag(join "\n", @$bad[0 .. ($#$bad < 9 ? $#$bad : 9)]);
$exp{bytes_removed} = $exp{bytes_total};
check_stats("after consuming the $M rows", @STAT_NAMES);
is(val($dbh, q{SELECT queue_compact('q4m_t')}), 1, 'queue_compact of the empty table');
$exp{bytes_total} = $exp{bytes_removed} = 0;
check_stats('after compacting the empty table', @STAT_NAMES);

# ---- $M more, after two rows with negative ids ------------------------------
$dbh->do(q{INSERT INTO q4m_t (s, id) VALUES ('minus one', -1), ('minus two', -2)});
$exp{rows_written} += 2;
my $bneg = queue_stats_of($other, 'q4m_t')->{bytes_total};
ok($bneg >= 9 + 9 + 8, "bytes_total ($bneg) counts the two small rows");
$added = insert_blobs($M .. 2 * $M - 1);
$exp{bytes_total} = $bneg + sum(@$added);
check_stats("after inserting $M more", @STAT_NAMES);
my $q3 = $M * 3 / 4;
$bad = consume('q4m_t:id>=0', [ map { [$_, $_ + 4] } $M .. 2 * $M - 1 ], sub {
    my ($k) = @_;
    return unless $k == $q3;
    # ids $M .. $M + $q3 - 1 consumed, $M + $q3 (rowid $M + $q3 + 4) owned.
    $exp{bytes_removed} = sum(@$added[0 .. $q3 / $BATCH - 1]);
    check_stats('before the second queue_compact', @STAT_NAMES);
    is(val($other, q{SELECT queue_compact('test.q4m_t')}), 1, q{queue_compact('test.q4m_t') = 1});
    $exp{bytes_total} -= $exp{bytes_removed};
    $exp{bytes_removed} = 0;
    check_stats('after the second queue_compact', @STAT_NAMES);
    is(val($dbh, 'SELECT queue_rowid()'), $M + $q3 + 4, 'rowid ' . ($M + $q3 + 4) . ' kept');
});
is_deeply($bad, [], "$M more consumed with 'id>=0' (rows -1, -2 skipped), rowids i+4")
    or diag(join "\n", @$bad[0 .. ($#$bad < 9 ? $#$bad : 9)]);

is_deeply(rows($other, 'SELECT id, s FROM q4m_t'), [[-1, 'minus one'], [-2, 'minus two']],
    'the two negative rows are left');
is(wait_on($dbh, 'q4m_t:id>=0', 0), 0, q{queue_wait('q4m_t:id>=0', 0) = 0: nothing matches});
$exp{wait_timeout}++;
is(wait_on($dbh, 'q4m_t:id>=-1', 0), 1, q{queue_wait('q4m_t:id>=-1', 0) = 1});
$exp{wait_immediate}++;
is_deeply(rows($dbh, 'SELECT id FROM q4m_t'), col(-1), 'owns id -1');
is(val($dbh, 'SELECT queue_rowid()'), $M + 2, 'rowid ' . ($M + 2));
is(wait_on($dbh, 'q4m_t:id >= - 1', 0), 0, q{queue_wait('q4m_t:id >= - 1', 0) = 0: only -2 is left});
$exp{wait_timeout}++;
$exp{rows_removed}++;
is(wait_on($dbh, 'q4m_t:id>=-2', 0), 1, q{queue_wait('q4m_t:id>=-2', 0) = 1});
$exp{wait_immediate}++;
is_deeply(rows($dbh, 'SELECT id FROM q4m_t'), col(-2), 'owns id -2');
is(val($dbh, 'SELECT queue_rowid()'), $M + 3, 'rowid ' . ($M + 3));
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
$exp{rows_removed}++;
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), 0, 'the table is empty');

$exp{bytes_removed} = $exp{bytes_total};
check_stats('at the end: bytes_removed = bytes_total, every row was removed', @STAT_NAMES);
is(val($dbh, q{SELECT queue_compact('q4m_t')}), 1, 'queue_compact');
$exp{bytes_removed} = 0;
$st = check_stats('after the last compaction', @STAT_NAMES[0 .. 6], 'bytes_removed');
is($st->{bytes_total}, 0, 'bytes_total = 0');

$dbh->do('DROP TABLE q4m_t');
done_testing();
