#!/usr/bin/env perl
# Helper for perl_test.go (not a test script): a client that takes a row and
# then hangs, to be killed with SIGKILL.
#
#   own_and_sleep.pl TABLE [TIMEOUT [SIGNAL_TABLE]]
#
# With SIGNAL_TABLE it first owns a row of that table; the queue_wait on
# TABLE consumes it before blocking, so the caller can tell (COUNT(*) of
# SIGNAL_TABLE drops to 0) that the wait has reached the server. It prints
# "WAITING" just before queue_wait(TABLE, TIMEOUT), then "OWNED <rowid>" if
# it got a row (or "RESULT <value>" if not), then sleeps 300 seconds.
use strict;
use warnings;
use DBI;

my ($table, $timeout, $signal) = @ARGV;
die "usage: $0 TABLE [TIMEOUT [SIGNAL_TABLE]]\n" unless defined $table;
$timeout = 60 unless defined $timeout;
$| = 1;

my $dbh = DBI->connect($ENV{DBI}, $ENV{DBI_USER}, $ENV{DBI_PASSWORD},
    { RaiseError => 1, PrintError => 0 });
if (defined $signal) {
    my ($s) = $dbh->selectrow_array('SELECT queue_wait(?)', undef, $signal);
    die "queue_wait('$signal') returned " . ($s // 'NULL') . "\n" unless defined $s && $s == 1;
}
print "WAITING\n";
my ($w) = $dbh->selectrow_array('SELECT queue_wait(?, ?)', undef, $table, $timeout);
if (defined $w && $w == 1) {
    my ($rowid) = $dbh->selectrow_array('SELECT queue_rowid()');
    print "OWNED $rowid\n";
} else {
    print 'RESULT ', $w // 'NULL', "\n";
}
sleep 300;
