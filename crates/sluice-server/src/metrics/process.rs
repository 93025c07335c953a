//! Process metrics, read from `/proc` at scrape time, under the names Prometheus' own client
//! libraries use (`process_cpu_seconds_total`, `process_resident_memory_bytes`, ...).

use std::sync::atomic::AtomicU64;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use super::Metrics;

/// What `/proc/self/stat` says about this process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct ProcStat {
    pub cpu_seconds: f64,
    pub start_time_seconds: f64,
    pub virtual_bytes: u64,
    pub resident_bytes: u64,
}

/// Parses `/proc/self/stat` (fields after the command name, which may hold spaces and
/// parentheses) given the clock tick rate, the page size and the boot time (`btime`).
pub(crate) fn parse_stat(stat: &str, ticks: f64, page: u64, boot_time: f64) -> Option<ProcStat> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state): field n is f[n - 3].
    let num = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    Some(ProcStat {
        cpu_seconds: (num(14)? + num(15)?) as f64 / ticks,
        start_time_seconds: boot_time + num(22)? as f64 / ticks,
        virtual_bytes: num(23)?,
        resident_bytes: num(24)? * page,
    })
}

fn boot_time() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

fn sysconf(name: libc::c_int) -> Option<u64> {
    // SAFETY: sysconf only reads a system setting.
    let v = unsafe { libc::sysconf(name) };
    (v > 0).then_some(v as u64)
}

fn max_fds() -> Option<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct given.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

/// Registers the process metrics as they are now (those that cannot be read are left out).
pub(super) fn register(registry: &mut Registry, _metrics: &Metrics) {
    let stat = std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            parse_stat(
                &s,
                sysconf(libc::_SC_CLK_TCK)? as f64,
                sysconf(libc::_SC_PAGESIZE)?,
                boot_time()?,
            )
        });
    if let Some(st) = stat {
        let cpu = Counter::<f64, AtomicU64>::default();
        cpu.inc_by(st.cpu_seconds);
        registry.register(
            "process_cpu_seconds",
            "User and system CPU time of the server process",
            cpu,
        );
        let start = Gauge::<f64, AtomicU64>::default();
        start.set(st.start_time_seconds);
        registry.register(
            "process_start_time_seconds",
            "Start time of the process since the Unix epoch",
            start,
        );
        let rss = Gauge::<i64>::default();
        rss.set(st.resident_bytes as i64);
        registry.register("process_resident_memory_bytes", "Resident memory size", rss);
        let vsz = Gauge::<i64>::default();
        vsz.set(st.virtual_bytes as i64);
        registry.register("process_virtual_memory_bytes", "Virtual memory size", vsz);
    }
    if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
        let open = Gauge::<i64>::default();
        open.set(dir.count() as i64);
        registry.register("process_open_fds", "Open file descriptors", open);
    }
    if let Some(max) = max_fds() {
        let g = Gauge::<i64>::default();
        g.set(max.min(i64::MAX as u64) as i64);
        registry.register("process_max_fds", "Limit of open file descriptors", g);
    }
}
