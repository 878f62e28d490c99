#!/usr/bin/env perl
# Basic queue behaviour: FIFO consumption, consume-on-next-wait, queue_end,
# a wait on a missing table, and the INSERT forms Q4M's Perl clients send.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest;

my $N = 1024;
my $dbh = connect_db();
my $other = connect_db();

fresh_table($dbh, 'q4m_t', 'v INT NOT NULL');

# A missing table is a run-time error of the function: NULL, not an SQL error.
is_deeply(rows($dbh, q{SELECT queue_wait('nonexistent_table',1)}), [[undef]],
    'queue_wait on a missing table returns NULL');
# ... and leaves non-owner mode (queue_rowid is then an init error).
is(sql_error($dbh, 'SELECT queue_rowid()')->[0], 1123,
    'not in owner mode after the failed queue_wait');

# FIFO: insert N rows, then consume them one by one.
my $ins = $dbh->prepare('INSERT INTO q4m_t (v) VALUES (?)');
$ins->execute($_) for 1 .. $N;
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t'), $N, "COUNT(*) = $N after inserting");
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), col(1 .. $N),
    'non-owner SELECT returns all rows in insertion order');

my @bad;
for my $i (1 .. $N) {
    my $w = val($dbh, q{SELECT queue_wait('q4m_t')});
    my $got = rows($dbh, 'SELECT * FROM q4m_t');
    my $rowid = val($dbh, 'SELECT queue_rowid()');
    # The previous row was consumed by this wait: only row $i is visible.
    push @bad, "step $i: queue_wait=" . ($w // 'NULL') . ' rows=['
        . join(',', map { $_->[0] } @$got) . '] rowid=' . ($rowid // 'NULL')
        unless defined $w && $w == 1 && @$got == 1 && $got->[0][0] == $i
        && defined $rowid && $rowid == $i;
    if ($i == $N / 2) {
        # Another connection sees what is left, without the owned row.
        is_deeply(rows($other, 'SELECT * FROM q4m_t'), col($i + 1 .. $N),
            'halfway: another connection sees the remaining rows');
        is(val($other, 'SELECT COUNT(*) FROM q4m_t WHERE v > 0'), $N - $i,
            'halfway: COUNT(*) WHERE excludes the owned row');
    }
}
is_deeply(\@bad, [], "consume loop returned rows 1..$N in order, one per wait")
    or diag(join("\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]));

is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end returns 1');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), [], 'table is empty after queue_end');
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t'), 0, 'COUNT(*) = 0 after queue_end');
is_deeply(rows($other, 'SELECT * FROM q4m_t'), [], 'empty for the other connection too');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end outside owner mode returns 1');

# Interleaved: insert one row, wait, see exactly that row (the previous one
# was consumed by the wait).
@bad = ();
for my $i (1 .. 128) {
    $ins->execute($i * 3);
    my $w = val($dbh, q{SELECT queue_wait('q4m_t', 5)});
    my $got = rows($dbh, 'SELECT v FROM q4m_t');
    push @bad, "step $i: queue_wait=" . ($w // 'NULL') . ' rows=['
        . join(',', map { $_->[0] } @$got) . ']'
        unless defined $w && $w == 1 && @$got == 1 && $got->[0][0] == $i * 3;
}
is_deeply(\@bad, [], 'insert/wait/select: each wait owns just the new row')
    or diag(join("\n", @bad[0 .. ($#bad < 9 ? $#bad : 9)]));
is(val($dbh, 'SELECT queue_rowid()'), $N + 128, 'rowids keep counting');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is_deeply(rows($other, 'SELECT * FROM q4m_t'), [], 'all interleaved rows consumed');

# INSERT forms.
fresh_table($dbh, 'q4m_t2', 'v INT NOT NULL, s VARCHAR(64), t TEXT');
my $n = 7;
$dbh->do('INSERT INTO q4m_t2 (v, s, t) VALUES (?, ?, ?)', undef, 1, "it's", 'a "quoted" \\ value');
$dbh->do(q{INSERT INTO q4m_t2 (v, s) VALUES ('2', '02')});      # quoted number
$dbh->do(q{INSERT INTO q4m_t2 (v, s) VALUES (3, "double")});   # double quotes
$dbh->do("INSERT INTO q4m_t2 (v, s) VALUES ($n*10, 'expr')");  # expression
$dbh->do('INSERT INTO q4m_t2 VALUES (5, NULL, NULL), (6, "six", "6"), (-7, "", "")');
$dbh->do('INSERT INTO q4m_t2 (s, v) VALUES (?, ?), (?, ?)', undef, 'x', '8', 'y', 9);
$dbh->do(q{INSERT q4m_t2 SET v = 10, s = 'set'});
is_deeply(rows($dbh, 'SELECT * FROM q4m_t2'), [
    [1, "it's", 'a "quoted" \\ value'],
    [2, '02', undef],
    [3, 'double', undef],
    [70, 'expr', undef],
    [5, undef, undef],
    [6, 'six', '6'],
    [-7, '', ''],
    [8, 'x', undef],
    [9, 'y', undef],
    [10, 'set', undef],
], 'placeholders, quoted numbers, double quotes, expressions, multi-row');
is_deeply(rows($dbh, 'SELECT s, v FROM q4m_t2 WHERE v > 5 AND s IS NOT NULL'),
    [['expr', 70], ['six', 6], ['x', 8], ['y', 9], ['set', 10]],
    'column list and WHERE keep insertion order');
is(val($dbh, q{SELECT queue_wait("q4m_t2")}), 1, 'queue_wait with double quotes');
is_deeply(rows($dbh, 'SELECT v, s FROM q4m_t2'), [[1, "it's"]], 'owns the first row');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t2'), 9, '9 rows left');

$dbh->do('DROP TABLE q4m_t');
$dbh->do('DROP TABLE q4m_t2');
done_testing();
