#!/usr/bin/env perl
# Server-side prepared statements from Perl. DBD::MariaDB sends the
# parameter types with every execution; DBD::mysql 4.050 (libmariadb) sends
# them only with the first, and the server keeps them for the later ones,
# as MySQL does.
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
ok $ins->execute(2, "two"), 'second execution (types resent or kept)';
ok $ins->execute(undef, "three"), 'a NULL parameter';
my $rows = $dbh->selectall_arrayref("SELECT v, s FROM sp");
is_deeply $rows, [[1, 'one'], [2, 'two'], [undef, 'three']], 'every execution stored its own values';
my ($r) = $dbh->selectrow_array("SELECT queue_wait(?, ?)", undef, 'sp', 0);
is $r, 1, 'queue_wait through a prepared statement';
done_testing;
