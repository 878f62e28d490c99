package Q4MTest;

# Shared helpers for the Perl DBI scripts in this directory. They follow
# Q4M's own test convention: the DSN comes from $ENV{DBI}, the credentials
# from $ENV{DBI_USER} and $ENV{DBI_PASSWORD}.

use strict;
use warnings;
use DBI;
use Exporter 'import';
use Time::HiRes ();

our @EXPORT = qw(connect_db fresh_table rows val col sql_error elapsed_since
    is_mariadb);

# A script that hangs fails instead of holding the Go test until its context
# deadline. Children set their own alarm (alarms are not inherited by fork).
alarm 240;

# connect_db opens a new connection. AutoInactiveDestroy keeps a forked child
# from closing its parent's connections when it exits.
sub connect_db {
    my $dbh = DBI->connect($ENV{DBI}, $ENV{DBI_USER}, $ENV{DBI_PASSWORD},
        { RaiseError => 1, PrintError => 0, AutoCommit => 1,
          AutoInactiveDestroy => 1 })
        or die "connect: $DBI::errstr";
    return $dbh;
}

sub is_mariadb { ($ENV{DBI} // '') =~ /^dbi:MariaDB:/i }

# fresh_table (re)creates a queue table.
sub fresh_table {
    my ($dbh, $name, $cols) = @_;
    $dbh->do("DROP TABLE IF EXISTS $name");
    $dbh->do("CREATE TABLE $name ($cols) ENGINE=queue");
}

# rows returns all rows of a query as an array of arrays.
sub rows {
    my ($dbh, $sql, @bind) = @_;
    return $dbh->selectall_arrayref($sql, undef, @bind);
}

# val returns the single value of a one-row, one-column query (undef for
# NULL), and dies unless the result has exactly that shape.
sub val {
    my ($dbh, $sql, @bind) = @_;
    my $r = $dbh->selectall_arrayref($sql, undef, @bind);
    die "$sql: expected 1 row, got " . scalar(@$r) unless @$r == 1;
    die "$sql: expected 1 column, got " . scalar(@{ $r->[0] })
        unless @{ $r->[0] } == 1;
    return $r->[0][0];
}

# col turns a list of values into single-column rows: col(1,2) = [[1],[2]].
sub col { [ map { [$_] } @_ ] }

# sql_error runs a statement that must fail and returns [err, errstr, state]
# (undef when it succeeded).
sub sql_error {
    my ($dbh, $sql, @bind) = @_;
    my $ok = eval {
        my $sth = $dbh->prepare($sql);
        $sth->execute(@bind);
        $sth->fetchall_arrayref if $sth->{NUM_OF_FIELDS};
        1;
    };
    return undef if $ok;
    return [ $dbh->err, $dbh->errstr, $dbh->state ];
}

sub elapsed_since { Time::HiRes::time() - $_[0] }

1;
