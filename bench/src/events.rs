//! The `--wire` benchmark's data: web-access events, deterministic (event `i` is always the
//! same), as TUPLE values (12 fields of mixed types) or as JSON documents for a BLOB topic. The
//! values come from skewed picks over small vocabularies plus numbers and ids, so that they
//! compress like real event data: neither constant nor random.

use serde_json::json;
use sluice_proto::{Field, FieldType, RecordSchema, Value};

/// splitmix64: deterministic, so every run reads the same data.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// Small indexes far more often than large ones (roughly Zipf-like popularity).
    fn skewed(&mut self, n: usize) -> usize {
        let u = self.unit();
        ((u * u * u) * n as f64) as usize % n
    }
    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.skewed(items.len())]
    }
}

const PATHS: &[&str] = &[
    "/api/v1/products",
    "/api/v1/cart",
    "/api/v1/orders",
    "/api/v2/search",
    "/api/v1/users/me",
    "/static/js/app.bundle.js",
    "/static/css/main.css",
    "/login",
    "/checkout",
    "/api/v1/reviews",
    "/api/v1/recommendations",
    "/images/thumb",
    "/api/v1/inventory",
    "/logout",
    "/health",
];
const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:132.0) Gecko/20100101 Firefox/132.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "okhttp/4.12.0",
    "python-requests/2.32.3",
    "Go-http-client/1.1",
];
const LEVELS: &[&str] = &["INFO", "INFO", "INFO", "INFO", "WARN", "ERROR", "DEBUG"];
const METHODS: &[&str] = &["GET", "GET", "GET", "POST", "PUT", "DELETE"];
const WORDS: &[&str] = &[
    "request",
    "completed",
    "user",
    "order",
    "cart",
    "item",
    "added",
    "removed",
    "payment",
    "authorized",
    "declined",
    "retry",
    "timeout",
    "upstream",
    "cache",
    "miss",
    "hit",
    "session",
    "expired",
    "token",
    "refreshed",
    "inventory",
    "reserved",
    "released",
    "shipment",
    "created",
    "search",
    "query",
    "returned",
    "results",
    "slow",
    "database",
    "connection",
    "pool",
    "exhausted",
    "recommendation",
    "served",
    "from",
    "model",
    "fallback",
    "to",
    "default",
    "price",
    "updated",
    "for",
    "sku",
    "warehouse",
    "stock",
    "low",
    "customer",
    "notified",
    "email",
    "queued",
    "sent",
    "failed",
    "validation",
    "error",
    "field",
    "missing",
    "address",
    "coupon",
    "applied",
    "rejected",
    "rate",
    "limit",
    "exceeded",
    "client",
    "ip",
    "region",
    "eu-central-1",
    "us-east-1",
    "ap-southeast-1",
    "checkout",
    "started",
    "abandoned",
    "in",
    "ms",
    "after",
    "attempts",
    "with",
    "status",
    "the",
    "a",
    "of",
    "and",
    "on",
    "by",
];

/// The TUPLE topic's schema (web-access events).
pub fn schema() -> RecordSchema {
    let f = |name: &str, t: FieldType| Field {
        name: name.to_string(),
        field_type: t,
        comment: String::new(),
        not_null: false,
    };
    RecordSchema {
        fields: vec![
            f("event_time", FieldType::Timestamp),
            f("user_id", FieldType::Bigint),
            f("session_id", FieldType::String),
            f("level", FieldType::String),
            f("method", FieldType::String),
            f("url", FieldType::String),
            f("status", FieldType::Integer),
            f("latency_ms", FieldType::Double),
            f("bytes_sent", FieldType::Bigint),
            f("cache_hit", FieldType::Boolean),
            f("user_agent", FieldType::String),
            f("message", FieldType::String),
        ],
    }
}

/// Event number `i` (the same `i` gives the same event).
pub fn event(i: u64) -> Vec<Value> {
    let mut r = Rng(i.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x5EED);
    let user = 10_000 + r.skewed(50_000) as i64;
    let session = format!(
        "{:016x}",
        (user as u64).wrapping_mul(0x9E37_79B9) ^ (i / 40)
    );
    let path = r.pick(PATHS);
    let url = match r.below(3) {
        0 => path.to_string(),
        1 => format!("{path}/{}", 1000 + r.skewed(90_000)),
        _ => format!(
            "{path}?page={}&sort={}",
            1 + r.skewed(20),
            ["price", "rating", "new"][r.below(3)]
        ),
    };
    let status = [200, 200, 200, 200, 200, 200, 200, 304, 302, 404, 500][r.skewed(11)];
    let latency_us = ((r.unit().powi(3) * 900.0 + r.unit() * 20.0 + 0.5) * 1000.0).round();
    let words = 6 + r.below(10);
    let message = (0..words)
        .map(|_| r.pick(WORDS))
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        Value::Int(1_764_460_800_000_000 + i as i64 * 997 + r.below(500) as i64),
        Value::Int(user),
        Value::Str(session),
        Value::Str(r.pick(LEVELS).to_string()),
        Value::Str(r.pick(METHODS).to_string()),
        Value::Str(url),
        Value::Int(status),
        Value::Double(latency_us / 1000.0),
        Value::Int(200 + r.skewed(2_000_000) as i64),
        Value::Bool(r.below(3) == 0),
        Value::Str(r.pick(AGENTS).to_string()),
        Value::Str(message),
    ]
}

/// The same event as a JSON document (the BLOB topic's records).
pub fn event_json(i: u64, schema: &RecordSchema) -> Vec<u8> {
    let mut doc = serde_json::Map::new();
    for (field, v) in schema.fields.iter().zip(event(i)) {
        let j = match v {
            Value::Int(n) => json!(n),
            Value::Double(d) => json!(d),
            Value::Bool(b) => json!(b),
            Value::Str(s) => json!(s),
            _ => json!(null),
        };
        doc.insert(field.name.clone(), j);
    }
    serde_json::to_vec(&doc).unwrap_or_default()
}
