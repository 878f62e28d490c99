#!/usr/bin/env perl
# Conditional subscriptions, queue_wait('table:expression') (Q4M's
# 02-queue-cond): matching and non-matching conditions, blocking conditional
# waits woken by another process's INSERT, a row released when its owner
# process exits, NULL columns and the AND/OR/NOT quirks of Q4M's condition
# language, and bad expressions (NULL, non-owner mode).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Time::HiRes ();
use Q4MTest qw(:DEFAULT poll_until fork_child child_line child_send child_done);

my $dbh = connect_db();
my $other = connect_db();

# wait_on runs queue_wait(cond [, timeout]) and returns its value.
sub wait_on {
    my ($c, $cond, $timeout) = @_;
    my $sql = 'SELECT queue_wait(' . $c->quote($cond)
        . (defined $timeout ? ", $timeout" : '') . ')';
    return val($c, $sql);
}

# ---- one row: v!=1 does not match, v=1 does --------------------------------
fresh_table($dbh, 'q4m_t', 'v INT NOT NULL');
$dbh->do('INSERT INTO q4m_t (v) VALUES (1)');
is(wait_on($dbh, 'q4m_t:v!=1', 0), 0, q{queue_wait('q4m_t:v!=1', 0) = 0 on the row v=1});
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), [], 'owner mode without a row: nothing visible');
is(val($dbh, 'SELECT queue_rowid()'), undef, 'queue_rowid() is NULL after the timeout');
my $t0 = Time::HiRes::time();
is(wait_on($dbh, 'q4m_t:v!=1', 1), 0, q{queue_wait('q4m_t:v!=1', 1) = 0});
my $el = elapsed_since($t0);
ok($el >= 0.9, "the non-matching wait blocked for its timeout (${el}s)");
is_deeply(rows($other, 'SELECT * FROM q4m_t'), col(1), 'the row is still there, unowned');
is(wait_on($dbh, 'q4m_t:v=1'), 1, q{queue_wait('q4m_t:v=1') = 1});
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), col(1), 'owns the row v=1');
is(val($dbh, 'SELECT queue_rowid()'), 1, 'its rowid is 1');
is_deeply(rows($other, 'SELECT * FROM q4m_t'), [], 'invisible to the other connection');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), 0, 'consumed');

# ---- FIFO among matching rows; non-matching rows are skipped, not lost -----
$dbh->do('INSERT INTO q4m_t (v) VALUES (5), (2), (7), (3), (8), (1)');
is(wait_on($dbh, 'q4m_t:v>2', 0), 1, q{queue_wait('q4m_t:v>2')});
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(5), 'the oldest matching row (5)');
is(wait_on($dbh, 'q4m_t:v>2', 0), 1, 'again');
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(7), 'next matching row (7), 2 skipped');
is(wait_on($dbh, 'q4m_t:v<3', 0), 1, q{queue_wait('q4m_t:v<3')});
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(2), 'the skipped row 2 is still delivered first');
is(val($dbh, 'SELECT queue_rowid()'), 3, 'its rowid (3) is its insertion position');
is(wait_on($dbh, 'q4m_t:v>2', 0), 1, q{queue_wait('q4m_t:v>2') once more});
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(3), 'row 3');
is(wait_on($dbh, 'q4m_t'), 1, 'an unconditional wait');
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(8), 'takes the oldest remaining row (8)');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is_deeply(rows($other, 'SELECT v FROM q4m_t'), col(1), 'only 1 is left');
$dbh->do('DELETE FROM q4m_t');

