#!/usr/bin/env perl
# A program that uses an InnoDB table of the upstream server and a queue
# table on one DBI handle, as Q4M users did on one mysqld: text protocol and
# server-side prepared statements (executed more than once, so that the
# later executions omit the parameter types).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest;

my ($tbl, $q) = ($ENV{T_TABLE}, $ENV{T_QUEUE});
my $dbh = connect_db();
$dbh->do("CREATE TABLE $tbl (id INT PRIMARY KEY AUTO_INCREMENT, name VARCHAR(40), n INT) ENGINE=InnoDB");
fresh_table($dbh, $q, 'user_id INT NOT NULL, what VARCHAR(40)');

my $ins = $dbh->prepare("INSERT INTO $tbl (name, n) VALUES (?, ?)");
$ins->execute("user$_", $_) for 1 .. 5;
is($dbh->last_insert_id(undef, undef, $tbl, 'id'), 5, 'last insert id of the upstream table');
is(val($dbh, "SELECT COUNT(*) FROM $tbl"), 5, 'rows inserted upstream');

my $enq = $dbh->prepare("INSERT INTO $q (user_id, what) VALUES (?, ?)");
$enq->execute($_, "job$_") for 1 .. 5;
is(val($dbh, "SELECT COUNT(*) FROM $q"), 5, 'rows queued');

my $get = $dbh->prepare("SELECT name, n FROM $tbl WHERE id = ?");
my $upd = $dbh->prepare("UPDATE $tbl SET n = n + 100 WHERE id = ?");
for my $i (1 .. 5) {
    is(val($dbh, "SELECT queue_wait('$q', 5)"), 1, "queue_wait $i");
    my $job = rows($dbh, "SELECT user_id, what FROM $q");
    is_deeply($job, [[$i, "job$i"]], "owned row $i");
    $get->execute($job->[0][0]);
    is_deeply($get->fetchall_arrayref, [["user$i", $i]], "upstream row for job $i");
    is($upd->execute($job->[0][0]), 1, "update affects 1 row ($i)");
}
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($dbh, "SELECT COUNT(*) FROM $q"), 0, 'queue consumed');
is(val($dbh, "SELECT SUM(n) FROM $tbl"), 515, 'all updates applied upstream');

# Errors of either side keep the handle usable.
my $e = sql_error($dbh, "SELECT * FROM ${tbl}_missing");
is($e->[0], 1146, 'missing upstream table: 1146');
is($e->[2], '42S02', 'SQLSTATE 42S02');
$e = sql_error($dbh, "SELECT * FROM $tbl JOIN $q");
is($e->[0], 1235, 'a join across the sides: 1235');
is(val($dbh, 'SELECT 1 + 1'), 2, 'handle still usable');

# A transaction upstream; queue writes take effect at once.
$dbh->begin_work;
$dbh->do("INSERT INTO $tbl (name, n) VALUES ('tx', 0)");
$dbh->do("INSERT INTO $q (user_id, what) VALUES (9, 'in-tx')");
$dbh->rollback;
is(val($dbh, "SELECT COUNT(*) FROM $tbl WHERE name = 'tx'"), 0, 'rolled back upstream');
is(val($dbh, "SELECT COUNT(*) FROM $q"), 1, 'queue write kept');

# INSERT INTO the queue table SELECT from the upstream table, with
# parameters (a server-side prepared statement with server_prepare=1).
$dbh->do("DELETE FROM $q");
my $copy = $dbh->prepare("INSERT INTO $q (user_id, what) SELECT id, CONCAT(name, ?) FROM $tbl WHERE id > ? AND name <> ? ORDER BY id");
is($copy->execute(" it's", 3, 'user9'), 2, 'INSERT ... SELECT with parameters: 2 rows');
is($copy->execute("\\", 4, 'user9'), 1, 'executed again: 1 row');
is_deeply(rows($dbh, "SELECT user_id, what FROM $q"), [[4, "user4 it's"], [5, "user5 it's"], [5, "user5\\"]],
    'rows copied with the parameters applied');

done_testing();
