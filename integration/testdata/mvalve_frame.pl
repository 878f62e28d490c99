#!/usr/bin/env perl
# Prints Mvalve-framed messages for the Go tests (no database needed):
#   MSG <destination> <id> <BLOB>
# Usage: mvalve_frame.pl DEST:COUNT ...
use strict;
use warnings;
use FindBin;
use lib $FindBin::Bin;
use MvalveWire;

$| = 1;
for my $spec (@ARGV) {
    my ($dest, $n) = $spec =~ /\A([\w.-]+):(\d+)\z/ or die "bad spec '$spec'\n";
    for my $i (1 .. $n) {
        my $m = new_message(destination => $dest,
            content => { seq => $i, bytes => join('', map { chr(($i * 7 + $_) % 256) } 0 .. 255) });
        my $blob = frame($m);
        my $back = unframe($blob);
        die "frame does not round-trip\n" unless $back && $back->{id} eq $m->{id};
        print "MSG $dest $m->{id} $blob\n";
    }
}
