//! Decoding a full table: 1,000,000 IPv4 /24 prefixes packed into full-size UPDATEs (about
//! 1,000 prefixes per 4,096-octet message, as BIRD and GoBGP send a large table), decoded
//! one message at a time from one stream buffer the way a session reads its socket.
//!
//! `cargo bench -p twill-bgpd --bench codec`; figures go to bench-results/codec.md.

use std::net::Ipv4Addr;

use bytes::BytesMut;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};
use twill_bgpd::packet::{
    AsSegment, DecodeCxt, Message, Origin, PathAttributes, decode_message, pack_updates,
};

const PREFIXES: u32 = 1_000_000;

fn table() -> (BytesMut, usize) {
    let prefixes: Vec<IpNet> = (0..PREFIXES)
        .map(|i| {
            // 1M distinct /24s from 1.0.0.0 upwards.
            let addr = Ipv4Addr::from((1u32 << 24) + (i << 8));
            IpNet::V4(Ipv4Net::new(addr, 24).unwrap_or_default())
        })
        .collect();
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![AsSegment::Sequence(vec![65002, 4_200_000_001])],
        next_hop: Some(Ipv4Addr::new(192, 0, 2, 2)),
        med: Some(10),
        communities: vec![(65002 << 16) | 5],
        ..PathAttributes::default()
    };
    let mut buf = BytesMut::new();
    let messages = pack_updates(&attrs, &prefixes, &[], &DecodeCxt::default(), &mut buf);
    (buf, messages)
}

fn decode_all(stream: &BytesMut) -> usize {
    let mut buf = stream.clone();
    let cxt = DecodeCxt::default();
    let mut prefixes = 0;
    while let Ok(Some(msg)) = decode_message(&mut buf, &cxt) {
        if let Message::Update(u) = msg {
            prefixes += u.nlri.len();
        }
    }
    prefixes
}

fn bench(c: &mut Criterion) {
    let (stream, messages) = table();
    assert_eq!(decode_all(&stream), PREFIXES as usize);
    eprintln!(
        "{messages} UPDATEs, {} octets, {:.0} prefixes per UPDATE",
        stream.len(),
        f64::from(PREFIXES) / messages as f64
    );
    let mut group = c.benchmark_group("decode");
    group.sample_size(20);
    group.throughput(Throughput::Elements(u64::from(PREFIXES)));
    group.bench_function("1M IPv4 prefixes in full UPDATEs", |b| {
        b.iter(|| decode_all(&stream))
    });
    group.finish();

    let mut group = c.benchmark_group("encode");
    group.sample_size(20);
    group.throughput(Throughput::Elements(u64::from(PREFIXES)));
    let prefixes: Vec<IpNet> = (0..PREFIXES)
        .map(|i| {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from((1u32 << 24) + (i << 8)), 24).unwrap_or_default())
        })
        .collect();
    let attrs = PathAttributes {
        origin: Some(Origin::Igp),
        as_path: vec![AsSegment::Sequence(vec![65002])],
        next_hop: Some(Ipv4Addr::new(192, 0, 2, 2)),
        ..PathAttributes::default()
    };
    group.bench_function("1M IPv4 prefixes with pack_updates", |b| {
        b.iter(|| {
            let mut buf = BytesMut::with_capacity(4_200_000);
            pack_updates(&attrs, &prefixes, &[], &DecodeCxt::default(), &mut buf)
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
