#!/usr/bin/env perl
# Error codes, SQLSTATEs and messages as DBI reports them; the handle keeps
# working after each error.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest;

my $dbh = connect_db();
fresh_table($dbh, 'q4m_t', 'v INT NOT NULL, s VARCHAR(3)');

my @cases = (
    # [statement, bind values, err, SQLSTATE, message (string or regexp)]
    ['SELECT * FROM nosuch', [], 1146, '42S02', q{Table 'test.nosuch' doesn't exist}],
    ['INSERT INTO nosuch (v) VALUES (1)', [], 1146, '42S02', q{Table 'test.nosuch' doesn't exist}],
    ['SELEC 1', [], 1064, '42000', qr/^You have an error in your SQL syntax/],
    ['SELECT * FROM q4m_t WHERE', [], 1064, '42000', qr/^You have an error in your SQL syntax/],
    ['INSERT INTO q4m_t VALUES (1)', [], 1136, '21S01', q{Column count doesn't match value count at row 1}],
    ['INSERT INTO q4m_t (v) VALUES (1), (2, 3)', [], 1136, '21S01', q{Column count doesn't match value count at row 2}],
    ['INSERT INTO q4m_t (v) VALUES (NULL)', [], 1048, '23000', q{Column 'v' cannot be null}],
    ['INSERT INTO q4m_t (v) VALUES (?)', [undef], 1048, '23000', q{Column 'v' cannot be null}],
    ['INSERT INTO q4m_t (v, s) VALUES (1, ?)', ['abcd'], 1406, '22001', q{Data too long for column 's' at row 1}],
    ['INSERT INTO q4m_t (v) VALUES (?)', ['x'], 1366, 'HY000', q{Incorrect integer value: 'x' for column 'v' at row 1}],
    ['INSERT INTO q4m_t (v) VALUES (1), (2), (NULL)', [], 1048, '23000', q{Column 'v' cannot be null}],
    ['INSERT INTO q4m_t (nope) VALUES (1)', [], 1054, '42S22', q{Unknown column 'nope' in 'field list'}],
    ['SELECT nope FROM q4m_t', [], 1054, '42S22', q{Unknown column 'nope' in 'field list'}],
    ['SELECT queue_abort()', [], 1123, 'HY000', q{Can't initialize function 'queue_abort'; queue_abort(): not in owner mode}],
    ['SELECT queue_rowid()', [], 1123, 'HY000', q{Can't initialize function 'queue_rowid'; queue_rowid(): not in owner mode}],
    ['SELECT queue_wait()', [], 1123, 'HY000', q{Can't initialize function 'queue_wait'; queue_wait(table_name[,timeout]): argument error}],
);

for my $c (@cases) {
    my ($sql, $bind, $err, $state, $msg) = @$c;
    my $name = $sql . (@$bind ? ' [' . join(',', map { $_ // 'undef' } @$bind) . ']' : '');
    my $e = sql_error($dbh, $sql, @$bind);
    ok($e, "$name fails") or next;
    is($e->[0], $err, "$name: err $err");
    is($e->[2], $state, "$name: SQLSTATE $state");
    if (ref $msg) {
        like($e->[1], $msg, "$name: message");
    } else {
        is($e->[1], $msg, "$name: message");
    }
    is(val($dbh, 'SELECT 1'), 1, "$name: handle still works");
}

# Nothing was inserted by the failed statements (multi-row INSERTs are atomic).
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t'), 0, 'failed INSERTs left no rows');

# Errors do not disturb owner mode.
$dbh->do('INSERT INTO q4m_t (v) VALUES (1), (2)');
is(val($dbh, q{SELECT queue_wait('q4m_t')}), 1, 'queue_wait');
is(sql_error($dbh, 'SELECT * FROM nosuch')->[0], 1146, 'an error in owner mode');
is(sql_error($dbh, 'SELECT queue_rowid(1)')->[0], 1123, 'queue_rowid with an argument: 1123');
is(val($dbh, 'SELECT queue_rowid()'), 1, 'still owner of row 1');
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(1), 'owner view unchanged');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(2), 'row 2 left');

# UPDATE is refused as soon as a row matches.
my $e = sql_error($dbh, 'UPDATE q4m_t SET v = 3 WHERE v = 2');
is($e && $e->[0], 1031, 'UPDATE of a row: 1031');
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(2), 'row unchanged');

$dbh->do('DROP TABLE q4m_t');
done_testing();
