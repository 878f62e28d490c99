package MvalveWire;

# What Mvalve 0.00014 (with Queue::Q4M and DBD::mysql underneath) puts on the
# wire, rebuilt from the Mvalve spec (/work/shared/spec/mvalve.md, sections
# 1.2-1.3 and 2.3) for the mvalve_*.pl scripts. Mvalve itself is not used
# (it does not run on a current Perl); these helpers send the same
# statements the same way:
#
#   - every statement through a handle is preceded by a COM_PING
#     (Queue::Q4M's dbh accessor pings first);
#   - values are bound with DBD placeholders, which the drivers splice in
#     on the client as quoted string literals (numbers included);
#   - message BLOBs are Data::Serializer's framing of the message object:
#     "^Storable|||hex|Compress::Zlib^" . hex(zlib(Storable::nfreeze($msg))).

use strict;
use warnings;
use Exporter 'import';
use Storable ();
use Compress::Zlib ();
use Digest::SHA ();
use POSIX ();
use Time::HiRes ();

our @EXPORT = qw(TOKEN new_message message_header frame unframe now_ready
    plugin_version q4m_do q4m_val q4m_next q4m_fetch mvalve_create
    MVALVE_DDL);

use constant TOKEN => '^Storable|||hex|Compress::Zlib^';

# The four tables as "mvalve create" makes them: ENGINE=QUEUE DEFAULT
# CHARSET=utf8, each statement with a trailing ';'.
use constant MVALVE_DDL => (
    "CREATE TABLE q_emerg (\n"
        . "    destination VARCHAR(40) NOT NULL,\n"
        . "    message BLOB NOT NULL\n"
        . ") ENGINE=QUEUE DEFAULT CHARSET=utf8;",
    "CREATE TABLE q_timed (\n"
        . "    destination VARCHAR(40) NOT NULL,\n"
        . "    ready BIGINT NOT NULL,\n"
        . "    message BLOB NOT NULL\n"
        . ") ENGINE=QUEUE DEFAULT CHARSET=utf8;",
    "CREATE TABLE q_incoming (\n"
        . "    destination VARCHAR(40) NOT NULL,\n"
        . "    message BLOB NOT NULL\n"
        . ") ENGINE=QUEUE DEFAULT CHARSET=utf8;",
    "CREATE TABLE q_statslog (\n"
        . "    action VARCHAR(40) NOT NULL,\n"
        . "    destination VARCHAR(40) NOT NULL,\n"
        . "    logged_on TIMESTAMP NOT NULL\n"
        . ") ENGINE=QUEUE DEFAULT CHARSET=utf8;",
);

my $seq = 0;

# new_message(destination => D, content => C, headers => {Name => value})
# returns a blessed hash shaped like an Mvalve::Message: id, headers (a
# blessed HTTP::Headers-style hash with lowercased, '-'-separated field
# names) and content (absent when not given, as Moose leaves it).
sub new_message {
    my (%a) = @_;
    my %h;
    $h{'x-mvalve-destination'} = $a{destination} if defined $a{destination};
    for my $k (keys %{ $a{headers} || {} }) {
        (my $f = lc $k) =~ tr/_/-/;
        $h{$f} = $a{headers}{$k};
    }
    my $now = Time::HiRes::time();
    my ($frac) = sprintf('%.5f', $now) =~ /\.(\d+)$/;
    my $id = $a{id} // POSIX::strftime('%Y%m%d%H%M%S', localtime(int $now))
        . ".$frac-" . Digest::SHA::sha1_hex(join ':', $$, $now, rand(), ++$seq);
    my $m = { id => $id, headers => bless(\%h, 'HTTP::Headers') };
    $m->{content} = $a{content} if exists $a{content};
    return bless $m, 'Mvalve::Message';
}

# message_header returns a header the way HTTP::Headers::header does in
# scalar context (several values joined with ", ").
sub message_header {
    my ($m, $name) = @_;
    (my $f = lc $name) =~ tr/_/-/;
    my $v = $m->{headers}{$f};
    return ref $v eq 'ARRAY' ? join(', ', @$v) : $v;
}

# frame serializes a message as Mvalve::Message::SERIALIZER does.
sub frame {
    my ($m) = @_;
    my $z = Compress::Zlib::compress(Storable::nfreeze($m));
    die "compress failed\n" unless defined $z;
    return TOKEN . unpack('H*', $z);
}

