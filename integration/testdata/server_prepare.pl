#!/usr/bin/env perl
# Server-side prepared statements from Perl. DBD::MariaDB sends the
# parameter types with every execution and works throughout; DBD::mysql
# 4.050 (libmariadb) sends them only with the first, which this server
# refuses with 1210 rather than reading NULLs (see README).
use strict;
use warnings;
use DBI;
use Test::More;

my $dsn = $ENV{DBI} or die "DBI not set";
my $drv = $dsn =~ /^dbi:MariaDB/ ? 'MariaDB' : 'mysql';
$dsn .= $drv eq 'MariaDB' ? ';mariadb_server_prepare=1' : ';mysql_server_prepare=1';
my $dbh = DBI->connect($dsn, $ENV{DBI_USER}, $ENV{DBI_PASSWORD}, {RaiseError => 0, PrintError => 0}) or die $DBI::errstr;
ok $dbh->do("CREATE TABLE sp (v int, s varchar(20)) ENGINE=queue"), 'create';
my $ins = $dbh->prepare("INSERT INTO sp (v, s) VALUES (?, ?)");
ok $ins->execute(1, "one"), 'first execution';
my $second = $ins->execute(2, "two");
if ($drv eq 'MariaDB') {
    ok $second, 'second execution (types resent)';
} else {
    ok !$second, 'second execution refused';
    is $dbh->err, 1210, 'with 1210';
}
my $rows = $dbh->selectall_arrayref("SELECT v, s FROM sp");
is_deeply $rows, ($drv eq 'MariaDB' ? [[1, 'one'], [2, 'two']] : [[1, 'one']]), 'no NULLs stored';
my ($r) = $dbh->selectrow_array("SELECT queue_wait(?, ?)", undef, 'sp', 0);
is $r, 1, 'queue_wait through a prepared statement';
done_testing;
