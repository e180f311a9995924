//! How long does finding every subscription that wants one event take, as the
//! number of subscriptions grows?
//!
//! Generates N = 10 .. 10,000 subscriptions with varied patterns (exact
//! `source` / `detail-type`, prefixes, numeric ranges, `anything-but`,
//! `exists`, wildcards, `$or`, CIDRs, nested `detail` fields) and a set of
//! ~1 KB events from the same made-up shop, then times
//! `PatternSet::matches_into` per event (median of several runs), next to a
//! plain loop over every pattern for comparison.
//!
//! Run: `cargo run --release -j2 -p herald-core --example pattern_bench`

use std::hint::black_box;
use std::time::Instant;

use herald_core::pattern::{Pattern, PatternSet};
use serde_json::{Value, json};

const SIZES: [usize; 4] = [10, 100, 1_000, 10_000];
const EVENTS: usize = 256;
const RUNS: usize = 15;

const DOMAINS: [&str; 8] = ["shop", "billing", "logistics", "identity", "catalog", "support", "marketing", "risk"];
const SERVICES: [&str; 5] = ["orders", "payments", "inventory", "accounts", "notifications"];
const TYPES: [&str; 8] = [
    "OrderCreated",
    "OrderPaid",
    "OrderShipped",
    "OrderCancelled",
    "PaymentFailed",
    "RefundIssued",
    "StockLow",
    "AccountUpdated",
];
const STATUSES: [&str; 6] = ["pending", "paid", "shipped", "cancelled", "refunded", "failed"];
const TIERS: [&str; 4] = ["free", "silver", "gold", "platinum"];
const COUNTRIES: [&str; 8] = ["DE", "FR", "US", "GB", "JP", "BR", "IN", "NL"];

/// xorshift64*: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len())]
    }
}

fn source(rng: &mut Rng) -> String {
    format!("com.acme.{}.{}", rng.pick(&DOMAINS), rng.pick(&SERVICES))
}

fn event(rng: &mut Rng, n: usize) -> Value {
    let items: Vec<Value> = (0..2 + rng.below(4))
        .map(|i| {
            json!({
                "sku": format!("SKU-{:05}", rng.below(50_000)),
                "name": format!("Product number {i} in a fairly descriptive catalogue line"),
                "qty": 1 + rng.below(5),
                "price": (rng.below(20_000) as f64) / 100.0,
            })
        })
        .collect();
    json!({
        "version": "1",
        "id": format!("0193a5b2-7c1e-7000-8000-{n:012x}"),
        "detail-type": rng.pick(&TYPES),
        "source": source(rng),
        "account": "123456789012",
        "time": format!("2026-11-{:02}T{:02}:{:02}:00Z", 1 + rng.below(28), rng.below(24), rng.below(60)),
        "region": rng.pick(&["eu-central-1", "eu-west-1", "us-east-1", "ap-northeast-1"]),
        "resources": [format!("arn:herald:shop:orders/{}", rng.below(1_000_000))],
        "detail": {
            "orderId": format!("ord_{:08}", rng.below(100_000_000)),
            "status": rng.pick(&STATUSES),
            "amount": (rng.below(100_000) as f64) / 100.0,
            "currency": rng.pick(&["EUR", "USD", "GBP", "JPY"]),
            "customer": {
                "id": format!("cus_{:06}", rng.below(1_000_000)),
                "tier": rng.pick(&TIERS),
                "country": rng.pick(&COUNTRIES),
                "email": format!("user{}@example.{}", rng.below(10_000), rng.pick(&["com", "org", "de"])),
            },
            "items": items,
            "tags": [rng.pick(&["gift", "express", "b2b", "promo", "repeat"]), rng.pick(&["web", "app", "pos"])],
            "client": {
                "ip": format!("10.{}.{}.{}", rng.below(4), rng.below(256), rng.below(256)),
                "userAgent": "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)",
            },
        }
    })
}

