#!/usr/bin/env perl
# queue_set_srcid marks across a server restart (run by q4m_surface_test.go
# twice: PHASE=before, then, after the server was restarted or killed,
# PHASE=after). The spec asks an emulator to persist the per-table marks
# with the INSERT (stricter than Q4M, whose marks could fall back after a
# crash), so a forwarder retrying after a restart inserts no duplicate.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest;

my $phase = $ENV{PHASE} // '';
my $dbh = connect_db();

sub set_ins {
    my ($s, $m, $r, $v) = @_;
    is(val($dbh, 'SELECT queue_set_srcid(?, ?, ?)', $s, $m, $r), 1, "queue_set_srcid($s, '$m', $r)");
    ok(defined $dbh->do("INSERT INTO q4m_t2 (v) VALUES ($v)"), "INSERT ($v)");
}

if ($phase eq 'before') {
    fresh_table($dbh, 'q4m_t2', 'v INT NOT NULL');
    set_ins(0, 'a', 10, 1);
    set_ins(7, 'a', 3, 2);
    set_ins(63, 'w', 5, 3);
    set_ins(0, 'a', 10, 4);    # duplicate
    is_deeply(rows($dbh, 'SELECT v FROM q4m_t2'), col(1, 2, 3), 'three rows accepted, one dropped');
} elsif ($phase eq 'after') {
    is_deeply(rows($dbh, 'SELECT v FROM q4m_t2'), col(1, 2, 3), 'the rows are back after the restart');
    set_ins(0, 'a', 10, 5);
    set_ins(7, 'a', 2, 6);
    set_ins(63, 'a', 5, 7);
    is_deeply(rows($dbh, 'SELECT v FROM q4m_t2'), col(1, 2, 3),
        'slots 0, 7 and 63 still remember rowids 10, 3 and 5: all three dropped');
    set_ins(0, 'a', 11, 8);
    set_ins(7, 'a', 4, 9);
    set_ins(1, 'a', 1, 10);
    is_deeply(rows($dbh, 'SELECT v FROM q4m_t2'), col(1, 2, 3, 8, 9, 10),
        'newer rowids and an unused slot are accepted');
    $dbh->do('DROP TABLE q4m_t2');
} else {
    die "PHASE must be 'before' or 'after'\n";
}
done_testing();
