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
# deadline (10 minutes). Children set their own alarm (alarms are not
# inherited by fork). A script only needs to end: blob_cond.pl took 282 s
# with --queue-store upstream on a loaded machine.
alarm 540;

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

# ---------------------------------------------------------------------------
# Helpers added for the q4m_surface_test.go scripts. They are exported on
# request only (use Q4MTest qw(:DEFAULT poll_until ...)), so the scripts that
# predate them see exactly the names they always did.

our @EXPORT_OK = qw(poll_until fork_child child_line child_send child_done
    parse_engine_status engine_status parse_queue_stats queue_stats_of
    table_status);

# poll_until calls $cond every 5 ms until it returns true or $timeout seconds
# have passed; it returns the last value of $cond. The interval only paces
# the polling: nothing depends on it.
sub poll_until {
    my ($timeout, $cond) = @_;
    my $deadline = Time::HiRes::time() + $timeout;
    while (1) {
        my $v = $cond->();
        return $v if $v || Time::HiRes::time() >= $deadline;
        select(undef, undef, undef, 0.005);
    }
}

# fork_child runs $body->($in, $out) in a child process with an alarm of
# $timeout (default 60) seconds. $in reads lines the parent sends with
# child_send (EOF when the parent calls child_done or exits); $out writes
# lines the parent reads with child_line. A child that dies reports
# "ERROR <message>". The child leaves with POSIX::_exit, so it runs no END
# blocks and closes none of its parent's handles; any DBI handle it opened
# itself is left to the kernel to close (unless the body disconnects).
sub fork_child {
    my ($body, $timeout) = @_;
    require POSIX;
    pipe(my $to_child_r, my $to_child_w) or die "pipe: $!";
    pipe(my $to_parent_r, my $to_parent_w) or die "pipe: $!";
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        close $to_child_w;
        close $to_parent_r;
        alarm($timeout || 60);
        my $old = select($to_parent_w);
        $| = 1;
        select($old);
        my $ok = eval { $body->($to_child_r, $to_parent_w); 1 };
        unless ($ok) {
            (my $e = $@) =~ s/\s+/ /g;
            print $to_parent_w "ERROR $e\n";
        }
        close $to_parent_w;
        POSIX::_exit($ok ? 0 : 1);
    }
    close $to_child_r;
    close $to_parent_w;
    my $old = select($to_child_w);
    $| = 1;
    select($old);
    return { pid => $pid, in => $to_parent_r, out => $to_child_w, buf => '' };
}

# child_line returns the child's next output line (without the newline), or
# undef at EOF or after $timeout seconds.
sub child_line {
    my ($ch, $timeout) = @_;
    my $deadline = Time::HiRes::time() + ($timeout // 30);
    while (1) {
        if ($ch->{buf} =~ s/^([^\n]*)\n//) {
            return $1;
        }
        my $left = $deadline - Time::HiRes::time();
        return undef if $left <= 0;
        my $rin = '';
        vec($rin, fileno($ch->{in}), 1) = 1;
        my $n = select(my $rout = $rin, undef, undef, $left);
        next unless $n && $n > 0;
        my $r = sysread($ch->{in}, my $chunk, 65536);
        return undef unless $r;    # EOF (or error)
        $ch->{buf} .= $chunk;
    }
}

# child_send writes one line to the child.
sub child_send {
    my ($ch, $line) = @_;
    print { $ch->{out} } "$line\n";
}

# child_done closes the parent's end of the child's input and reaps the
# child (waiting at most $timeout seconds, then killing it); it returns the
# child's exit status ($?).
sub child_done {
    my ($ch, $timeout) = @_;
    require POSIX;
    close $ch->{out} if defined $ch->{out};
    $ch->{out} = undef;
    my $deadline = Time::HiRes::time() + ($timeout // 30);
    while (1) {
        my $r = waitpid($ch->{pid}, POSIX::WNOHANG());
        return $? if $r == $ch->{pid};
        return -1 if $r < 0;
        if (Time::HiRes::time() >= $deadline) {
            kill 'KILL', $ch->{pid};
            waitpid($ch->{pid}, 0);
            return -1;
        }
        select(undef, undef, undef, 0.005);
    }
}

# parse_engine_status reads the Status text of SHOW ENGINE QUEUE STATUS the
# way Perl's Queue::Q4M::Status does (every line matching
# /^([\w_]+)\s+(\d+)$/ is a counter; everything else is ignored). It returns
# a hash of the counters and the list of their names in order.
sub parse_engine_status {
    my ($text) = @_;
    my (%c, @names);
    for my $line (split /\r?\n/, $text // '') {
        next unless $line =~ /^([\w_]+)\s+(\d+)$/;
        push @names, $1 unless exists $c{$1};
        $c{$1} = $2;
    }
    return (\%c, \@names);
}

# engine_status runs SHOW ENGINE QUEUE STATUS and returns its rows and the
# counters parsed from the first row's Status.
sub engine_status {
    my ($dbh) = @_;
    my $rows = $dbh->selectall_arrayref('SHOW ENGINE QUEUE STATUS');
    my ($c) = parse_engine_status(@$rows ? $rows->[0][2] : '');
    return ($c, $rows);
}

# parse_queue_stats splits queue_stats() output ("name: value\n" lines) into
# a list of [name, value] pairs; it dies on anything else.
sub parse_queue_stats {
    my ($text) = @_;
    die "queue_stats returned NULL\n" unless defined $text;
    die "queue_stats output does not end with a newline: '$text'\n"
        unless $text =~ /\n\z/;
    my @pairs;
    for my $line (split /\n/, $text) {
        die "bad queue_stats line '$line'\n" unless $line =~ /^(\w+): (\d+)$/;
        push @pairs, [$1, $2];
    }
    return \@pairs;
}

# queue_stats_of returns queue_stats($table) as a hash.
sub queue_stats_of {
    my ($dbh, $table) = @_;
    my $p = parse_queue_stats(val($dbh, 'SELECT queue_stats(?)', $table));
    return { map { @$_ } @$p };
}

# table_status returns SHOW TABLE STATUS LIKE '$table' as a list of hashes.
sub table_status {
    my ($dbh, $table) = @_;
    my $sth = $dbh->prepare('SHOW TABLE STATUS LIKE ' . $dbh->quote($table));
    $sth->execute;
    my @r;
    while (my $h = $sth->fetchrow_hashref) {
        push @r, {%$h};
    }
    return \@r;
}

1;
