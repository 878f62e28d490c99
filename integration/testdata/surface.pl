#!/usr/bin/env perl
# What clients read about the engine: information_schema.plugins, SHOW ENGINE
# QUEUE STATUS (parsed as Perl's Queue::Q4M::Status parses it, and its
# counters moving as operations happen), SHOW TABLE STATUS in and out of
# owner mode, SHOW ENGINES, SHOW VARIABLES LIKE 'queue%', and the argument
# checks of queue_stats and queue_compact.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest qw(:DEFAULT parse_engine_status engine_status table_status);

my $dbh = connect_db();
my $other = connect_db();

# ---- information_schema.plugins ------------------------------------------------
is(val($dbh, q{SELECT PLUGIN_VERSION FROM information_schema.plugins WHERE plugin_name='QUEUE'}),
    '0.9', q{PLUGIN_VERSION of QUEUE is '0.9'});
is_deeply(rows($dbh, q{SELECT PLUGIN_NAME, PLUGIN_STATUS, PLUGIN_TYPE, PLUGIN_AUTHOR, PLUGIN_DESCRIPTION
    FROM information_schema.PLUGINS WHERE PLUGIN_NAME = 'QUEUE'}),
    [['QUEUE', 'ACTIVE', 'STORAGE ENGINE', 'Kazuho Oku at Cybozu Labs, Inc.', 'Queue storage engine for MySQL']],
    'name, status, type, author and description');

