#!/usr/bin/env perl
# queue_rowid and queue_set_srcid (Q4M's 07-trans): queue_rowid outside owner
# mode is an error; queue_set_srcid tags the next INSERT with (sender,
# source rowid) and the destination table drops what it has already received
# from that sender slot; 'w' forces and rewinds; bad senders and modes give
# NULL; TRUNCATE of the destination resets the marks. (Marks surviving a
# server restart cannot be checked from Perl: not covered here.)
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Q4MTest;

my $dbh = connect_db();
my $B = connect_db();

# ---- queue_rowid / queue_abort outside owner mode --------------------------
fresh_table($dbh, 'q4m_t', 'v INT NOT NULL');
my $e = sql_error($dbh, 'SELECT queue_rowid()');
is($e && $e->[0], 1123, 'queue_rowid() outside owner mode: ERROR 1123');
is($e && $e->[1], q{Can't initialize function 'queue_rowid'; queue_rowid(): not in owner mode},
    'with the init error message');
is($e && $e->[2], 'HY000', 'SQLSTATE HY000');
$e = sql_error($dbh, 'SELECT queue_abort()');
is($e && $e->[0], 1123, 'queue_abort() outside owner mode: ERROR 1123');
is($e && $e->[1], q{Can't initialize function 'queue_abort'; queue_abort(): not in owner mode},
    'with its message');
$dbh->do('INSERT INTO q4m_t (v) VALUES (10), (20)');
is(val($dbh, q{SELECT queue_wait('q4m_t')}), 1, 'owner mode');
is(val($dbh, 'SELECT queue_rowid()'), 1, 'queue_rowid() = 1 in owner mode');
$e = sql_error($dbh, 'SELECT queue_rowid(1)');
is($e && $e->[0], 1123, 'queue_rowid(1): ERROR 1123');
is($e && $e->[1], q{Can't initialize function 'queue_rowid'; queue_rowid(): argument error},
    'argument error');
is(val($dbh, 'SELECT queue_rowid()'), 1, 'the failed call changed nothing');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
$e = sql_error($dbh, 'SELECT queue_rowid()');
is($e && $e->[0], 1123, 'queue_rowid() after queue_end: ERROR 1123 again');
is(val($dbh, q{SELECT queue_wait('q4m_t')}), 1, 'owns row 20');
is(val($dbh, 'SELECT queue_rowid()'), 2, 'queue_rowid() = 2');
is(val($dbh, 'SELECT queue_set_srcid(5, "a", 1)'), 1, 'queue_set_srcid in owner mode returns 1');
is(val($dbh, 'SELECT queue_rowid()'), 2, 'and leaves owner mode alone');
is_deeply(rows($dbh, 'SELECT v FROM q4m_t'), col(20), 'still owning row 20');
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
# The source set above is still pending: it tags the next INSERT (below,
# into a fresh table, where it is simply the first source seen from slot 5).

# ---- duplicate suppression --------------------------------------------------
fresh_table($dbh, 'q4m_t2', 'v INT NOT NULL');
fresh_table($dbh, 'q4m_t3', 'v INT NOT NULL');
my @t2;    # what q4m_t2 should hold
sub set_srcid {
    my ($c, $s, $m, $r) = @_;
    return val($c, 'SELECT queue_set_srcid(?, ?, ?)', $s, $m, $r);
}
sub ins {
    my ($c, $t, @v) = @_;
    my $rv = $c->do("INSERT INTO $t (v) VALUES " . join(',', map {"($_)"} @v));
    return defined $rv;
}
sub check_t2 {
    my ($what) = @_;
    is_deeply(rows($B, 'SELECT v FROM q4m_t2'), col(@t2), $what);
}

ok(ins($dbh, 'q4m_t2', 1), 'INSERT tagged (5, 1) by the pending source');
push @t2, 1;
check_t2('accepted: the first row from slot 5');
is(set_srcid($dbh, 5, 'a', 1), 1, q{queue_set_srcid(5, 'a', 1) again});
ok(ins($dbh, 'q4m_t2', 2), 'the INSERT succeeds ...');
check_t2('... but its row is dropped as a duplicate');

is(set_srcid($dbh, 0, 'a', 7), 1, q{queue_set_srcid(0, 'a', 7) = 1});
ok(ins($dbh, 'q4m_t2', 3), 'INSERT');
push @t2, 3;
check_t2('accepted (slot 0, rowid 7)');
is(set_srcid($dbh, 0, 'a', 7), 1, q{queue_set_srcid(0, 'a', 7) again});
ok(ins($dbh, 'q4m_t2', 4), 'INSERT');
check_t2('the same (0, a, 7) twice: the second INSERT is dropped');
is(set_srcid($dbh, 1, 'a', 7), 1, q{queue_set_srcid(1, 'a', 7): another slot, same rowid});
ok(ins($dbh, 'q4m_t2', 5), 'INSERT');
push @t2, 5;
check_t2('accepted: marks are per slot');
is(set_srcid($dbh, 1, 'w', 7), 1, q{queue_set_srcid(1, 'w', 7)});
ok(ins($dbh, 'q4m_t2', 6), 'INSERT');
push @t2, 6;
check_t2(q{'w' writes without checking: accepted again});
is(set_srcid($dbh, 1, 'a', 7), 1, q{queue_set_srcid(1, 'a', 7) once more});
ok(ins($dbh, 'q4m_t2', 7), 'INSERT');
check_t2('dropped');
is(set_srcid($dbh, 1, 'a', 6), 1, q{queue_set_srcid(1, 'a', 6): an older rowid});
ok(ins($dbh, 'q4m_t2', 8), 'INSERT');
check_t2('dropped: the mark is a high-water mark');
is(set_srcid($dbh, 1, 'a', 8), 1, q{queue_set_srcid(1, 'a', 8)});
ok(ins($dbh, 'q4m_t2', 9), 'INSERT');
push @t2, 9;
check_t2('a newer rowid is accepted');
is(set_srcid($dbh, 1, 'w', 2), 1, q{queue_set_srcid(1, 'w', 2): rewind});
ok(ins($dbh, 'q4m_t2', 10), 'INSERT');
push @t2, 10;
check_t2(q{accepted with 'w', and the mark of slot 1 is now 2});
is(set_srcid($dbh, 1, 'a', 3), 1, q{queue_set_srcid(1, 'a', 3)});
ok(ins($dbh, 'q4m_t2', 11), 'INSERT');
push @t2, 11;
check_t2('3 > 2: accepted after the rewind');

# The pending source is used by one INSERT only.
is(set_srcid($dbh, 2, 'a', 50), 1, q{queue_set_srcid(2, 'a', 50)});
ok(ins($dbh, 'q4m_t2', 12), 'INSERT (tagged)');
ok(ins($dbh, 'q4m_t2', 13), 'next INSERT (not tagged)');
push @t2, 12, 13;
check_t2('both accepted: the source applies to one INSERT');
# A multi-row INSERT is tagged, checked and written as one unit.
is(set_srcid($dbh, 3, 'a', 9), 1, q{queue_set_srcid(3, 'a', 9)});
ok(ins($dbh, 'q4m_t2', 14, 15, 16), 'a three-row INSERT');
push @t2, 14, 15, 16;
check_t2('all three rows accepted');
is(set_srcid($dbh, 3, 'a', 9), 1, q{queue_set_srcid(3, 'a', 9) again});
ok(ins($dbh, 'q4m_t2', 17, 18, 19), 'a three-row INSERT');
check_t2('all three rows dropped');
# Source rowid 0 means "no source".
is(set_srcid($dbh, 4, 'a', 0), 1, q{queue_set_srcid(4, 'a', 0)});
ok(ins($dbh, 'q4m_t2', 20), 'INSERT');
is(set_srcid($dbh, 4, 'a', 0), 1, q{queue_set_srcid(4, 'a', 0) again});
ok(ins($dbh, 'q4m_t2', 21), 'INSERT');
push @t2, 20, 21;
check_t2('rowid 0 is no source: both accepted');

# Marks belong to the destination table, not to the connection.
is(set_srcid($B, 0, 'a', 7), 1, q{connection B: queue_set_srcid(0, 'a', 7)});
ok(ins($B, 'q4m_t2', 22), 'B: INSERT into q4m_t2');
check_t2(q{dropped: q4m_t2 already has rowid 7 from slot 0 (A's)});
is(set_srcid($B, 0, 'a', 7), 1, q{B: queue_set_srcid(0, 'a', 7)});
ok(ins($B, 'q4m_t3', 23), 'B: INSERT into q4m_t3');
is_deeply(rows($B, 'SELECT v FROM q4m_t3'), col(23), 'accepted: q4m_t3 has marks of its own');
is(set_srcid($dbh, 0, 'a', 7), 1, q{A: queue_set_srcid(0, 'a', 7)});
ok(ins($dbh, 'q4m_t3', 24), 'A: INSERT into q4m_t3');
is_deeply(rows($B, 'SELECT v FROM q4m_t3'), col(23), 'dropped there now');
check_t2('q4m_t2 unchanged');

# ---- bad arguments ----------------------------------------------------------
is(set_srcid($dbh, -1, 'a', 1), undef, 'sender -1: NULL');
is(set_srcid($dbh, 64, 'a', 1), undef, 'sender 64: NULL');
is(val($dbh, q{SELECT queue_set_srcid(-1, 'a', 1)}), undef, 'sender -1 as a literal: NULL');
is(val($dbh, q{SELECT queue_set_srcid(64, 'w', 1)}), undef, 'sender 64 as a literal: NULL');
is(set_srcid($dbh, 0, 'A', 1), undef, q{mode 'A' (upper case): NULL});
is(set_srcid($dbh, 0, 'x', 1), undef, q{mode 'x': NULL});
is(set_srcid($dbh, 0, 'aw', 1), undef, q{mode 'aw': NULL});
is(set_srcid($dbh, 63, 'a', 1), 1, 'sender 63 is the last valid slot');
ok(ins($dbh, 'q4m_t2', 25), 'INSERT');
is(set_srcid($dbh, 63, 'a', 1), 1, 'sender 63 again');
ok(ins($dbh, 'q4m_t2', 26), 'INSERT');
push @t2, 25;
check_t2('slot 63 works like the others');
for my $sql ('SELECT queue_set_srcid()', 'SELECT queue_set_srcid(0, "a")',
    'SELECT queue_set_srcid(0, "a", 1, 2)') {
    $e = sql_error($dbh, $sql);
    is($e && $e->[0], 1123, "$sql: ERROR 1123");
    is($e && $e->[1],
        q{Can't initialize function 'queue_set_srcid'; queue_set_srcid(source,mode,rowid): argument error},
        '  argument error');
}

# ---- TRUNCATE of the destination resets the marks ---------------------------
is(set_srcid($dbh, 0, 'a', 7), 1, q{queue_set_srcid(0, 'a', 7)});
ok(ins($dbh, 'q4m_t2', 27), 'INSERT');
check_t2('still a duplicate before TRUNCATE');
ok(defined $B->do('TRUNCATE q4m_t2'), 'TRUNCATE q4m_t2');
@t2 = ();
is(set_srcid($dbh, 0, 'a', 7), 1, q{queue_set_srcid(0, 'a', 7)});
ok(ins($dbh, 'q4m_t2', 28), 'INSERT');
push @t2, 28;
check_t2('accepted after TRUNCATE: the marks were reset');
is(set_srcid($dbh, 0, 'a', 7), 1, q{queue_set_srcid(0, 'a', 7)});
ok(ins($dbh, 'q4m_t2', 29), 'INSERT');
check_t2('and a duplicate again afterwards');

# ---- a relay in the q4m-forward style: redelivery is not a duplicate row ---
# Forward q4m_t (source) to q4m_t2 with sender 9: queue_wait on the source,
# queue_set_srcid with the source rowid, INSERT into the destination; the
# next queue_wait consumes the source row. A forwarder that dies between the
# INSERT and that wait gets the row again and its re-INSERT is dropped.
fresh_table($dbh, 'q4m_t', 'v INT NOT NULL');
$B->do('TRUNCATE q4m_t2');
@t2 = ();
$B->do('INSERT INTO q4m_t (v) VALUES (101), (102), (103)');
my $F = connect_db();
my $D = connect_db();
sub forward_one {
    my ($src, $dst) = @_;
    my $w = val($src, q{SELECT queue_wait('q4m_t', 1)});
    return undef unless $w;
    my $rowid = val($src, 'SELECT queue_rowid()');
    my ($v) = @{ rows($src, 'SELECT v FROM q4m_t')->[0] };
    die "queue_set_srcid failed\n" unless set_srcid($dst, 9, 'a', $rowid);
    ins($dst, 'q4m_t2', $v);
    return "$rowid:$v";
}
is(forward_one($F, $D), '1:101', 'forwarded source row 1');
push @t2, 101;
is(forward_one($F, $D), '2:102', 'forwarded source row 2 (row 1 consumed at the source)');
push @t2, 102;
$F->disconnect;    # the forwarder dies: source row 2 is released
$F = connect_db();
is(forward_one($F, $D), '2:102', 'a new forwarder gets source row 2 again');
check_t2('its second copy was dropped at the destination');
is(forward_one($F, $D), '3:103', 'then source row 3');
push @t2, 103;
is(val($F, 'SELECT queue_end()'), 1, 'queue_end at the source');
check_t2('the destination holds each source row once');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 0, 'the source is empty');

$dbh->do("DROP TABLE $_") for qw(q4m_t q4m_t2 q4m_t3);
done_testing();