/// One subscription's pattern; the mix is what a busy bus might hold.
fn pattern(rng: &mut Rng) -> Value {
    let src = source(rng);
    let dt = rng.pick(&TYPES);
    match rng.below(100) {
        // Exact source and detail-type: the bread and butter.
        0..=29 => json!({ "source": [src], "detail-type": [dt] }),
        // Exact source, numeric range on the amount.
        30..=44 => {
            let lo = rng.below(500);
            json!({ "source": [src], "detail": { "amount": [{ "numeric": [">=", lo, "<", lo + 100 + rng.below(400)] }] } })
        }
        // Exact source, a list of detail-types, nested customer fields.
        45..=54 => json!({
            "source": [src],
            "detail-type": [dt, rng.pick(&TYPES)],
            "detail": { "customer": { "tier": [rng.pick(&TIERS), rng.pick(&TIERS)], "country": [rng.pick(&COUNTRIES)] } }
        }),
        // Exact detail-type only, anything-but on the status.
        55..=64 => {
            json!({ "detail-type": [dt], "detail": { "status": [{ "anything-but": ["cancelled", "failed"] }] } })
        }
        // Source prefix (a whole domain), with an exists check: scanned.
        65..=72 => json!({
            "source": [{ "prefix": format!("com.acme.{}.", rng.pick(&DOMAINS)) }],
            "detail": { "customer": { "email": [{ "exists": true }] }, "refund": [{ "exists": false }] }
        }),
        // Exact source, wildcard detail-type, an item SKU prefix (array of objects).
        73..=79 => json!({
            "source": [src],
            "detail-type": [{ "wildcard": "Order*" }],
            "detail": { "items": { "sku": [{ "prefix": format!("SKU-{}", rng.below(10)) }] } }
        }),
        // $or of two conditions on top of an exact source.
        80..=89 => json!({
            "source": [src],
            "$or": [
                { "detail": { "amount": [{ "numeric": [">", 900] }] } },
                { "detail": { "customer": { "tier": ["platinum"] } } }
            ]
        }),
        // anything-but prefix on the source plus a numeric bound: scanned.
        90..=94 => json!({
            "source": [{ "anything-but": { "prefix": format!("com.acme.{}.", rng.pick(&DOMAINS)) } }],
            "detail-type": [{ "equals-ignore-case": dt.to_lowercase() }],
            "detail": { "amount": [{ "numeric": ["<", 10] }] }
        }),
        // Exact source, CIDR on the client address, tag membership.
        _ => json!({
            "source": [src],
            "detail": { "client": { "ip": [{ "cidr": format!("10.{}.0.0/16", rng.below(4)) }] }, "tags": ["b2b", "express"] }
        }),
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Median ns per event over `RUNS` runs of `f` over all events (after one warm-up run).
fn time_per_event(events: &[Value], mut f: impl FnMut(&Value) -> usize) -> (f64, usize) {
    let mut matches = 0;
    for e in events {
        matches += f(e);
    }
    let runs = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            for e in events {
                black_box(f(black_box(e)));
            }
            start.elapsed().as_nanos() as f64 / events.len() as f64
        })
        .collect();
    (median(runs), matches)
}

fn main() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!("machine: {cores} cores (nproc), {cpu}");
    println!("single-threaded; median of {RUNS} runs over {EVENTS} events; release build\n");

    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let events: Vec<Value> = (0..EVENTS).map(|n| event(&mut rng, n)).collect();
    let bytes: usize = events.iter().map(|e| serde_json::to_vec(e).map_or(0, |v| v.len())).sum();
    println!("events: {EVENTS}, mean size {} bytes\n", bytes / EVENTS);

    println!(
        "{:>7} {:>12} {:>14} {:>16} {:>14} {:>12}",
        "N", "compile µs", "indexed ns/ev", "linear scan ns/ev", "ns/ev/pattern", "matches/ev"
    );
    for n in SIZES {
        let jsons: Vec<Value> = (0..n).map(|_| pattern(&mut rng)).collect();
        let start = Instant::now();
        let patterns: Vec<Pattern> =
            jsons.iter().map(|p| Pattern::compile(p).expect("generated patterns are valid")).collect();
        let compile_us = start.elapsed().as_secs_f64() * 1e6;
        let set: PatternSet = patterns.iter().cloned().collect();

        let mut out = Vec::with_capacity(n);
        let (indexed, matched) = time_per_event(&events, |e| {
            set.matches_into(e, &mut out);
            out.len()
        });
        let (linear, linear_matched) = time_per_event(&events, |e| patterns.iter().filter(|p| p.matches(e)).count());
        assert_eq!(matched, linear_matched, "the index must not change the answer");
        println!(
            "{n:>7} {compile_us:>12.0} {indexed:>14.0} {linear:>16.0} {:>14.2} {:>12.2}",
            indexed / n as f64,
            matched as f64 / EVENTS as f64
        );
    }
}
