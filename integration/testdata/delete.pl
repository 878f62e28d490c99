#!/usr/bin/env perl
# DELETE on queue tables: single rows with a full compare after each, ORDER BY
# ... LIMIT, LIMIT, and DELETE in and against owner mode.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest;

my $N = 128;
my $A = connect_db();
my $B = connect_db();

# Single-row deletes in a fixed pseudo-random order, full compare after each.
fresh_table($A, 'q4m_t', 'v INT NOT NULL');
$A->do('INSERT INTO q4m_t (v) VALUES ' . join(',', map {"($_)"} 1 .. $N));
my @left = (1 .. $N);
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(@left), "$N rows inserted");
srand(42);
my @order = map { $_->[1] } sort { $a->[0] <=> $b->[0] } map { [ rand(), $_ ] } 1 .. $N;
my @bad;
for my $v (@order[0 .. $N / 2 - 1]) {
    my $n = $A->do('DELETE FROM q4m_t WHERE v = ?', undef, $v);
    @left = grep { $_ != $v } @left;
    my $got = [ map { $_->[0] } @{ rows($A, 'SELECT * FROM q4m_t') } ];
    push @bad, "DELETE v=$v: affected=$n rows=[@$got]"
        unless $n == 1 && "@$got" eq "@left";
}
is_deeply(\@bad, [], 'each DELETE WHERE v=N removed exactly that row')
    or diag(join("\n", @bad[0 .. ($#bad < 4 ? $#bad : 4)]));
is($A->do('DELETE FROM q4m_t WHERE v = ?', undef, $order[0]), '0E0',
    'deleting a deleted value affects 0 rows');
is(val($A, 'SELECT COUNT(*) FROM q4m_t'), $N / 2, 'COUNT(*) after the deletes');
# The survivors are consumed in insertion order.
my @consumed;
while (val($A, q{SELECT queue_wait('q4m_t', 0)})) {
    push @consumed, map { $_->[0] } @{ rows($A, 'SELECT * FROM q4m_t') };
}
is_deeply(\@consumed, \@left, 'survivors consumed in insertion order');
is(val($A, 'SELECT queue_end()'), 1, 'queue_end');

# DELETE ... ORDER BY ... LIMIT 1.
fresh_table($A, 'q4m_t2', 'v INT NOT NULL, w INT NOT NULL');
$A->do('INSERT INTO q4m_t2 (v, w) VALUES (1,1), (2,3), (2,1), (2,2), (3,1)');
is($A->do('DELETE FROM q4m_t2 WHERE v = 2 ORDER BY w LIMIT 1'), 1, 'ORDER BY w LIMIT 1 affects 1 row');
is_deeply(rows($A, 'SELECT * FROM q4m_t2'), [[1, 1], [2, 3], [2, 2], [3, 1]],
    'it deleted (2,1)');
is($A->do('DELETE FROM q4m_t2 ORDER BY w DESC LIMIT 1'), 1, 'ORDER BY w DESC LIMIT 1');
is_deeply(rows($A, 'SELECT * FROM q4m_t2'), [[1, 1], [2, 2], [3, 1]], 'it deleted (2,3)');

# DELETE ... LIMIT 20 removes the first 20 rows in queue order.
fresh_table($A, 'q4m_t', 'v INT NOT NULL');
$A->do('INSERT INTO q4m_t (v) VALUES ' . join(',', map {"($_)"} 1 .. 50));
is($A->do('DELETE FROM q4m_t LIMIT 20'), 20, 'DELETE LIMIT 20 affects 20 rows');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(21 .. 50), 'rows 21..50 remain');
is($A->do('DELETE FROM q4m_t WHERE v > 40 LIMIT 5'), 5, 'DELETE WHERE ... LIMIT 5');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(21 .. 40, 46 .. 50), 'rows 41..45 deleted');
is($A->do('DELETE FROM q4m_t'), 25, 'DELETE without WHERE affects the 25 rows left');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'empty');
is(val($A, 'SELECT COUNT(*) FROM q4m_t'), 0, 'COUNT(*) = 0');

# The owner's DELETE removes only its own row.
$A->do('INSERT INTO q4m_t (v) VALUES (1), (2), (3)');
is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A owns row 1');
is($A->do('DELETE FROM q4m_t'), 1, "A: DELETE FROM q4m_t affects only its row");
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'A: empty view after deleting its row');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(2, 3), 'B sees [2,3]');
is(val($A, 'SELECT queue_abort()'), 1, 'A: queue_abort');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(2, 3), 'queue_abort did not resurrect row 1');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(2, 3), 'A sees [2,3]');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 2, 'COUNT(*) = 2');

is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A owns row 2');
is($A->do('DELETE FROM q4m_t WHERE v = 3'), '0E0', 'A: DELETE of a row it does not own affects 0 rows');
is($A->do('DELETE FROM q4m_t WHERE v = 2'), 1, 'A: DELETE WHERE v=2 affects its row');
is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(3), 'queue_end after the owner DELETE removed nothing else');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 1, 'COUNT(*) = 1');

$A->do('INSERT INTO q4m_t (v) VALUES (4)');
is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A owns row 3');
is($A->do('DELETE FROM q4m_t'), 1, 'A deletes row 3');
is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A: next queue_wait returns 1');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(4), 'A owns row 4');
is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), [], 'empty');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 0, 'COUNT(*) = 0');

# A non-owner DELETE spares a row owned by another connection.
$B->do('INSERT INTO q4m_t (v) VALUES (5), (6), (7)');
is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A owns row 5');
is($B->do('DELETE FROM q4m_t'), 2, 'B: DELETE FROM q4m_t affects the 2 unowned rows');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), [], 'B: empty view');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(5), 'A still owns row 5');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 1, 'B: COUNT(*) = 1 (the owned row)');
is(val($A, 'SELECT queue_abort()'), 1, 'A: queue_abort');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(5), 'row 5 is back');
is($B->do('DELETE FROM q4m_t WHERE v = 5'), 1, 'B deletes it');
is(val($A, q{SELECT queue_wait('q4m_t', 0)}), 0, 'nothing left to wait for');
is(val($A, 'SELECT queue_end()'), 1, 'queue_end');

$A->do('DROP TABLE q4m_t');
$A->do('DROP TABLE q4m_t2');
done_testing();
