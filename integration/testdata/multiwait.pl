#!/usr/bin/env perl
# Semi-starvation (Q4M's 05-multiwait): CONCURRENCY (32) forked workers
# share CONCURRENCY/4 rows that circulate: each worker repeatedly takes a
# row and puts a new one back (its id plus one). With more waiters than
# rows, every wait must still end (a row or a timeout), nothing is lost or
# created: at the end COUNT(*) is exactly CONCURRENCY/4, and every worker
# got rows (no worker starves for the whole run).
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Q4MTest;

my $N = $ENV{CONCURRENCY} || 32;
my $ROWS = int($N / 4);
my $ROUNDS = $ENV{ROUNDS} || 25;
my $dir = tempdir(CLEANUP => 1);
my $dbh = connect_db();
fresh_table($dbh, 'q4m_t', 'id INT NOT NULL');
$dbh->do("INSERT INTO q4m_t (id) VALUES " . join(',', map { "($_)" } 1 .. $ROWS));

my @pids;
for my $w (1 .. $N) {
    my $pid = fork();
    die "fork: $!" unless defined $pid;
    if ($pid == 0) {
        alarm 120;
        my $got = 0;
        my $ok = eval {
            my $c = connect_db();
            # Each round: take a row (waiting up to 10 s), put a new one back.
            for (1 .. $ROUNDS) {
                my ($r) = $c->selectrow_array("SELECT queue_wait('q4m_t', 10)");
                next unless $r;
                my ($id) = $c->selectrow_array("SELECT id FROM q4m_t");
                $c->do("INSERT INTO q4m_t (id) VALUES (?)", undef, $id + 1);
                $got++;
            }
            $c->do("SELECT queue_end()");
            1;
        };
        open my $fh, '>', "$dir/w.$w" or die;
        print $fh $ok ? "$got\n" : "ERR $@\n";
        close $fh;
        POSIX::_exit(0);
    }
    push @pids, $pid;
}
waitpid($_, 0) for @pids;
my ($total, $starved) = (0, 0);
for my $w (1 .. $N) {
    open my $fh, '<', "$dir/w.$w" or die "worker $w left nothing";
    my $line = <$fh>;
    chomp $line;
    unlike $line, qr/^ERR/, "worker $w ran without errors" if $line =~ /^ERR/;
    $total += $line if $line =~ /^\d+$/;
    $starved++ if $line eq '0';
}
is val($dbh, "SELECT COUNT(*) FROM q4m_t"), $ROWS, "still exactly $ROWS rows circulating";
ok $total >= $N, "rows changed hands $total times";
is $starved, 0, 'no worker starved for the whole run';
done_testing;
