#!/usr/bin/env perl
# Concurrency: CONCURRENCY (32) forked readers consume MESSAGES (6400)
# pre-inserted rows; then CONCURRENCY workers each insert one row and consume
# one. Every row must be consumed exactly once.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use File::Temp qw(tempdir);
use POSIX ();
use Q4MTest;

my $CONCURRENCY = $ENV{CONCURRENCY} || 32;
my $MESSAGES = $ENV{MESSAGES} || $CONCURRENCY * 200;
my $dir = tempdir(CLEANUP => 1);
my $dbh = connect_db();

# run_children forks $n children running $body->($i, $dbh) with their own
# connection. They all wait on a pipe until the parent closes its end (the
# start barrier), and write what they consumed to $dir/<name>.<i>, one value
# per line, then "END". It returns the children's files' contents.
sub run_children {
    my ($name, $n, $body) = @_;
    pipe(my $ready_r, my $ready_w) or die "pipe: $!";
    pipe(my $go_r, my $go_w) or die "pipe: $!";
    my @pids;
    for my $i (1 .. $n) {
        my $pid = fork();
        die "fork: $!" unless defined $pid;
        if ($pid == 0) {
            close $ready_r;
            close $go_w;
            alarm 120;
            my $ok = eval {
                my $c = connect_db();
                syswrite($ready_w, "R") == 1 or die "ready: $!";
                close $ready_w;
                sysread($go_r, my $buf, 1);    # EOF when the parent says go
                my @got = $body->($i, $c);
                open(my $fh, '>', "$dir/$name.$i") or die "$dir/$name.$i: $!";
                print $fh map {"$_\n"} @got, 'END';
                close $fh or die "close: $!";
                $c->disconnect;
                1;
            };
            print STDERR "child $name.$i: $@" unless $ok;
            POSIX::_exit($ok ? 0 : 1);
        }
        push @pids, $pid;
    }
    close $ready_w;
    close $go_r;
    # Wait until every child is connected, then release them all at once.
    my $ready = 0;
    while ($ready < $n) {
        my $r = sysread($ready_r, my $buf, $n - $ready);
        last unless $r;
        $ready += $r;
    }
    is($ready, $n, "$name: all $n children connected");
    my $t0 = Time::HiRes::time();
    close $go_w;
    my @failed;
    for my $pid (@pids) {
        waitpid($pid, 0);
        push @failed, $pid if $? != 0;
    }
    my $el = elapsed_since($t0);
    is_deeply(\@failed, [], "$name: every child exited with status 0");
    my %got;
    for my $i (1 .. $n) {
        my @lines;
        if (open(my $fh, '<', "$dir/$name.$i")) {
            chomp(@lines = <$fh>);
        }
        if (@lines && $lines[-1] eq 'END') {
            pop @lines;
            $got{$i} = \@lines;
        }
    }
    is(scalar(keys %got), $n, "$name: every child reported");
    return (\%got, $el);
}

# Part 1: multireader.
fresh_table($dbh, 'q4m_t', 'v INT NOT NULL');
for (my $v = 1; $v <= $MESSAGES; $v += 100) {
    my $last = $v + 99 > $MESSAGES ? $MESSAGES : $v + 99;
    $dbh->do('INSERT INTO q4m_t (v) VALUES ' . join(',', map {"($_)"} $v .. $last));
}
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t'), $MESSAGES, "$MESSAGES rows inserted");

my ($got, $el) = run_children('reader', $CONCURRENCY, sub {
    my ($i, $c) = @_;
    my @got;
    # All rows are there before the readers start and none is ever given
    # back, so a wait that times out means nothing is left.
    while (1) {
        my $w = val($c, q{SELECT queue_wait('q4m_t', 1)});
        die 'queue_wait returned ' . ($w // 'NULL') . "\n" unless defined $w && ($w == 0 || $w == 1);
        last if $w == 0;
        my $r = rows($c, 'SELECT v FROM q4m_t');
        die 'owner sees ' . scalar(@$r) . " rows\n" unless @$r == 1;
        push @got, $r->[0][0];
    }
    val($c, 'SELECT queue_end()');
    return @got;
});
diag(sprintf 'multireader: %d rows in %.2fs (%.0f rows/s)', $MESSAGES, $el, $MESSAGES / ($el || 1));

my (%seen, @dups, @unordered);
for my $i (sort { $a <=> $b } keys %$got) {
    my $prev = 0;
    for my $v (@{ $got->{$i} }) {
        push @dups, $v if $seen{$v}++;
        # FIFO hand-out: each reader gets increasing values.
        push @unordered, "reader $i: $v after $prev" if $v <= $prev;
        $prev = $v;
    }
}
my @missing = grep { !$seen{$_} } 1 .. $MESSAGES;
is(scalar(keys %seen), $MESSAGES, "$MESSAGES distinct rows consumed");
is_deeply(\@dups, [], 'no row consumed twice');
is_deeply([ @missing[0 .. ($#missing < 19 ? $#missing : 19)] ], [], 'no row lost');
is_deeply([ grep { $_ < 1 || $_ > $MESSAGES } keys %seen ], [], 'no unknown values');
is_deeply([ @unordered[0 .. ($#unordered < 9 ? $#unordered : 9)] ], [], 'each reader got rows in FIFO order');
my $busy = grep { @{ $got->{$_} } > 0 } keys %$got;
note("$busy of $CONCURRENCY readers consumed rows");
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t'), 0, 'COUNT(*) = 0 at the end');
is_deeply(rows($dbh, 'SELECT * FROM q4m_t'), [], 'SELECT * is empty at the end');

# Part 2: multirw. Each worker inserts its own number, then consumes a row.
fresh_table($dbh, 'q4m_t3', 'v INT NOT NULL');
($got) = run_children('rw', $CONCURRENCY, sub {
    my ($i, $c) = @_;
    $c->do('INSERT INTO q4m_t3 (v) VALUES (?)', undef, $i);
    my $w = val($c, q{SELECT queue_wait('q4m_t3', 30)});
    die 'queue_wait returned ' . ($w // 'NULL') . "\n" unless defined $w && $w == 1;
    my $r = rows($c, 'SELECT v FROM q4m_t3');
    die 'owner sees ' . scalar(@$r) . " rows\n" unless @$r == 1;
    val($c, 'SELECT queue_end()');
    return ($r->[0][0]);
});
my @each = map { scalar @{ $got->{$_} } } sort { $a <=> $b } keys %$got;
is_deeply(\@each, [ (1) x $CONCURRENCY ], 'each worker consumed exactly one row');
is_deeply([ sort { $a <=> $b } map { @$_ } values %$got ], [ 1 .. $CONCURRENCY ],
    'every inserted row consumed exactly once');
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t3'), 0, 'COUNT(*) = 0 at the end');

$dbh->do('DROP TABLE q4m_t');
$dbh->do('DROP TABLE q4m_t3');
done_testing();
