//! The per-request hot path without sockets: frame, parse and answer `TIME` requests.
//! Run with `cargo bench --bench hot_path`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use jam::clock::{LocalClock, SystemClock};
use jam::protocol::Request;
use jam::responder::Responder;
use jiff::tz::TimeZone;
use tracing::Span;

fn hot_path(c: &mut Criterion) {
    let clock = LocalClock::new(
        Arc::new(SystemClock),
        TimeZone::get("Asia/Jakarta").expect("zone"),
    );
    let mut group = c.benchmark_group("respond");
    for depth in [1usize, 16] {
        let input = b"TIME\r\n".repeat(depth);
        let mut responder = Responder::new(1024, Span::none());
        let mut out = Vec::with_capacity(64 * 1024);
        group.throughput(Throughput::Elements(depth as u64));
        group.bench_function(format!("{depth} TIME per read"), |b| {
            b.iter(|| {
                out.clear();
                let batch = responder.respond(black_box(&input), &mut out, &clock, 64 * 1024);
                black_box((batch, out.len()))
            })
        });
    }
    group.finish();
    c.bench_function("parse TIME", |b| {
        b.iter(|| Request::parse(black_box(b" time ")))
    });
    c.bench_function("local time of day (cached)", |b| {
        b.iter(|| black_box(clock.time_of_day()))
    });
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