# ---- SHOW ENGINE QUEUE STATUS: shape --------------------------------------------
my @SECTIONS = (
    ['I/O calls', qw(sys_read sys_write sys_sync read_cachehit)],
    ['Writer thread', qw(append remove)],
    ['Conditional subscription', qw(evaluation compile compile_cachehit)],
    ['High-level stats', qw(rows_written rows_removed queue_wait queue_end queue_abort
        queue_rowid queue_set_srcid)],
);
my @COUNTERS = map { @$_[1 .. $#$_] } @SECTIONS;

my $sth = $dbh->prepare('SHOW ENGINE QUEUE STATUS');
$sth->execute;
is_deeply($sth->{NAME}, [qw(Type Name Status)], 'columns Type, Name, Status');
my $all = $sth->fetchall_arrayref;
is(scalar(@$all), 1, 'one row');
is($all->[0][0], 'QUEUE', q{Type 'QUEUE'});
is($all->[0][1], '', q{Name ''});
my $text = $all->[0][2];
my ($c0, $names) = parse_engine_status($text);
is_deeply($names, \@COUNTERS, 'the 16 counters, in order, match /^([\w_]+)\s+(\d+)$/');
# The exact layout: "\n<title>\n" + 36 dashes + "\n" per section, then one
# "%-16s %20llu\n" line per counter.
my $want = join '', map {
    my ($title, @n) = @$_;
    "\n$title\n" . ('-' x 36) . "\n" . join('', map { sprintf "%-16s %20s\n", $_, $c0->{$_} } @n)
} @SECTIONS;
is($text, $want, 'the Status text has exactly the documented layout');
is($c0->{read_cachehit}, 0, 'read_cachehit is 0');

# ---- counters move with the operations --------------------------------------
# Nothing else talks to this server, so the deltas are exact.
my $before;
sub snap { ($before) = engine_status($other) }
sub delta {
    my ($what, %want) = @_;
    my ($now) = engine_status($other);
    my %d = map { $_ => $now->{$_} - $before->{$_} } @COUNTERS;
    my %got = map { $_ => $d{$_} } keys %want;
    is_deeply(\%got, \%want, $what) or diag(explain(\%d));
    $before = $now;
    return \%d;
}

fresh_table($dbh, 'q4m_t', 'v INT NOT NULL');
fresh_table($dbh, 'q4m_t2', 'v INT NOT NULL');
snap();
$dbh->do('INSERT INTO q4m_t (v) VALUES (1), (2), (3)');
my $d = delta('a three-row INSERT: rows_written +3, one append batch',
    rows_written => 3, append => 1, remove => 0, rows_removed => 0, queue_wait => 0);
ok($d->{sys_write} >= 1 && $d->{sys_sync} >= 1,
    "and it was written and synced (sys_write +$d->{sys_write}, sys_sync +$d->{sys_sync})");
is(val($dbh, q{SELECT queue_wait('q4m_t')}), 1, 'queue_wait');
delta('queue_wait without an owned row: queue_wait +1, nothing removed',
    queue_wait => 1, rows_removed => 0, remove => 0);
is(val($dbh, 'SELECT queue_rowid()'), 1, 'queue_rowid');
is(val($dbh, 'SELECT queue_rowid()'), 1, 'queue_rowid');
delta('queue_rowid +2', queue_rowid => 2, queue_wait => 0);
is(val($dbh, 'SELECT queue_abort()'), 1, 'queue_abort');
delta('queue_abort +1', queue_abort => 1, rows_removed => 0);
is(val($dbh, q{SELECT queue_wait('q4m_t')}), 1, 'queue_wait');
is(val($dbh, q{SELECT queue_wait('q4m_t')}), 1, 'queue_wait (consumes the first row)');
$d = delta('two queue_waits, one of which consumed a row',
    queue_wait => 2, rows_removed => 1, remove => 1);
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end (consumes)');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end (outside owner mode)');
delta('queue_end +2 (calls), one row removed', queue_end => 2, rows_removed => 1, remove => 1);
is(val($dbh, q{SELECT queue_set_srcid(1, 'a', 5)}), 1, 'queue_set_srcid');
delta('queue_set_srcid +1', queue_set_srcid => 1);
$dbh->do('INSERT INTO q4m_t (v) VALUES (4)');
$dbh->do('INSERT INTO q4m_t (v) VALUES (5), (6)');
delta('two INSERTs: rows_written +3, append +2', rows_written => 3, append => 2);
is($dbh->do('DELETE FROM q4m_t WHERE v < 6'), 3, 'DELETE of three rows');
delta('DELETE: rows_removed +3', rows_removed => 3, rows_written => 0);

# Conditional subscriptions: the first use of an expression compiles it, a
# later use of the same string on the same table finds it compiled.
is(val($dbh, q{SELECT queue_wait('q4m_t:v=6', 0)}), 1, q{queue_wait('q4m_t:v=6', 0)});
$d = delta('a new expression is compiled', compile => 1, compile_cachehit => 0, queue_wait => 1);
ok($d->{evaluation} >= 1, "and evaluated (evaluation +$d->{evaluation})");
is(val($dbh, 'SELECT queue_abort()'), 1, 'queue_abort');
snap();
is(val($dbh, q{SELECT queue_wait('q4m_t:v=6', 0)}), 1, q{queue_wait('q4m_t:v=6', 0) again});
delta('the same expression: a compile cache hit', compile => 0, compile_cachehit => 1, queue_wait => 1);
is(val($dbh, 'SELECT queue_abort()'), 1, 'queue_abort');
snap();
is(val($dbh, q{SELECT queue_wait('q4m_t:v=7', 'q4m_t:v=6', 0)}), 2,
    q{queue_wait('q4m_t:v=7', 'q4m_t:v=6', 0) = 2});
delta('one new expression and one cached', compile => 1, compile_cachehit => 1, queue_wait => 1);
is(val($dbh, 'SELECT queue_abort()'), 1, 'queue_abort');
snap();
is(val($dbh, q{SELECT queue_wait('q4m_t:v=6', 'q4m_t:v=8', 0)}), 1,
    q{queue_wait('q4m_t:v=6', 'q4m_t:v=8', 0) = 1});
delta('the expression after the hit is not compiled at all', compile => 0, compile_cachehit => 1);
is(val($dbh, 'SELECT queue_abort()'), 1, 'queue_abort');
snap();
is(val($dbh, q{SELECT queue_wait('q4m_t2:v=6', 0)}), 0, q{queue_wait('q4m_t2:v=6', 0) = 0});
delta('the same string on another table is compiled anew', compile => 1, compile_cachehit => 0);
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');

# ---- SHOW TABLE STATUS ------------------------------------------------------------
$dbh->do('DELETE FROM q4m_t');
$dbh->do('INSERT INTO q4m_t (v) VALUES (1), (2), (3)');
$dbh->do('INSERT INTO q4m_t2 (v) VALUES (1), (2)');
sub status_of {
    my ($c, $t) = @_;
    my $r = table_status($c, $t);
    return @$r == 1 ? "$r->[0]{Name} $r->[0]{Engine} $r->[0]{Rows}" : scalar(@$r) . ' rows';
}
is(status_of($dbh, 'q4m_t'), 'q4m_t QUEUE 3', 'SHOW TABLE STATUS: Engine QUEUE, Rows 3');
is(status_of($dbh, 'q4m_t2'), 'q4m_t2 QUEUE 2', 'q4m_t2: Rows 2');
my %by_name = map { $_->{Name} => $_->{Rows} } @{ $dbh->selectall_arrayref('SHOW TABLE STATUS', { Slice => {} }) };
is_deeply({ map { $_ => $by_name{$_} } qw(q4m_t q4m_t2) }, { q4m_t => 3, q4m_t2 => 2 },
    'SHOW TABLE STATUS without LIKE lists both');
is(val($dbh, q{SELECT queue_wait('q4m_t')}), 1, 'owner mode, owning a row of q4m_t');
is(status_of($dbh, 'q4m_t'), 'q4m_t QUEUE 1', 'the owner: Rows 1 for the table of its row');
is(status_of($dbh, 'q4m_t2'), 'q4m_t2 QUEUE 0', 'and 0 for the other table');
is(status_of($other, 'q4m_t'), 'q4m_t QUEUE 3', 'another connection: Rows 3 (the owned row counts)');
is(val($dbh, q{SELECT queue_wait('q4m_t2', 0)}), 1, 'now owning a row of q4m_t2');
is(status_of($dbh, 'q4m_t'), 'q4m_t QUEUE 0', 'the owner: q4m_t 0');
is(status_of($dbh, 'q4m_t2'), 'q4m_t2 QUEUE 1', 'q4m_t2 1');
is(status_of($other, 'q4m_t'), 'q4m_t QUEUE 2', 'another connection: q4m_t 2 (one was consumed)');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($dbh, q{SELECT queue_wait('q4m_t2', 0)}), 1, 'owns the last row of q4m_t2');
is(val($dbh, q{SELECT queue_wait('q4m_t2', 0)}), 0, 'then times out (owner mode, no row)');
is(status_of($dbh, 'q4m_t2'), 'q4m_t2 QUEUE 0', 'owner mode without a row: 0');
is(status_of($dbh, 'q4m_t'), 'q4m_t QUEUE 0', 'and 0 for q4m_t');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(status_of($dbh, 'q4m_t'), 'q4m_t QUEUE 2', 'out of owner mode: q4m_t 2');
is(status_of($dbh, 'q4m_t2'), 'q4m_t2 QUEUE 0', 'q4m_t2 0');

