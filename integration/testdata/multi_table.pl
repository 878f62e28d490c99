#!/usr/bin/env perl
# Prioritised waits on two tables: queue_wait('q4m_t','q4m_t2',timeout).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use POSIX ();
use Q4MTest;

my $dbh = connect_db();
my $other = connect_db();
fresh_table($dbh, 'q4m_t', 'v INT NOT NULL');
fresh_table($dbh, 'q4m_t2', 'v INT NOT NULL');
my $WAIT = q{SELECT queue_wait('q4m_t', 'q4m_t2', ?)};

is(val($dbh, $WAIT, 0), 0, 'both tables empty: 0');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');

# Only the second table has a row.
$other->do('INSERT INTO q4m_t2 (v) VALUES (20)');
is(val($dbh, $WAIT, 1), 2, 'only q4m_t2 has a row: returns 2');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t2'), col(20), 'owner sees its row in q4m_t2');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), [], 'q4m_t appears empty in owner mode');
$other->do('INSERT INTO q4m_t (v) VALUES (10)');
is_deeply(rows($other, 'SELECT * FROM q4m_t'), col(10), 'the other connection sees the new row');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), [], 'q4m_t still empty for the owner');
is(val($dbh, $WAIT, 1), 1, 'q4m_t has a row: returns 1');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), col(10), 'owner sees its row in q4m_t');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t2'), [], 'q4m_t2 appears empty in owner mode');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is_deeply(rows($other, 'SELECT * FROM q4m_t'), [], 'q4m_t consumed');
is_deeply(rows($other, 'SELECT * FROM q4m_t2'), [], 'q4m_t2 consumed by the second wait');

# Both tables have rows: argument order decides.
$other->do('INSERT INTO q4m_t2 (v) VALUES (21), (22)');
$other->do('INSERT INTO q4m_t (v) VALUES (11), (12)');
my @got;
for (1 .. 4) {
    my $w = val($dbh, $WAIT, 1);
    my $table = defined $w && $w == 2 ? 'q4m_t2' : 'q4m_t';
    push @got, [ $w, map { $_->[0] } @{ rows($dbh, "SELECT * FROM $table") } ];
}
is_deeply(\@got, [[1, 11], [1, 12], [2, 21], [2, 22]],
    'q4m_t is drained before q4m_t2 although q4m_t2 got rows first');
is(val($dbh, $WAIT, 0), 0, 'all consumed: timeout 0 returns 0');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');

# Reversed argument order.
$other->do('INSERT INTO q4m_t (v) VALUES (13)');
$other->do('INSERT INTO q4m_t2 (v) VALUES (23)');
is(val($dbh, q{SELECT queue_wait('q4m_t2', 'q4m_t', 1)}), 1, 'reversed: q4m_t2 first, returns 1');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t2'), col(23), 'owns 23 of q4m_t2');
is(val($dbh, q{SELECT queue_wait('q4m_t2', 'q4m_t', 1)}), 2, 'reversed: then q4m_t, returns 2');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), col(13), 'owns 13 of q4m_t');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');

# Two arguments without a timeout: the second one IS the timeout (0).
$other->do('INSERT INTO q4m_t2 (v) VALUES (24)');
is(val($dbh, q{SELECT queue_wait('q4m_t', 'q4m_t2')}), 0,
    q{queue_wait('q4m_t','q4m_t2') waits on q4m_t only, with timeout 0});
is_deeply(rows($dbh, 'SELECT * FROM q4m_t2'), [], 'owner mode without a row');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t2'), col(24), 'row 24 untouched');
is(val($dbh, q{SELECT queue_wait('q4m_t2', '1')}), 1, q{quoted timeout '1'});
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end consumes 24');

# A blocked waiter is woken by a row in the second table. The child inserts
# after a short delay so that the parent is (most likely) already waiting;
# the assertions hold either way.
for my $case ([ 'q4m_t2', 2, 30 ], [ 'q4m_t', 1, 31 ]) {
    my ($table, $want, $v) = @$case;
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        alarm 60;
        my $ok = eval {
            my $c = connect_db();
            select(undef, undef, undef, 0.2);    # delay of the INSERT only
            $c->do("INSERT INTO $table (v) VALUES ($v)");
            $c->disconnect;
            1;
        };
        print STDERR "child: $@" unless $ok;
        POSIX::_exit($ok ? 0 : 1);
    }
    my $t0 = Time::HiRes::time();
    my $w = val($dbh, $WAIT, 60);
    my $el = elapsed_since($t0);
    is($w, $want, "blocked waiter woken by an INSERT into $table returns $want");
    is_deeply(rows($dbh, "SELECT * FROM $table"), col($v), "it owns row $v");
    ok($el < 30, "woken long before the 60 s timeout (${el}s)");
    is(waitpid($pid, 0), $pid, 'child reaped');
    is($?, 0, 'child inserted without error');
    is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
}
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), 0, 'q4m_t empty');
is(val($other, 'SELECT COUNT(*) FROM q4m_t2'), 0, 'q4m_t2 empty');

# A missing table listed after a table with data goes unnoticed; listed
# first it makes queue_wait return NULL.
$other->do('INSERT INTO q4m_t (v) VALUES (40)');
is(val($dbh, q{SELECT queue_wait('q4m_t', 'no_such_table', 1)}), 1,
    'missing table after a hit is never looked up');
is(val($dbh, q{SELECT queue_wait('no_such_table', 'q4m_t', 1)}), undef,
    'missing table first: NULL');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), [], 'row 40 was consumed by that call');
is(sql_error($dbh, 'SELECT queue_rowid()')->[0], 1123, 'non-owner mode after the NULL');

$dbh->do('DROP TABLE q4m_t');
$dbh->do('DROP TABLE q4m_t2');
done_testing();
