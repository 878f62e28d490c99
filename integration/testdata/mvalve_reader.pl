#!/usr/bin/env perl
# Mode B: an unchanged Mvalve Reader's loop against a server running the
# valve. It blocks in
#   SELECT queue_wait('q_emerg','q_timed:ready<NOW','q_incoming','60')
# reads each message (SELECT * FROM <table>, fetchrow_hashref), decodes the
# Mvalve framing and prints, for the Go test:
#   GOT <index> <table> <arrival epoch seconds> <destination column> <message id>
# where the arrival time is taken (Time::HiRes) as queue_wait returns.
# HOLD is a comma-separated list of counts: after printing the message with
# that count, it prints "HOLDING <count>" and holds the row (does not go on
# to its next queue_wait, which would consume it) until it gets SIGUSR1, as
# a slow reader does while it processes a message.
# Usage: mvalve_reader.pl COUNT [TIMEOUT [HOLD]]
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Time::HiRes ();
use Q4MTest;
use MvalveWire;

$| = 1;
my ($count, $timeout, $hold) = @ARGV;
die "usage: $0 COUNT [TIMEOUT [HOLD]]\n" unless $count;
$timeout //= 60;
my %hold = map { $_ => 1 } split /,/, ($hold // '');
my $go = 0;
$SIG{USR1} = sub { $go = 1 };
my $dbh = connect_db();
my $v = plugin_version($dbh);
die "plugin version $v < 0.8\n" unless $v >= 0.8;
print "READY\n";
my $got = 0;
while ($got < $count) {
    my ($idx, $table) = q4m_next(dbh => $dbh, timeout => $timeout);
    my $at = Time::HiRes::time();
    unless ($idx) {
        print "TIMEOUT\n";
        next;
    }
    my $row = q4m_fetch($dbh, $table) or die "no row in $table after queue_wait returned $idx\n";
    my $m = unframe($row->{message});
    my $id = ref $m eq 'Mvalve::Message' ? $m->{id} : '-';
    my $dest = $m ? message_header($m, 'X-Mvalve-Destination') // '-' : '-';
    die "destination column '$row->{destination}' but header '$dest'\n"
        if $m && $dest ne $row->{destination};
    printf "GOT %d %s %.6f %s %s\n", $idx, $table, $at, $row->{destination}, $id;
    $got++;
    if ($hold{$got}) {
        $go = 0;
        print "HOLDING $got\n";
        select(undef, undef, undef, 0.01) until $go;
    }
}
q4m_val($dbh, 'select queue_end()');
$dbh->disconnect;
print "DONE\n";