# ---- SHOW ENGINES, SHOW VARIABLES ----------------------------------------------------
my @engines = @{ $dbh->selectall_arrayref('SHOW ENGINES', { Slice => {} }) };
my ($q) = grep { uc($_->{Engine}) eq 'QUEUE' } @engines;
ok($q, 'SHOW ENGINES lists QUEUE');
is_deeply($q && [ @$q{qw(Transactions XA Savepoints)} ], [qw(NO NO NO)],
    'without transactions, XA or savepoints');
ok($q && $q->{Support} =~ /^(YES|DEFAULT)$/, 'and supported');
is_deeply(rows($dbh, q{SHOW VARIABLES LIKE 'queue%'}), [
    ['queue_concurrent_compaction_interval', '1048576'],
    ['queue_mmap_max', '17179869184'],
    ['queue_use_concurrent_compaction', '0'],
], q{SHOW VARIABLES LIKE 'queue%': Q4M's three variables and their defaults});
is_deeply(rows($dbh, q{SHOW VARIABLES LIKE 'queue_mmap%'}), [['queue_mmap_max', '17179869184']],
    q{SHOW VARIABLES LIKE 'queue_mmap%'});

# ---- queue_stats / queue_compact arguments -------------------------------------------
is(val($dbh, q{SELECT queue_stats('no_such_table')}), undef, 'queue_stats of a missing table: NULL');
is(val($dbh, q{SELECT queue_compact('no_such_table')}), undef, 'queue_compact of a missing table: NULL');
is(val($dbh, q{SELECT queue_compact('test.q4m_t')}), 1, q{queue_compact('test.q4m_t') = 1});
is(val($dbh, q{SELECT queue_compact('q4m_t')}), 1, q{queue_compact('q4m_t') = 1});
for my $case (['SELECT queue_stats()', 'queue_stats', 'queue_stats(table_name): argument error'],
    [q{SELECT queue_stats('q4m_t', 'q4m_t2')}, 'queue_stats', 'queue_stats(table_name): argument error'],
    ['SELECT queue_compact()', 'queue_compact', 'queue_compact(table_name): argument error'],
    [q{SELECT queue_compact('q4m_t', 1)}, 'queue_compact', 'queue_compact(table_name): argument error']) {
    my ($sql, $fn, $msg) = @$case;
    my $e = sql_error($dbh, $sql);
    is_deeply($e && [ @$e[0, 1] ], [1123, "Can't initialize function '$fn'; $msg"], "$sql: ERROR 1123");
}
is_deeply(rows($other, 'SELECT v FROM q4m_t'), col(2, 3), 'q4m_t still holds 2 and 3');

$dbh->do('DROP TABLE q4m_t');
$dbh->do('DROP TABLE q4m_t2');
done_testing();