# ---- a blocked conditional wait woken by another process's INSERT ---------
# The parent owns the only row of q4m_sig; its queue_wait on q4m_t consumes
# that row before blocking, so the child knows the parent is asleep once
# COUNT(*) of q4m_sig reads 0. The child then inserts a non-matching row,
# then a matching one.
fresh_table($dbh, 'q4m_sig', 'v INT NOT NULL');
$dbh->do('INSERT INTO q4m_sig (v) VALUES (1)');
is(wait_on($dbh, 'q4m_sig'), 1, 'parent owns the signal row');
my $ch = fork_child(sub {
    my ($in, $out) = @_;
    my $c = connect_db();
    my $zero = poll_until(30, sub { val($c, 'SELECT COUNT(*) FROM q4m_sig') == 0 });
    die "the parent never started waiting\n" unless $zero;
    $c->do('INSERT INTO q4m_t (v) VALUES (3)');
    # The non-matching row stays with nobody: it is visible to us.
    my $seen = join ',', map { $_->[0] } @{ rows($c, 'SELECT v FROM q4m_t') };
    $c->do('INSERT INTO q4m_t (v) VALUES (7)');
    print $out "INSERTED $seen\n";
    $c->disconnect;
});
$t0 = Time::HiRes::time();
my $w = wait_on($dbh, 'q4m_t:v=7', 30);
$el = elapsed_since($t0);
is($w, 1, "queue_wait('q4m_t:v=7', 30) woken by the child's INSERT returns 1 (after ${el}s)");
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(7), 'with the v=7 row');
is(val($dbh, 'SELECT queue_rowid()'), 9, 'rowid 9 (the 9th row of the table)');
is(child_line($ch), 'INSERTED 3', 'the child saw its non-matching row unowned');
is(child_done($ch), 0, 'child exited cleanly');
is(val($other, 'SELECT COUNT(*) FROM q4m_sig'), 0, 'the signal row was consumed by the wait');
is_deeply(rows($other, 'SELECT v FROM q4m_t'), col(3), 'the non-matching row is left for others');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');

