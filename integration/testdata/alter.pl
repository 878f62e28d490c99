#!/usr/bin/env perl
# ALTER TABLE ADD/DROP COLUMN while a row is owned (Q4M's 14-alter-table):
# the owner keeps seeing its row projected onto the new columns, the other
# rows are converted, rowids do not change, the owner's queue_end consumes
# its row, and conditions see the new definition.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest;

my $A = connect_db();
my $B = connect_db();

fresh_table($A, 'q4m_t', 'v1 INT, v2 INT');
$B->do('INSERT INTO q4m_t (v1, v2) VALUES (1, 1), (2, 2), (3, 3)');
is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A: queue_wait');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [[1, 1]], 'A owns [1,1]');
is(val($A, 'SELECT queue_rowid()'), 1, 'rowid 1');
# A compiled condition on v1, to check that DROP v1 invalidates it later.
is(val($B, q{SELECT queue_wait('q4m_t:v1=3', 0)}), 1, q{B: queue_wait('q4m_t:v1=3') before the ALTERs});
is_deeply(rows($B, 'SELECT * FROM q4m_t'), [[3, 3]], 'B owns [3,3]');
is(val($B, 'SELECT queue_abort()'), 1, 'B: queue_abort');

ok(defined $B->do('ALTER TABLE q4m_t ADD v3 INT'), 'B: ALTER TABLE q4m_t ADD v3 INT');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [[1, 1, undef]], 'A sees its row as [1,1,NULL]');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), [[2, 2, undef], [3, 3, undef]],
    'B sees the other rows converted');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 3, 'B: COUNT(*) = 3');
is_deeply([ map { $_->[0] } @{ rows($B, 'DESCRIBE q4m_t') } ], [qw(v1 v2 v3)], 'DESCRIBE: v1 v2 v3');
$B->do('INSERT INTO q4m_t (v1, v2, v3) VALUES (4, 4, 4)');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), [[2, 2, undef], [3, 3, undef], [4, 4, 4]],
    'B inserts a row with v3');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [[1, 1, undef]], 'A still sees only its row');

ok(defined $B->do('ALTER TABLE q4m_t DROP v1'), 'B: ALTER TABLE q4m_t DROP v1');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [[1, undef]], 'A sees its row as [1,NULL]');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), [[2, undef], [3, undef], [4, 4]], 'B sees [v2, v3] rows');
is_deeply([ map { $_->[0] } @{ rows($B, 'DESCRIBE q4m_t') } ], [qw(v2 v3)], 'DESCRIBE: v2 v3');
is(val($A, 'SELECT queue_rowid()'), 1, 'A: rowid still 1');
my $e = sql_error($A, 'SELECT v1 FROM q4m_t');
is($e && $e->[0], 1054, 'A: SELECT v1 fails with 1054 (unknown column)');

# Conditions follow the definition.
is(val($B, q{SELECT queue_wait('q4m_t:v1=3', 0)}), undef,
    q{B: queue_wait('q4m_t:v1=3') is NULL now that v1 is gone});
is(val($B, q{SELECT queue_wait('q4m_t:v3=4', 0)}), 1, q{B: queue_wait('q4m_t:v3=4') = 1});
is_deeply(rows($B, 'SELECT * FROM q4m_t'), [[4, 4]], 'B owns [4,4]');
is(val($B, 'SELECT queue_rowid()'), 4, 'rowid 4');
is(val($B, 'SELECT queue_abort()'), 1, 'B: queue_abort');

is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [[2, undef], [3, undef], [4, 4]],
    'A: its row was consumed, the others are left');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 3, 'COUNT(*) = 3');

# The rest is consumed in order with the original rowids.
my @got;
for (1 .. 3) {
    my $w = val($A, q{SELECT queue_wait('q4m_t', 1)});
    my $r = rows($A, 'SELECT * FROM q4m_t');
    push @got, [ $w, val($A, 'SELECT queue_rowid()'), @{ $r->[0] || [] } ];
}
is_deeply(\@got, [[1, 2, 2, undef], [1, 3, 3, undef], [1, 4, 4, 4]],
    'rows [2,NULL], [3,NULL], [4,4] with rowids 2, 3, 4');
is(val($A, 'SELECT queue_end()'), 1, 'queue_end');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 0, 'the table is empty');
$B->do('INSERT INTO q4m_t (v2, v3) VALUES (5, 5)');
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'a new row');
is(val($A, 'SELECT queue_rowid()'), 5, 'rowids continue at 5');
is(val($A, 'SELECT queue_end()'), 1, 'queue_end');

$A->do('DROP TABLE q4m_t');
done_testing();