# unframe is the reverse (Data::Serializer's deserialize): it reads the
# token, un-hexes, uncompresses and thaws. It returns undef for a BLOB that
# is not such a frame.
sub unframe {
    my ($blob) = @_;
    return undef unless defined $blob && $blob =~ /^\^([^\^]{1,120}?)\^/;
    my ($ser, $cipher, $digester, $enc, $comp) = split /\|/, $1, -1;
    return undef unless ($ser // '') eq 'Storable' && !$cipher && !$digester;
    my $body = substr($blob, length($1) + 2);
    if (lc($enc // '') eq 'hex') {
        return undef if $body =~ /[^0-9a-fA-F]/;
        $body = pack('H*', $body);
    }
    if ($comp) {
        $body = Compress::Zlib::uncompress($body);
        return undef unless defined $body;
    }
    return Storable::thaw($body);
}

# now_ready is Mvalve's clock for q_timed.ready: units of 10 us.
sub now_ready {
    my ($offset) = @_;
    return int((Time::HiRes::time() + ($offset || 0)) * 100000);
}

sub ping_first {
    my ($dbh) = @_;
    $dbh->ping or die "COM_PING failed: " . ($dbh->errstr // 'no error') . "\n";
}

# plugin_version is Queue::Q4M->connect's check (S1): the query comes from a
# heredoc, so it starts with a newline and indentation.
sub plugin_version {
    my ($dbh) = @_;
    ping_first($dbh);
    my $sql = <<'EOSQL';

        SELECT PLUGIN_VERSION from information_schema.plugins WHERE plugin_name = 'QUEUE'
EOSQL
    my $rows = $dbh->selectall_arrayref($sql);
    die "plugin check: expected one row, got " . scalar(@$rows) . "\n"
        unless @$rows == 1;
    return $rows->[0][0];
}

# q4m_do runs a statement with placeholders (ping first), and returns
# DBI's do() result.
sub q4m_do {
    my ($dbh, $sql, @bind) = @_;
    ping_first($dbh);
    return $dbh->do($sql, undef, @bind);
}

# q4m_val returns the first column of the first row.
sub q4m_val {
    my ($dbh, $sql, @bind) = @_;
    ping_first($dbh);
    my @r = $dbh->selectrow_array($sql, undef, @bind);
    return $r[0];
}

# q4m_next is Mvalve::Reader::next's queue_wait (S6): the emergency tables,
# the timed table with the condition ready<NOW (NOW taken now, in 10 us
# units), the normal tables, then the timeout, quoted, and only when it is
# > 0. It returns (index, table name or undef, NOW, the arguments).
sub q4m_next {
    my (%o) = @_;
    my $dbh = $o{dbh};
    my @emerg = @{ $o{emergency} || ['q_emerg'] };
    my $timed = $o{timed} // 'q_timed';
    my @normal = @{ $o{normal} || ['q_incoming'] };
    my $timeout = $o{timeout} // 60;
    my $now = $o{now} // now_ready();
    my @tables = (@emerg, $timed, @normal);
    my @args = (@emerg, "$timed:ready<$now", @normal);
    push @args, "$timeout" if $timeout > 0;
    my $sql = 'SELECT queue_wait(' . join(',', ('?') x @args) . ')';
    ping_first($dbh);
    my ($idx) = $dbh->selectrow_array($sql, undef, @args);
    return ($idx, ($idx ? $tables[$idx - 1] : undef), $now, \@args);
}

# q4m_fetch reads the owned row of a table (S7) with fetchrow_hashref, as
# Queue::Q4M's fetch_hashref does; undef when there is no row.
sub q4m_fetch {
    my ($dbh, $table) = @_;
    ping_first($dbh);
    my $sth = $dbh->prepare("SELECT * FROM $table");
    $sth->execute;
    my $h = $sth->fetchrow_hashref;
    my $more = $sth->fetchrow_hashref;
    $sth->finish;
    die "SELECT * FROM $table returned more than one row in owner mode\n"
        if $more;
    return $h ? {%$h} : undef;
}

# mvalve_create is "mvalve create" (S13): the four CREATE TABLEs on a
# connection with AutoCommit off (the driver sends set autocommit=0), then
# commit, then AutoCommit back on (set autocommit=1).
sub mvalve_create {
    my ($dbh) = @_;
    $dbh->{AutoCommit} = 0;
    for my $ddl (MVALVE_DDL) {
        ping_first($dbh);
        $dbh->do($ddl);
    }
    $dbh->commit;
    $dbh->{AutoCommit} = 1;
}

1;
