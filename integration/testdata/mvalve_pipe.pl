#!/usr/bin/env perl
# Mode A (no valve): Mvalve's Writer, Reader and logger statements (S1-S13
# of the Mvalve spec), sent as Mvalve 0.00014 over Queue::Q4M and DBI send
# them, against the server acting as a plain Q4M. Real Mvalve-framed BLOBs
# (Storable + Compress::Zlib + hex) go in; the Reader's three-table
# priority wait must hand them back byte for byte, emergency first, then
# due timed messages, then normal ones in FIFO order.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use Scalar::Util qw(looks_like_number);
use Q4MTest;
use MvalveWire;

my $writer = connect_db();    # Mvalve::Writer's queue connection
my $reader = connect_db();    # Mvalve::Reader's queue connection
my $logger = connect_db();    # Mvalve::Logger::Stats (no S1: lazy connect)

# S1: both Queue::Q4M->connect calls check the plugin version.
for my $c ([writer => $writer], [reader => $reader]) {
    my $v = plugin_version($c->[1]);
    ok(defined $v && looks_like_number($v) && $v >= 0.8,
        "$c->[0]: PLUGIN_VERSION is a number >= 0.8 (got " . ($v // 'undef') . ')');
}

# S13: mvalve create.
mvalve_create($writer);
ok($writer->{AutoCommit}, 'AutoCommit back on after mvalve create');
for my $t (qw(q_emerg q_timed q_incoming q_statslog)) {
    is(q4m_val($writer, "SELECT COUNT(*) FROM $t"), 0, "$t exists and is empty");
}
my %cols = (
    q_emerg    => [qw(destination message)],
    q_timed    => [qw(destination ready message)],
    q_incoming => [qw(destination message)],
    q_statslog => [qw(action destination logged_on)],
);
for my $t (sort keys %cols) {
    my $sth = $writer->prepare("SELECT * FROM $t");
    $sth->execute;
    is_deeply($sth->{NAME_lc}, $cols{$t}, "$t has Mvalve's columns in table order");
    $sth->finish;
}

# SQL::Abstract sorts the columns; 1.24 and 1.5x space them differently.
sub insert_sql {
    my ($table, $style, @cols) = @_;
    @cols = sort @cols;
    return "INSERT INTO $table ( " . join(', ', @cols) . ') VALUES ( '
        . join(', ', ('?') x @cols) . ' )'
        if $style eq 'new';
    return "INSERT INTO $table (" . join(', ', @cols) . ') VALUES ('
        . join(', ', ('?') x @cols) . ')';
}

# S8: the logger's row, on its own connection.
sub log_action {
    my ($action, $dest, $style) = @_;
    my $sql = $style eq 'new'
        ? 'INSERT INTO q_statslog ( action, destination, logged_on) VALUES ( ?, ?, CURRENT_TIMESTAMP )'
        : 'INSERT INTO q_statslog (action, destination, logged_on) VALUES (?, ?, CURRENT_TIMESTAMP)';
    is(q4m_do($logger, $sql, $action, $dest), 1, "S8 $action $dest ($style spacing)");
}

my (@sent, %by_id);
# enqueue is Mvalve::Writer::insert: serialize, log 'enqueue', insert.
# Style 'literal' splices the quoted values by hand (what the server gets
# from the placeholder forms anyway).
sub enqueue {
    my ($table, $style, $msg, $ready) = @_;
    my $blob = frame($msg);
    like($blob, qr/\A\^Storable\|\|\|hex\|Compress::Zlib\^789c[0-9a-f]+\z/,
        "BLOB of $msg->{id} is Mvalve's framing (zlib stream, lowercase hex)");
    my $dest = message_header($msg, 'X-Mvalve-Destination');
    log_action('enqueue', $dest, $style eq 'new' ? 'new' : 'old');
    my %v = (destination => $dest, message => $blob);
    $v{ready} = "$ready" if defined $ready;
    my @cols = sort keys %v;
    my $rv;
    if ($style eq 'literal') {
        my $sql = "INSERT INTO $table (" . join(', ', @cols) . ') VALUES ('
            . join(', ', map { $writer->quote($v{$_}) } @cols) . ')';
        like($sql, qr/VALUES \('[^']*', '\^Storable/, 'the literal INSERT quotes every value');
        $rv = q4m_do($writer, $sql);
    } else {
        $rv = q4m_do($writer, insert_sql($table, $style, @cols), map { $v{$_} } @cols);
    }
    is($rv, 1, "insert into $table ($style) affects 1 row");
    my $e = { table => $table, blob => $blob, msg => $msg, dest => $dest, ready => $ready };
    push @sent, $e;
    $by_id{ $msg->{id} } = $e;
    return $e;
}

my $now = now_ready();
my $n1 = enqueue('q_incoming', 'old', new_message(destination => 'test', content => 'hello, world'));
my $n2 = enqueue('q_incoming', 'new', new_message(destination => 'test2',
    content => { n => 300, list => [1, 2, 3], text => "caf\x{e9} \x{263a}" }));
my $n3 = enqueue('q_incoming', 'literal', new_message(destination => 'test',
    content => join('', map { chr } 0 .. 255)));
my $n4 = enqueue('q_incoming', 'new', new_message(destination => 'test'));    # no content key
my $e1 = enqueue('q_emerg', 'new', new_message(destination => 'test', content => 'emergency 1',
    headers => { 'X-Mvalve-Emergency' => 1, 'X-Mvalve-Duration' => 3 }));
my $e2 = enqueue('q_emerg', 'old', new_message(destination => 'test2', content => 'emergency 2',
    headers => { 'X-Mvalve-Emergency' => 1 }));
# A deferred message already due, and one due in an hour (never here).
my $t1 = enqueue('q_timed', 'new', new_message(destination => 'test', content => 'timed, due',
    headers => { 'X-Mvalve-Retry-Time' => $now - 100000 }), $now - 100000);
my $t2 = enqueue('q_timed', 'old', new_message(destination => 'test', content => 'timed, later',
    headers => { 'X-Mvalve-Retry-Time' => $now + 360000000 }), $now + 360000000);

is(q4m_val($writer, 'SELECT COUNT(*) FROM q_incoming'), 4, '4 normal messages queued');
is(q4m_val($writer, 'SELECT COUNT(*) FROM q_emerg'), 2, '2 emergency messages queued');
is(q4m_val($writer, 'SELECT COUNT(*) FROM q_timed'), 2, '2 timed messages queued');

# The Reader: S6 then S7, emergency first, then the due timed message (the
# one due in an hour is skipped), then the normal ones in FIFO order.
my @want = ($e1, $e2, $t1, $n1, $n2, $n3, $n4);
my @got_order;
for my $w (@want) {
    my ($idx, $table, $cond_now, $args) = q4m_next(dbh => $reader, timeout => 60);
    is(scalar(@$args), 4, 'queue_wait got 4 arguments (the timeout quoted, last)');
    is($table, $w->{table}, "queue_wait picks $w->{table} for $w->{msg}{id}")
        or diag("index " . ($idx // 'NULL'));
    next unless $table;
    my $row = q4m_fetch($reader, $table);
    ok($row, "SELECT * FROM $table returns the owned row") or next;
    is_deeply([sort keys %$row], [sort @{ $cols{$table} }], "$table row has Mvalve's columns");
    is($row->{destination}, $w->{dest}, 'destination column');
    is($row->{ready}, $w->{ready}, 'ready column round-trips as the integer sent') if $table eq 'q_timed';
    ok($row->{message} eq $w->{blob}, 'message column is byte-identical to the BLOB inserted')
        or diag("got " . length($row->{message}) . " bytes, want " . length($w->{blob}));
    my $m = unframe($row->{message});
    is(ref $m, 'Mvalve::Message', 'the BLOB thaws to an Mvalve::Message') or next;
    is(ref $m->{headers}, 'HTTP::Headers', 'with blessed HTTP::Headers');
    is_deeply($m, $w->{msg}, 'the message decodes back to the same id, headers and content');
    is(exists $m->{content}, exists $w->{msg}{content}, 'content key presence kept');
    push @got_order, $m->{id};
    log_action('dequeue', message_header($m, 'X-Mvalve-Destination'), 'new');
}
is_deeply(\@got_order, [map { $_->{msg}{id} } @want], 'emergency, then due timed, then normal FIFO');

# The hour-away timed message stays: a short wait times out.
my ($idx) = q4m_next(dbh => $reader, timeout => 1);
is($idx, 0, 'nothing else is due: queue_wait times out with 0');
is(q4m_val($writer, 'SELECT COUNT(*) FROM q_timed'), 1, 'the later timed message is still queued');
is(q4m_val($writer, 'SELECT COUNT(*) FROM q_incoming'), 0, 'all normal messages consumed');
is(q4m_val($writer, 'SELECT COUNT(*) FROM q_emerg'), 0, 'all emergency messages consumed');
# S10: Queue::Q4M disconnect.
is(q4m_val($reader, 'select queue_end()'), 1, 'select queue_end() returns 1');

# S11: a Reader destroyed between next and fetch aborts in eval: the row
# goes back for another reader.
my $e3 = enqueue('q_emerg', 'new', new_message(destination => 'test', content => 'emergency 3'));
($idx) = q4m_next(dbh => $reader, timeout => 60);
is($idx, 1, 'the reader owns the new emergency message');
my $abort = eval { q4m_val($reader, 'SELECT queue_abort()') };
ok(!$@, 'SELECT queue_abort() in owner mode succeeds') or diag($@);
my $other = connect_db();
($idx) = q4m_next(dbh => $other, timeout => 5);
is($idx, 1, 'the aborted message is there for another reader');
my $row = q4m_fetch($other, 'q_emerg');
ok($row && $row->{message} eq $e3->{blob}, 'same BLOB after the abort');
is(q4m_val($other, 'select queue_end()'), 1, 'consumed by the other reader');
my $ok = eval { q4m_val($reader, 'SELECT queue_abort()'); 1 };
ok(!$ok, 'SELECT queue_abort() outside owner mode fails (Mvalve ignores it in eval)');
like($reader->errstr // '', qr/not in owner mode/, 'error says not in owner mode');

# S12 on the logger's connection (never in owner mode).
is(q4m_val($logger, 'SELECT COUNT(*) FROM q_statslog WHERE action = ?', 'enqueue'),
    scalar(@sent), 'S12: one enqueue row per message written');
is(q4m_val($logger, 'SELECT COUNT(*) FROM q_statslog WHERE action = ?', 'dequeue'),
    scalar(@want), 'S12: one dequeue row per message read');
my $stamps = rows($logger, 'SELECT logged_on FROM q_statslog');
my @bad = grep { $_->[0] !~ /\A\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\z/ } @$stamps;
is_deeply(\@bad, [], 'logged_on holds CURRENT_TIMESTAMP values');

# S9: clear_all, then S10 and disconnect everywhere.
for my $t (qw(q_emerg q_timed q_incoming q_statslog)) {
    ok(defined q4m_do($writer, "DELETE FROM $t"), "DELETE FROM $t");
    is(q4m_val($writer, "SELECT COUNT(*) FROM $t"), 0, "$t is empty");
}
for my $dbh ($writer, $reader, $logger, $other) {
    is(q4m_val($dbh, 'select queue_end()'), 1, 'select queue_end() before disconnecting');
    $dbh->disconnect;
}
done_testing();
