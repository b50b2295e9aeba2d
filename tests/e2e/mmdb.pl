#!/usr/bin/perl
# mmdb.pl OUT CIDR=CC... — writes a small MaxMind DB mapping each network to a country, for the
# country-rule tests (Debian's libmaxmind-db-writer-perl; loopback networks kept on purpose).
use strict;
use warnings;
use MaxMind::DB::Writer::Tree;

my $out = shift or die "usage: mmdb.pl OUT CIDR=CC...\n";
my %types = (country => 'map', iso_code => 'utf8_string');
my $tree = MaxMind::DB::Writer::Tree->new(
    ip_version              => 6,
    record_size             => 24,
    database_type           => 'fledge-test-country',
    languages               => ['en'],
    description             => { en => 'fledge test countries' },
    remove_reserved_networks => 0,
    map_key_type_callback   => sub { $types{ $_[0] } },
);
for my $pair (@ARGV) {
    my ($net, $cc) = split /=/, $pair;
    $tree->insert_network($net, { country => { iso_code => $cc } });
}
open my $fh, '>:raw', $out or die "$out: $!\n";
$tree->write_tree($fh);
close $fh;
