#!/usr/bin/env perl
# Owner mode versus non-owner mode seen from two connections: visibility,
# queue_abort putting the row back at the head, COUNT(*), a timed-out wait
# (owner mode without a row) and queue_rowid.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest;

my $A = connect_db();
my $B = connect_db();

fresh_table($A, 'q4m_t', 'v INT NOT NULL');
$A->do('INSERT INTO q4m_t (v) VALUES (1), (2), (3), (4), (5)');

is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A: queue_wait returns 1');
is(val($A, 'SELECT queue_rowid()'), 1, 'A: queue_rowid() = 1');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(1), 'A (owner) sees only row 1');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(2 .. 5), 'B sees rows 2..5');
is(val($A, 'SELECT COUNT(*) FROM q4m_t'), 1, 'A: COUNT(*) = 1 in owner mode');
# Q4M answers COUNT(*) without WHERE from the row count, which includes
# rows owned by other connections.
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 5, 'B: COUNT(*) counts the owned row too');
is(val($B, 'SELECT COUNT(*) FROM q4m_t WHERE v >= 0'), 4,
    'B: COUNT(*) with WHERE scans and skips the owned row');
is_deeply(rows($B, 'SELECT * FROM q4m_t WHERE v = 1'), [], 'B: the owned row cannot be selected');
is_deeply(rows($A, 'SELECT * FROM q4m_t WHERE v = 1'), col(1), 'A: WHERE on its own row');
is_deeply(rows($A, 'SELECT * FROM q4m_t WHERE v = 2'), [], 'A: other rows are invisible');

# B waits too: it gets the oldest row not owned by A.
is(val($B, q{SELECT queue_wait('q4m_t', 1)}), 1, 'B: queue_wait returns 1');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(2), 'B owns row 2');
is(val($B, 'SELECT queue_rowid()'), 2, 'B: queue_rowid() = 2');
is(val($B, 'SELECT queue_abort()'), 1, 'B: queue_abort returns 1');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(2 .. 5), 'B: back to non-owner view');

# queue_abort puts row 1 back at the head.
is(val($A, 'SELECT queue_abort()'), 1, 'A: queue_abort returns 1');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(1 .. 5), 'B sees [1..5] after the abort');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(1 .. 5), 'A sees [1..5] (non-owner again)');
is(sql_error($A, 'SELECT queue_abort()')->[0], 1123, 'a second queue_abort is an error');

# The aborted row is delivered next, with its rowid.
is(val($B, q{SELECT queue_wait('q4m_t')}), 1, 'B: queue_wait returns 1');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(1), 'B owns the aborted row 1');
is(val($B, 'SELECT queue_rowid()'), 1, 'B: its rowid is still 1');
is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A: queue_wait returns 1');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(2), 'A owns row 2');
is(val($A, q{SELECT queue_wait('q4m_t')}), 1, 'A: next queue_wait consumes 2 and returns 1');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(3), 'A owns row 3');
is(val($A, 'SELECT queue_rowid()'), 3, 'A: queue_rowid() = 3');
is(val($B, 'SELECT queue_end()'), 1, 'B: queue_end consumes row 1');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(4, 5), 'B sees [4,5]');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 3, 'B: COUNT(*) = 3 (4, 5 and the owned 3)');
is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end consumes row 3');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(4, 5), 'A sees [4,5]');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 2, 'B: COUNT(*) = 2');

# rowids are stable across consumption and keep counting for new rows.
$B->do('INSERT INTO q4m_t (v) VALUES (6)');
my @ids;
for my $want (4, 5, 6) {
    is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, "A: queue_wait for row $want");
    is_deeply(rows($A, 'SELECT * FROM q4m_t'), col($want), "A owns row $want");
    push @ids, val($A, 'SELECT queue_rowid()');
}
is_deeply(\@ids, [4, 5, 6], 'queue_rowid() = 4, 5, 6');

# A timed-out queue_wait (table now empty): owner mode without a row.
is(val($A, q{SELECT queue_wait('q4m_t', 0)}), 0, 'A: queue_wait(t, 0) on an empty table returns 0');
is(val($A, 'SELECT queue_rowid()'), undef, 'A: queue_rowid() is NULL in owner mode without a row');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'A: empty view');
$B->do('INSERT INTO q4m_t (v) VALUES (7)');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(7), 'B sees the new row 7');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'A: still an empty view after the INSERT');
is(val($A, 'SELECT COUNT(*) FROM q4m_t'), 0, 'A: COUNT(*) = 0 in owner mode without a row');
is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end returns 1');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(7), 'A: queue_end restores the normal view');
is(val($A, 'SELECT COUNT(*) FROM q4m_t'), 1, 'A: COUNT(*) = 1');
is(sql_error($A, 'SELECT queue_rowid()')->[0], 1123, 'A: queue_rowid is an error after queue_end');

# Same with a timeout of 1 second, while B owns the only row; left with
# queue_abort (legal in owner mode without a row).
is(val($B, q{SELECT queue_wait('q4m_t', 1)}), 1, 'B owns row 7');
my $t0 = Time::HiRes::time();
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 0, 'A: queue_wait(t, 1) times out: 0');
my $el = elapsed_since($t0);
ok($el >= 0.9 && $el < 5, "A: the timed-out wait took about 1 s ($el)");
$B->do('INSERT INTO q4m_t (v) VALUES (8)');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'A: empty view after a new INSERT');
is(val($A, 'SELECT queue_abort()'), 1, 'A: queue_abort after a timeout returns 1');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(8), 'A: normal view (row 7 still owned by B)');
is(val($B, 'SELECT queue_end()'), 1, 'B consumes row 7');
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'A: queue_wait gets row 8');
is(val($A, 'SELECT queue_rowid()'), 8, 'A: queue_rowid() = 8');
is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 0, 'table empty');

$A->do('DROP TABLE q4m_t');
done_testing();