# The other direction: the child waits, the parent inserts.
$dbh->do('INSERT INTO q4m_sig (v) VALUES (2)');
$ch = fork_child(sub {
    my ($in, $out) = @_;
    my $c = connect_db();
    my $s = wait_on($c, 'q4m_sig');
    die 'queue_wait(q4m_sig) = ' . ($s // 'NULL') . "\n" unless defined $s && $s == 1;
    my $r = wait_on($c, 'q4m_t:v>=100 and v<200', 30);
    my $got = join ',', map { $_->[0] } @{ rows($c, 'SELECT v FROM q4m_t') };
    print $out 'GOT ', $r // 'NULL', " [$got]\n";
    <$in>;    # hold the row until the parent has looked
    $c->do('SELECT queue_end()');
    $c->disconnect;
});
ok(poll_until(30, sub { val($other, 'SELECT COUNT(*) FROM q4m_sig') == 0 }),
    'the child is inside its conditional wait');
$dbh->do('INSERT INTO q4m_t (v) VALUES (99), (200), (150), (101)');
is(child_line($ch), 'GOT 1 [150]', 'the child woke with the first matching row (150)');
is_deeply(rows($other, 'SELECT v FROM q4m_t'), col(3, 99, 200, 101),
    'the others stay, in order, while the child owns 150');
child_send($ch, 'end');
is(child_done($ch), 0, 'child exited cleanly');
is_deeply(rows($other, 'SELECT v FROM q4m_t'), col(3, 99, 200, 101), 'the child consumed 150');
$dbh->do('DELETE FROM q4m_t');

# ---- a child process that exits while owning a row releases it -----------
$dbh->do('INSERT INTO q4m_t (v) VALUES (1), (9), (2)');
$ch = fork_child(sub {
    my ($in, $out) = @_;
    my $c = connect_db();
    my $r = wait_on($c, 'q4m_t:v=9', 5);
    my $rowid = val($c, 'SELECT queue_rowid()');
    print $out 'OWNED ', $r // 'NULL', ' ', $rowid // 'NULL', "\n";
    <$in>;
    # Exit without queue_end, queue_abort or disconnect: the kernel closes
    # the socket (POSIX::_exit in fork_child).
});
is(child_line($ch), 'OWNED 1 15', q{the child owns v=9 (rowid 15) after queue_wait('q4m_t:v=9')});
is_deeply(rows($other, 'SELECT v FROM q4m_t'), col(1, 2), 'v=9 is invisible while owned');
child_send($ch, 'exit');
is(child_done($ch), 0, 'the child exited');
ok(poll_until(30, sub { @{ rows($other, 'SELECT v FROM q4m_t') } == 3 }),
    'the row of the exited child comes back');
is_deeply(rows($other, 'SELECT v FROM q4m_t'), col(1, 9, 2), 'at its original place');
is(wait_on($dbh, 'q4m_t:v=9', 1), 1, q{queue_wait('q4m_t:v=9') gets it});
is(val($dbh, 'SELECT queue_rowid()'), 15, 'same rowid (15)');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
$dbh->do('DROP TABLE q4m_t');

# ---- NULL columns, AND/OR/NOT quirks, lexical rules -------------------------
# One row a=3, b=NULL, Up=7, v1=10, v=20, neg=-8, plus a string and a float
# column. A probe returns 1 (the row matches), 0 (evaluated, no match: the
# expression is 0 or NULL) or undef (the expression does not compile).
fresh_table($dbh, 'q4m_t2',
    'a INT, b INT, Up INT, v1 INT, v INT, neg INT, s VARCHAR(16), f FLOAT');
$dbh->do(q{INSERT INTO q4m_t2 VALUES (3, NULL, 7, 10, 20, -8, 'x', 1.5)});

sub probe {
    my ($expr) = @_;
    my $r = wait_on($dbh, "q4m_t2:$expr", 0);
    $dbh->do('SELECT queue_abort()') if defined $r;    # owner mode: give it back
    return $r;
}

my @cases = (
    # [expression, expected]: 1 match, 0 no match, undef compile error
    ['a=3', 1], ['a!=3', 0], ['a<=3', 1], ['a<3', 0], ['a>=3', 1], ['a>3', 0],
    ['a=3and v=20', 1], ['a=3 && v=20', 1], ['a=3 AND v=20', 1],
    ['a=4 or v=20', 1], ['a=4 || v=21', 0], ['a=3ora=4', 1],
    ['a=3 xor v=20', 0], ['a=3 XOR v=21', 1],
    ['NOT a=3', 0], ['not a=4', 1], ['nota=3', 0],
    # NULL: comparisons are NULL (no match); OR is three-valued; AND is NULL
    # only when both sides are, so NULL AND 1 is 0 and NOT (b AND 1) is 1.
    ['b = 1', 0], ['b != 1', 0], ['b + 1 = 1', 0],
    ['b or 1', 1], ['b or 0', 0], ['not (b or 0)', 0],
    ['b and 1', 0], ['not (b and 1)', 1], ['not (b and b)', 0], ['b and 0', 0],
    ['b is null', 1], ['b isnull', 1], ['a isnull', 0], ['b is not null', 0],
    ['b is not false', 1], ['b is false', 0], ['b is true', 0], ['b is not true', 1],
    ['a is true', 1], ['a is not false', 1],
    # arithmetic
    ['v div 3', 1], ['v div 3 = 6', 1], ['v % 0', 0], ['v % 0 is null', 1],
    ['neg div 3 = -2', 1], ['neg % 3 = -2', 1], ['neg mod -3 = -2', 1],
    ['neg >> 1 = -4', 1], ['1<<2+1 = 8', 1], ['2^3*2 = 2', 1],
    ['pow(2,3) = 8', 1], ['pow(2,-1) = 0', 1], ['-a = -3', 1], ['~0 = -1', 1],
    ['a < v < 2', 1], ['010 = 8', 1], ['08 = 8', 1], ['0x1F = 31', 1], ['007 = 7', 1],
    # names: bare names only for lower-case columns; backquotes match a prefix
    ['`up`=7', 1], ['`UP`=7', 1], ['`v`=20', 0], ['`v`=10', 1], ['v1 = 10', 1],
    ['  a=3', 1],
    # compile errors
    ['a==3', undef], ['a<>3', undef], ['!a', undef], ['not not a=3', undef],
    ['v DIV 3', undef], ['v MOD 3', undef], ['POW(2,1)', undef], ['pow (2,1)', undef],
    ['0X1F', undef], ['1.5', undef], [q{a='x'}, undef], ['a = true', undef],
    ['a=3 ', undef], ['', undef], ['Up=7', undef], ['vx=1', undef],
    ['zzz=1', undef], ['`zzz`=1', undef], ['s=1', undef], ['s is null', undef],
    ['f=1', undef], ['a in (3)', undef], ['a between 1 and 5', undef],
    ['a < = 3', undef], ['9223372036854775808 > 0', undef],
);
my @bad;
for my $c (@cases) {
    my ($expr, $want) = @$c;
    my $got = probe($expr);
    push @bad, sprintf("'q4m_t2:%s': got %s, want %s", $expr, $got // 'NULL', $want // 'NULL')
        unless (defined $got ? $got : 'NULL') eq (defined $want ? $want : 'NULL');
}
is_deeply(\@bad, [], scalar(@cases) . ' conditions give the documented results')
    or diag(join "\n", @bad);

# NULL columns across several rows: NULL never matches a comparison, and
# the rows skipped stay for the conditions that do match them.
fresh_table($dbh, 'q4m_t3', 'id INT NOT NULL, b INT');
$dbh->do('INSERT INTO q4m_t3 (id, b) VALUES (1, NULL), (2, 5), (3, NULL), (4, -7), (5, 0)');
my @took;
for my $cond ('b>1', 'b<1', 'b<1', 'b is null', 'not (b and 1)', 'b is null') {
    my $w = wait_on($dbh, "q4m_t3:$cond", 0);
    my $r = rows($dbh, 'SELECT id FROM q4m_t3');
    push @took, ($w // 'NULL') . ':' . join(',', map { $_->[0] } @$r);
}
is_deeply(\@took, ['1:2', '1:4', '1:5', '1:1', '1:3', '0:'],
    q{b>1 -> 2; b<1 -> 4, 5; b is null -> 1; not (b and 1) -> 3 (NULL AND 1 is 0); then nothing});
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($other, 'SELECT COUNT(*) FROM q4m_t3'), 0, 'all five consumed');
$dbh->do('DROP TABLE q4m_t3');

# A NULL result leaves non-owner mode.
is(wait_on($dbh, 'q4m_t2:v==1'), undef, q{queue_wait('q4m_t2:v==1') is NULL});
my $e = sql_error($dbh, 'SELECT queue_rowid()');
is($e && $e->[0], 1123, 'not in owner mode after it (queue_rowid: 1123)');
$t0 = Time::HiRes::time();
is(wait_on($dbh, 'q4m_t2:zzz=1', 60), undef, 'unknown column: NULL');
$el = elapsed_since($t0);
ok($el < 30, "at once, not after the 60 s timeout (${el}s)");
is(wait_on($dbh, 'q4m_t2:s=1', 5), undef, 'string column: NULL');
is(wait_on($dbh, 'nonexistent_q:a=1', 0), undef, 'missing table with a condition: NULL');

# Several table_conds: a bad one fails the call when it is reached; after
# the first hit the rest are not even compiled.
is(val($dbh, q{SELECT queue_wait('q4m_t2:zzz=1', 'q4m_t2:a=3', 0)}), undef,
    'a bad first condition fails the call although the second matches');
is(val($dbh, q{SELECT queue_wait('q4m_t2:a=4', 'q4m_t2:zzz=1', 0)}), undef,
    'a bad second condition is reached when the first has no row: NULL');
is(val($dbh, q{SELECT queue_wait('q4m_t2:a=3', 'q4m_t2:zzz=1', 0)}), 1,
    'a bad condition after the first hit goes unnoticed');
is(val($dbh, 'SELECT queue_rowid()'), 1, 'owns rowid 1');
# A failing wait consumes the row owned before it, like any queue_wait.
is(wait_on($dbh, 'q4m_t2:a===3', 0), undef, 'a bad condition while owning the row: NULL');
is(val($other, 'SELECT COUNT(*) FROM q4m_t2'), 0, 'the owned row was consumed first');

$dbh->do('DROP TABLE q4m_t2');
$dbh->do('DROP TABLE q4m_sig');
done_testing();
