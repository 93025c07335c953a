//! `--tls-compare`: puts and reads over HTTPS against plain HTTP (issue 8). Runs this same
//! binary `repeats` times in each mode, plain and HTTPS alternating (and which goes first
//! alternating too, so a neighbour's build that starts mid-pair does not always hit the same
//! mode), each child doing only the closed-loop put and read-back phases (`--throughput-only`)
//! with a fresh server and data dir, and reports per protocol and phase every run, the medians,
//! the spread and HTTPS ÷ plain of the medians.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::Value as Json;

use crate::stats::{median, spread};

/// What a `--throughput-only` child writes with `--json-out`.
pub fn result_json(proto: &str, put: f64, read: f64, load: (f64, f64)) -> Json {
    serde_json::json!({"protocol": proto, "put": put, "read": read, "load_before": load.0, "load_after": load.1})
}

/// One child's figures: (protocol, put records/s, read records/s), and its load averages.
struct Run {
    rows: Vec<(String, f64, f64)>,
    loads: Vec<f64>,
}

#[allow(clippy::too_many_arguments)]
async fn child(
    exe: &Path,
    sluice_bin: &Path,
    work_dir: &Path,
    out_dir: &Path,
    n: usize,
    tls: bool,
    pass: &[String],
) -> anyhow::Result<Run> {
    let mode = if tls { "https" } else { "plain" };
    let json_out = out_dir.join(format!("tls-compare-{n}-{mode}.json"));
    let mut cmd = tokio::process::Command::new(exe);
    cmd.arg("--sluice-bin")
        .arg(sluice_bin)
        .arg("--work-dir")
        .arg(work_dir)
        .arg("--out")
        .arg(out_dir.join(format!("tls-compare-{n}-{mode}.md")))
        .arg("--skip-nats")
        .arg("--throughput-only")
        .arg("--json-out")
        .arg(&json_out)
        .args(pass);
    if tls {
        cmd.arg("--tls");
    }
    eprintln!("== tls-compare run {n}: {mode}");
    let status = cmd.kill_on_drop(true).status().await?;
    anyhow::ensure!(status.success(), "run {n} ({mode}) failed: {status}");
    let text =
        std::fs::read_to_string(&json_out).with_context(|| format!("{}", json_out.display()))?;
    let list: Vec<Json> = serde_json::from_str(&text)?;
    let mut run = Run {
        rows: vec![],
        loads: vec![],
    };
    for r in list {
        run.rows.push((
            r["protocol"].as_str().unwrap_or("?").to_string(),
            r["put"].as_f64().unwrap_or(0.0),
            r["read"].as_f64().unwrap_or(0.0),
        ));
        run.loads.push(r["load_before"].as_f64().unwrap_or(0.0));
        run.loads.push(r["load_after"].as_f64().unwrap_or(0.0));
    }
    Ok(run)
}

fn m(r: f64) -> String {
    format!("{:.2} M", r / 1e6)
}

/// Runs the comparison and returns the Markdown table (with the load averages seen).
pub async fn compare(
    sluice_bin: &Path,
    work_dir: &Path,
    out_dir: &Path,
    repeats: usize,
    pass: &[String],
) -> anyhow::Result<String> {
    let exe: PathBuf = std::env::current_exe()?;
    let (mut plain, mut https) = (Vec::new(), Vec::new());
    for n in 1..=repeats {
        let order = if n % 2 == 1 {
            [false, true]
        } else {
            [true, false]
        };
        for tls in order {
            let run = child(&exe, sluice_bin, work_dir, out_dir, n, tls, pass).await?;
            if tls {
                https.push(run);
            } else {
                plain.push(run);
            }
        }
    }
    let mut md = String::from(
        "| protocol | phase | plain HTTP records/s (runs) | HTTPS records/s (runs) | median plain | median HTTPS | plain spread (min–max) | HTTPS spread (min–max) | HTTPS ÷ plain (medians) |\n\
         |---|---|---|---|---:|---:|---|---|---:|\n",
    );
    let protos: Vec<String> = plain
        .first()
        .map(|r| r.rows.iter().map(|x| x.0.clone()).collect())
        .unwrap_or_default();
    for proto in &protos {
        for (phase, pick) in [("put", 1usize), ("read", 2usize)] {
            let series = |runs: &[Run]| -> Vec<f64> {
                runs.iter()
                    .filter_map(|r| r.rows.iter().find(|x| &x.0 == proto))
                    .map(|x| if pick == 1 { x.1 } else { x.2 })
                    .collect()
            };
            let (p, h) = (series(&plain), series(&https));
            let (pm, hm) = (median(&p), median(&h));
            let (plo, phi) = spread(&p);
            let (hlo, hhi) = spread(&h);
            md.push_str(&format!(
                "| {proto} | {phase} | {} | {} | {} | {} | {}–{} | {}–{} | {:.2} |\n",
                p.iter().map(|x| m(*x)).collect::<Vec<_>>().join(" / "),
                h.iter().map(|x| m(*x)).collect::<Vec<_>>().join(" / "),
                m(pm),
                m(hm),
                m(plo),
                m(phi),
                m(hlo),
                m(hhi),
                hm / pm
            ));
        }
    }
    let loads: Vec<f64> = plain
        .iter()
        .chain(&https)
        .flat_map(|r| r.loads.clone())
        .collect();
    let (lo, hi) = spread(&loads);
    md.push_str(&format!(
        "\n{repeats} runs per mode, alternating; 1-minute load average during the runs {lo:.1}–{hi:.1}.\n"
    ));
    Ok(md)
}
