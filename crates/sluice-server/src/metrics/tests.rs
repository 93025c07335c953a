//! Unit tests of the recorders, the series cap and the `/proc` parser.

use super::process::parse_stat;
use super::*;

fn topic(uid: i64, name: &str) -> Topic {
    Topic {
        uid,
        project: "p".into(),
        name: name.into(),
        record_type: crate::service::catalog::RecordType::Blob,
        expand_mode: String::new(),
        create_time: 0,
        dir: std::path::PathBuf::new(),
        meta: RwLock::new(crate::service::catalog::TopicMeta {
            lifecycle_days: 1,
            comment: String::new(),
            last_modify_time: 0,
            schemas: vec![],
            current_version: 0,
        }),
        shards: RwLock::new(vec![]),
        topology: tokio::sync::RwLock::new(()),
    }
}

fn text(m: &Metrics) -> String {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
    out
}

#[test]
fn puts_and_gets_count_records_and_bytes_per_topic() {
    let m = Metrics::build(true, 100);
    let t = topic(1, "t1");
    m.note_put(&t, 3, 30);
    m.note_put(&t, 2, 20);
    m.note_get(&t, 4, 44);
    let out = text(&m);
    assert!(
        out.contains(r#"sluice_topic_records_in_total{project="p",topic="t1"} 5"#),
        "{out}"
    );
    assert!(out.contains(r#"sluice_topic_in_bytes_total{project="p",topic="t1"} 50"#));
    assert!(out.contains(r#"sluice_topic_records_out_total{project="p",topic="t1"} 4"#));
    assert!(out.contains(r#"sluice_topic_out_bytes_total{project="p",topic="t1"} 44"#));
}

#[test]
fn recording_off_records_nothing() {
    let m = Arc::new(Metrics::build(false, 100));
    m.note_put(&topic(1, "t1"), 3, 30);
    let mut timer = m.timer();
    timer.put(Protocol::Json);
    drop(timer);
    let out = text(&m);
    assert!(!out.contains("t1"), "{out}");
    assert!(
        out.contains(r#"sluice_put_duration_seconds_count{protocol="json"} 0"#),
        "{out}"
    );
}

#[test]
fn the_series_cap_refuses_new_topics_and_counts_them_once() {
    // Room for one topic's four series only.
    let m = Metrics::build(true, TOPIC_SERIES);
    let (a, b) = (topic(1, "a"), topic(2, "b"));
    m.note_put(&a, 1, 1);
    m.note_put(&b, 1, 1);
    m.note_put(&b, 1, 1);
    let out = text(&m);
    assert!(out.contains(r#"topic="a""#));
    assert!(!out.contains(r#"topic="b""#), "{out}");
    assert!(
        out.contains("sluice_metrics_dropped_series_total 1"),
        "{out}"
    );
    assert_eq!(m.series_left(), 0);
}

#[test]
fn the_timer_records_latency_by_protocol() {
    let m = Arc::new(Metrics::build(true, 100));
    let mut timer = m.timer();
    timer.get(Protocol::Batch);
    drop(timer);
    // Not told what the request was (an error before the action was known): not recorded.
    drop(m.timer());
    let out = text(&m);
    assert!(
        out.contains(r#"sluice_get_duration_seconds_count{protocol="batch"} 1"#),
        "{out}"
    );
    for protocol in ["json", "protobuf", "batch"] {
        let put = format!(r#"sluice_put_duration_seconds_count{{protocol="{protocol}"}} 0"#);
        assert!(out.contains(&put), "{out}");
    }
}

#[test]
fn proc_stat_is_parsed_past_a_command_with_spaces_and_parentheses() {
    let stat = "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 150 0 0 20 0 9 0 \
                1000 123456789 2000 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0";
    let st = parse_stat(stat, 100.0, 4096, 1_700_000_000.0).unwrap();
    assert_eq!(st.cpu_seconds, 4.0);
    assert_eq!(st.start_time_seconds, 1_700_000_010.0);
    assert_eq!(st.virtual_bytes, 123_456_789);
    assert_eq!(st.resident_bytes, 2000 * 4096);
    assert!(parse_stat("garbage", 100.0, 4096, 0.0).is_none());
}
