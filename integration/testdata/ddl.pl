#!/usr/bin/env perl
# TRUNCATE and DROP TABLE while rows are owned or a connection is waiting.
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use Test::More;
use POSIX ();
use Q4MTest;

my $A = connect_db();
my $B = connect_db();

# TRUNCATE without an owner.
fresh_table($A, 'q4m_t', 'v INT NOT NULL');
$A->do('INSERT INTO q4m_t (v) VALUES (1), (2), (3)');
ok(defined $B->do('TRUNCATE q4m_t'), 'TRUNCATE q4m_t (without TABLE)');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'empty after TRUNCATE');
is(val($A, 'SELECT COUNT(*) FROM q4m_t'), 0, 'COUNT(*) = 0');
$B->do('INSERT INTO q4m_t (v) VALUES (10), (11)');
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'queue_wait after TRUNCATE');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(10), 'owns row 10');
is(val($A, 'SELECT queue_rowid()'), 1, 'rowids restart at 1 after TRUNCATE');
is(val($A, 'SELECT queue_end()'), 1, 'queue_end');
$B->do('TRUNCATE TABLE q4m_t');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'TRUNCATE TABLE empties it too');

# TRUNCATE while A owns a row; then queue_end must not touch the new table,
# even though the new table's first row has the same rowid as A's.
$B->do('INSERT INTO q4m_t (v) VALUES (20), (21)');
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'A owns row 20');
is(val($A, 'SELECT queue_rowid()'), 1, 'rowid 1');
ok(defined $B->do('TRUNCATE q4m_t'), 'B: TRUNCATE while A owns a row');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'A: the owned row vanished');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), [], 'B: empty');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 0, 'B: COUNT(*) = 0 (the owned row is gone too)');
$B->do('INSERT INTO q4m_t (v) VALUES (30), (31)');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), [], 'A: still owner mode, new rows invisible');
is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(30, 31), 'queue_end deleted nothing in the new table');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(30, 31), 'A sees the new rows');

# Same with queue_abort: the old row must not come back.
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'A owns row 30');
is(val($A, 'SELECT queue_rowid()'), 1, 'rowid 1');
ok(defined $B->do('TRUNCATE q4m_t'), 'B: TRUNCATE while A owns a row');
$B->do('INSERT INTO q4m_t (v) VALUES (40)');
is(val($A, 'SELECT queue_abort()'), 1, 'A: queue_abort');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(40), 'queue_abort did not bring row 30 back');
is(val($B, 'SELECT COUNT(*) FROM q4m_t'), 1, 'COUNT(*) = 1');
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'A: queue_wait');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(40), 'A owns row 40');
is(val($A, 'SELECT queue_rowid()'), 1, 'its rowid is 1');
# TRUNCATE then a new wait by the former owner: the wait consumes nothing.
$B->do('INSERT INTO q4m_t (v) VALUES (41)');
ok(defined $B->do('TRUNCATE q4m_t'), 'B: TRUNCATE again');
$B->do('INSERT INTO q4m_t (v) VALUES (50), (51)');
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'A: queue_wait after the TRUNCATE');
is_deeply(rows($A, 'SELECT * FROM q4m_t'), col(50), 'A owns row 50');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(51), 'B sees row 51');
is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end');
is_deeply(rows($B, 'SELECT * FROM q4m_t'), col(51), 'only row 50 was consumed');

# DROP TABLE while a row is owned.
fresh_table($A, 'q4m_t', 'v INT NOT NULL');
$A->do('INSERT INTO q4m_t (v) VALUES (1), (2)');
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'A owns row 1');
ok(defined $B->do('DROP TABLE q4m_t'), 'B: DROP TABLE while A owns a row');
my $e = sql_error($A, 'SELECT * FROM q4m_t');
is($e && $e->[0], 1146, 'A: SELECT fails with 1146');
is($e && $e->[1], q{Table 'test.q4m_t' doesn't exist}, 'A: message');
$e = sql_error($B, 'SELECT * FROM q4m_t');
is($e && $e->[0], 1146, 'B: SELECT fails with 1146');
is_deeply(rows($B, q{SHOW TABLES LIKE 'q4m_t'}), [], q{SHOW TABLES LIKE 'q4m_t' is empty});
is_deeply(rows($A, q{SHOW TABLES LIKE 'q4m_t'}), [], 'also for A');
is(val($A, 'SELECT queue_end()'), 1, 'A: queue_end after the DROP returns 1');
is(val($A, 'SELECT 1'), 1, 'A: connection still works');
fresh_table($A, 'q4m_t', 'v INT NOT NULL');
$B->do('INSERT INTO q4m_t (v) VALUES (7)');
is(val($A, q{SELECT queue_wait('q4m_t', 1)}), 1, 'queue_wait on the re-created table');
is(val($A, 'SELECT queue_rowid()'), 1, 'rowids restart at 1 after DROP + CREATE');
is(val($A, 'SELECT queue_end()'), 1, 'queue_end');

# DROP TABLE while another connection waits on the table. The child first
# owns the only row of q4m_sig; its queue_wait on q4m_t consumes that row
# before blocking, so COUNT(*) on q4m_sig dropping to 0 shows that the wait
# has started.
fresh_table($A, 'q4m_t', 'v INT NOT NULL');
fresh_table($A, 'q4m_sig', 'v INT NOT NULL');
$A->do('INSERT INTO q4m_sig (v) VALUES (1)');
pipe(my $rd, my $wr) or die "pipe: $!";
my $pid = fork();
die "fork: $!" unless defined $pid;
if ($pid == 0) {
    close $rd;
    alarm 60;
    my $out = eval {
        my $c = connect_db();
        my $s = val($c, q{SELECT queue_wait('q4m_sig')});
        die "queue_wait('q4m_sig') = " . ($s // 'NULL') . "\n" unless defined $s && $s == 1;
        my $t0 = Time::HiRes::time();
        my $w = val($c, q{SELECT queue_wait('q4m_t', 10)});
        sprintf "%s %.3f\n", $w // 'NULL', elapsed_since($t0);
    } // "ERROR $@\n";
    print $wr $out;
    close $wr;
    POSIX::_exit(0);
}
close $wr;
my $deadline = Time::HiRes::time() + 60;
my $count;
while (($count = val($B, 'SELECT COUNT(*) FROM q4m_sig')) != 0 && Time::HiRes::time() < $deadline) {
    select(undef, undef, undef, 0.005);    # polling interval
}
is($count, 0, 'the child is inside queue_wait(q4m_t, 10)');
my $t0 = Time::HiRes::time();
ok(defined $B->do('DROP TABLE q4m_t'), 'DROP TABLE while a connection waits on it');
my $el = elapsed_since($t0);
# A DROP that waited for the waiter would end with its 10 s.
ok($el < 5, "DROP did not wait for the waiter (${el}s)");
my $line = <$rd>;
close $rd;
waitpid($pid, 0);
chomp($line //= 'no output');
my ($res, $wel) = split / /, $line;
is($res, 0, "the waiter returned 0 (child: $line)");
diag("waiter returned after ${wel}s") if defined $wel && $wel =~ /^[\d.]+$/;
is_deeply(rows($B, q{SHOW TABLES LIKE 'q4m_t'}), [], 'q4m_t is gone');

$A->do('DROP TABLE q4m_sig');
done_testing();
