#!/usr/bin/env perl
# Large rows (Q4M's 10-largedata, scaled down): LD_ROWS rows of 4 MB TEXT
# inserted and read back exactly (compared by checksum), a WHERE s != '<the
# 4 MB literal>' over them, and the server's max_allowed_packet (64 MB by
# default). Client side: DBD::mysql (as Debian builds it, on libmariadb) and
# DBD::MariaDB accept packets far larger than this by default, so the
# scripts set no client option.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Digest::MD5 qw(md5_hex);
use DBI qw(:sql_types);
use Q4MTest;

my $N = $ENV{LD_ROWS} || 8;
my $SIZE = 4 * 1024 * 1024;
my $dbh = connect_db();
my $other = connect_db();

is_deeply(rows($dbh, q{SHOW VARIABLES LIKE 'max_allowed_packet'}), [['max_allowed_packet', 67108864]],
    'the server says max_allowed_packet = 64 MB');
is(val($dbh, 'SELECT @@max_allowed_packet'), 67108864, '@@max_allowed_packet too');

# Rows 1 .. N-1 hold $L; row N holds $L2, which differs in its last byte.
my $L = substr('The quick brown fox jumps over the lazy dog; 0123456789. ' x ($SIZE / 50), 0, $SIZE);
(my $L2 = $L) =~ s/.\z/#/s;
my %md5 = (L => md5_hex($L), L2 => md5_hex($L2));
sub which { $_[0] == $N ? 'L2' : 'L' }

fresh_table($dbh, 'q4m_t', 'id INT NOT NULL, s LONGTEXT NOT NULL');
for my $id (1 .. $N) {
    my $v = $id == $N ? $L2 : $L;
    $dbh->do("INSERT INTO q4m_t (id, s) VALUES ($id, " . $dbh->quote($v) . ')');
}
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), $N, "$N rows of 4 MB inserted");

# Read everything back in one result set.
my $r = rows($other, 'SELECT id, s FROM q4m_t');
is_deeply([ map { [ $_->[0], length($_->[1]), md5_hex($_->[1]) ] } @$r ],
    [ map { [ $_, $SIZE, $md5{ which($_) } ] } 1 .. $N ],
    'SELECT id, s returns every row in order, each exactly as inserted (length and MD5)');
is_deeply(rows($other, 'SELECT id, LENGTH(s) FROM q4m_t WHERE id = 1'), [[1, $SIZE]], 'LENGTH(s) = 4 MB');
undef $r;

# WHERE with the 4 MB literal.
my $lit = $dbh->quote($L);
is(val($other, "SELECT COUNT(*) FROM q4m_t WHERE s != $lit"), 1,
    q{SELECT COUNT(*) FROM q4m_t WHERE s != '<4 MB literal>' = 1 (only the last row differs)});
is_deeply(rows($other, "SELECT id FROM q4m_t WHERE s = $lit"), col(1 .. $N - 1),
    "... and WHERE s = it gives rows 1 .. " . ($N - 1));

# Consume them, checking each.
my @bad;
for my $id (1 .. $N) {
    my $w = val($dbh, q{SELECT queue_wait('q4m_t', 5)});
    my $row = rows($dbh, 'SELECT id, s FROM q4m_t');
    my $rowid = val($dbh, 'SELECT queue_rowid()');
    push @bad, "wait $id: queue_wait=" . ($w // 'NULL') . ' rows=' . scalar(@$row) . ' rowid=' . ($rowid // 'NULL')
        unless defined $w && $w == 1 && @$row == 1 && $row->[0][0] == $id
        && md5_hex($row->[0][1]) eq $md5{ which($id) } && $rowid == $id;
}
is_deeply(\@bad, [], 'consumed in order, contents intact') or diag(join "\n", @bad);
is(val($dbh, 'SELECT queue_end()'), 1, 'queue_end');
is(val($other, 'SELECT COUNT(*) FROM q4m_t'), 0, 'empty');

# A 4 MB binary value: every byte value, quotes and backslashes included.
fresh_table($dbh, 'q4m_t2', 'b LONGBLOB NOT NULL');
my $bin = substr(join('', map { chr } 0 .. 255) x ($SIZE / 256 + 1), 7, $SIZE);
# Quoted as binary: DBD::MariaDB would otherwise send the string as UTF-8.
$dbh->do('INSERT INTO q4m_t2 (b) VALUES (' . $dbh->quote($bin, SQL_BLOB) . ')');
my $got = val($other, 'SELECT b FROM q4m_t2');
is(length($got), $SIZE, 'a 4 MB LONGBLOB reads back with its length');
is(md5_hex($got), md5_hex($bin), 'and its bytes');

$dbh->do('DROP TABLE q4m_t');
$dbh->do('DROP TABLE q4m_t2');
done_testing();
