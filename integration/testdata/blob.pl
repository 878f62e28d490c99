#!/usr/bin/env perl
# Large TEXT and binary BLOB values round-trip exactly, through 20-row
# multi-INSERTs with placeholders, SELECT, the consume loop and DELETE LIMIT.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use DBI qw(:sql_types);
use Q4MTest;

my $dbh = connect_db();

# diff describes where two byte strings first differ ('' when equal).
sub diff {
    my ($got, $want) = @_;
    return 'got NULL' unless defined $got;
    return '' if $got eq $want;
    my $i = 0;
    $i++ while $i < length($got) && $i < length($want)
        && substr($got, $i, 1) eq substr($want, $i, 1);
    return sprintf 'length %d, want %d; first difference at byte %d', length($got), length($want), $i;
}

# Deterministic text with the characters SQL escaping cares about.
my @alphabet = ('a' .. 'z', 'A' .. 'Z', '0' .. '9', ' ', "'", '"', '\\', "\n", "\t", '%', '_', ';', '`');
sub text_of {
    my ($id, $len) = @_;
    my $s = '';
    my $x = $id * 7919 + 1;
    while (length($s) < $len) {
        $x = ($x * 1103515245 + 12345) % 2147483648;
        $s .= $alphabet[ ($x >> 16) % @alphabet ];
    }
    return $s;
}

# MEDIUMTEXT rows from 500 bytes to 50 KB, inserted 20 per statement.
fresh_table($dbh, 'q4m_t', 'id INT NOT NULL, s MEDIUMTEXT NOT NULL');
my $ROWS = 100;
my %text = map { $_ => text_of($_, $_ * 500) } 1 .. $ROWS;
my $ins20 = $dbh->prepare('INSERT INTO q4m_t (id, s) VALUES ' . join(',', ('(?, ?)') x 20));
for (my $first = 1; $first <= $ROWS; $first += 20) {
    $ins20->execute(map { ($_, $text{$_}) } $first .. $first + 19);
}
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t'), $ROWS, "$ROWS rows inserted by 20-row INSERTs");
my $all = rows($dbh, 'SELECT id, s FROM q4m_t');
is_deeply([ map { $_->[0] } @$all ], [ 1 .. $ROWS ], 'ids in insertion order');
my @bad = map { my $d = diff($_->[1], $text{ $_->[0] }); $d ? "id $_->[0]: $d" : () } @$all;
is_deeply(\@bad, [], 'every MEDIUMTEXT value round-trips exactly') or diag(join "\n", @bad);
is(val($dbh, 'SELECT LENGTH(s) FROM q4m_t WHERE id = 100'), 50000, 'LENGTH(s) of the 50 KB row');
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t WHERE s = ?', $text{37}), 1, 'WHERE s = <long literal>');

# DELETE ... LIMIT 20 removes ids 1..20.
is($dbh->do('DELETE FROM q4m_t LIMIT 20'), 20, 'DELETE LIMIT 20');
is_deeply(rows($dbh, 'SELECT id FROM q4m_t'), col(21 .. $ROWS), 'ids 21..100 left');

# Consume the rest one by one.
@bad = ();
for my $id (21 .. $ROWS) {
    my $w = val($dbh, q{SELECT queue_wait('q4m_t', 1)});
    my $r = rows($dbh, 'SELECT id, s FROM q4m_t');
    my $d = @$r == 1 ? ($r->[0][0] == $id ? diff($r->[0][1], $text{$id}) : "id $r->[0][0]")
                     : scalar(@$r) . ' rows';
    push @bad, "id $id: queue_wait=" . ($w // 'NULL') . " $d" if !defined $w || $w != 1 || $d;
}
is_deeply(\@bad, [], 'consume loop returns each text row intact') or diag(join "\n", @bad);
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($dbh, 'SELECT COUNT(*) FROM q4m_t'), 0, 'all consumed');

# MEDIUMBLOB: every byte value on its own, plus one ~40 KB row holding all
# 256 values many times over, bound as binary.
fresh_table($dbh, 'q4m_b', 'id INT NOT NULL, b MEDIUMBLOB');
my %blob = map { $_ => chr($_) } 0 .. 255;
$blob{256} = join('', map { chr } 0 .. 255) x 160;
$blob{257} = join('', map { chr(255 - $_) . chr($_) } 0 .. 255);
$blob{258} = '';
my @ids = (0 .. 258, 259);    # 259 is NULL
$blob{259} = undef;
my $sth = $dbh->prepare('INSERT INTO q4m_b (id, b) VALUES ' . join(',', ('(?, ?)') x 20));
for (my $i = 0; $i < @ids; $i += 20) {
    my @chunk = @ids[$i .. $i + 19];
    my $p = 1;
    for my $id (@chunk) {
        $sth->bind_param($p++, $id, SQL_INTEGER);
        $sth->bind_param($p++, $blob{$id}, SQL_BLOB);
    }
    $sth->execute;
}
is(val($dbh, 'SELECT COUNT(*) FROM q4m_b'), scalar(@ids), scalar(@ids) . ' blob rows');
$all = rows($dbh, 'SELECT id, b FROM q4m_b');
is_deeply([ map { $_->[0] } @$all ], \@ids, 'blob ids in insertion order');
@bad = ();
for my $r (@$all) {
    my $want = $blob{ $r->[0] };
    if (!defined $want) {
        push @bad, "id $r->[0]: want NULL" if defined $r->[1];
        next;
    }
    my $d = diff($r->[1], $want);
    push @bad, "id $r->[0]: $d" if $d;
}
is_deeply(\@bad, [], 'every MEDIUMBLOB value round-trips byte for byte') or diag(join "\n", @bad);
is(val($dbh, 'SELECT LENGTH(b) FROM q4m_b WHERE id = 256'), 256 * 160, 'LENGTH(b) of the big blob');
is(val($dbh, 'SELECT LENGTH(b) FROM q4m_b WHERE id = 0'), 1, 'the NUL byte is one byte');

# Consume a few blob rows through owner mode.
for my $id (0, 1, 2) {
    is(val($dbh, q{SELECT queue_wait('q4m_b', 1)}), 1, "queue_wait for blob $id");
    my $r = rows($dbh, 'SELECT id, b FROM q4m_b');
    ok(@$r == 1 && $r->[0][0] == $id && defined $r->[0][1] && $r->[0][1] eq $blob{$id},
        "owner sees blob row $id intact");
}
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($dbh, 'SELECT COUNT(*) FROM q4m_b'), scalar(@ids) - 3, 'three blob rows consumed');

$dbh->do('DROP TABLE q4m_t');
$dbh->do('DROP TABLE q4m_b');
done_testing();
