# connect.pl: log in with DBI (DSN, user and password from $DBI, $DBI_USER
# and $DBI_PASSWORD) and print either the error of the connection attempt
# or the result of SELECT 1. It exits 0 either way: the Go test decides.
use strict;
use warnings;
use DBI;

my $dbh = DBI->connect($ENV{DBI}, $ENV{DBI_USER}, $ENV{DBI_PASSWORD},
    { RaiseError => 0, PrintError => 0 });
if (!$dbh) {
    print "err=", ($DBI::err // ''), "\n";
    print "state=", ($DBI::state // ''), "\n";
    print "errstr=", ($DBI::errstr // ''), "\n";
    exit 0;
}
my ($v) = $dbh->selectrow_array("SELECT 1");
if (defined $v) {
    print "result=$v\n";
} else {
    print "select_err=", ($dbh->err // ''), " ", ($dbh->errstr // ''), "\n";
}
$dbh->disconnect;
