//! Usage telemetry: the usage log, the day's spend, `stats` and `replay`.
//!
//! - [`UsageLog`] is the handle the engine records to: [`UsageLog::record`] never blocks (a
//!   bounded queue to a background writer thread; when it is full the line is dropped and
//!   counted, and a `dropped` line says so later). It also keeps the day's spend (UTC day):
//!   summed from the log when the log is opened (so it survives restarts and includes every
//!   other Pilotfish process of the user), kept current in memory as calls are recorded, and
//!   followed as other processes append; the router reads it through
//!   [`UsageLog::spent_today_usd`].
//! - [`line`]: the line format and the builders; [`stats`] and [`replay`]: pure functions
//!   from lines to reports, with table tests.
//! - `store.rs` is the only code here that does I/O (the writer thread, rotation, reading).
//!
//! Must not: block a request, write a secret (every free-text field is masked by the writer;
//! prompts are logged only with `telemetry.log_prompts`), or know LSP.

pub mod clock;
pub mod line;
pub mod replay;
pub mod stats;
mod store;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use line::{CacheUse, Event, Outcome, RouteFacts, RouteNote, Usage, UsageEvent};

use crate::config::{Config, TelemetryConfig};
use crate::sync::lock;

/// Lines the writer's queue holds before new ones are dropped.
const QUEUE_LINES: usize = 4096;
/// Suggestions remembered for matching `pilotfish.accept` to what was shown.
const SHOWN_REMEMBERED: usize = 256;

/// State shared with the writer thread.
pub(crate) struct Shared {
    /// Lines dropped since the last `dropped` line was queued.
    dropped_since_written: AtomicU64,
    rotate_bytes: AtomicU64,
    /// (UTC day, USD spent that day by every process).
    spend: Mutex<(String, f64)>,
}

impl Shared {
    fn add_spend(&self, day: &str, usd: f64) {
        if !(usd.is_finite() && usd > 0.0) {
            return;
        }
        let mut spend = lock(&self.spend);
        if spend.0 != day {
            *spend = (day.to_string(), 0.0);
        }
        spend.1 += usd;
    }
}

/// The queue to a running writer thread and the file it writes.
struct Sink {
    path: PathBuf,
    tx: SyncSender<store::Msg>,
}

/// What was shown for a request, for its `accepted` line.
#[derive(Debug, Clone)]
struct Shown {
    task: String,
    model: String,
    language: String,
    chars: u64,
}

/// The usage log of this process. Cheap to clone; all clones share the log.
#[derive(Clone)]
pub struct UsageLog {
    inner: Arc<Inner>,
}

struct Inner {
    /// Identifies this process's lines: request ids are `<tag>-<n>`.
    tag: String,
    next_id: AtomicU64,
    sink: Mutex<Option<Sink>>,
    shared: Arc<Shared>,
    log_prompts: AtomicBool,
    dropped_total: AtomicU64,
    shown: Mutex<lru::LruCache<String, Shown>>,
    /// The day the user was told the budget is spent.
    budget_told: Mutex<String>,
}

impl std::fmt::Debug for UsageLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageLog")
            .field("path", &self.path())
            .finish_non_exhaustive()
    }
}

impl Default for UsageLog {
    fn default() -> Self {
        UsageLog::off()
    }
}

impl UsageLog {
    /// No log: the day's spend is this process's alone, kept in memory.
    pub fn off() -> UsageLog {
        let tag = process_tag();
        UsageLog {
            inner: Arc::new(Inner {
                tag,
                next_id: AtomicU64::new(1),
                sink: Mutex::new(None),
                shared: Arc::new(Shared {
                    dropped_since_written: AtomicU64::new(0),
                    rotate_bytes: AtomicU64::new(TelemetryConfig::default().rotate_bytes()),
                    spend: Mutex::new((clock::today(), 0.0)),
                }),
                log_prompts: AtomicBool::new(false),
                dropped_total: AtomicU64::new(0),
                shown: Mutex::new(lru::LruCache::new(
                    std::num::NonZeroUsize::new(SHOWN_REMEMBERED).expect("not zero"),
                )),
                budget_told: Mutex::new(String::new()),
            }),
        }
    }

    /// The log `telemetry` configures, opened (see [`UsageLog::configure`]).
    pub fn open(telemetry: &TelemetryConfig) -> UsageLog {
        let log = UsageLog::off();
        log.configure(telemetry);
        log
    }

    /// Applies `telemetry`: when the log's path changes, the day's spend is summed from the
    /// new log (a few milliseconds for a full day) and a writer thread starts on it; the old
    /// writer finishes its queue and ends.
    pub fn configure(&self, telemetry: &TelemetryConfig) {
        let inner = &self.inner;
        inner
            .log_prompts
            .store(telemetry.log_prompts, Ordering::Relaxed);
        inner
            .shared
            .rotate_bytes
            .store(telemetry.rotate_bytes(), Ordering::Relaxed);
        let path = telemetry.usage_log_path();
        let mut sink = lock(&inner.sink);
        if sink.as_ref().map(|s| &s.path) == path.as_ref() {
            return;
        }
        *sink = None;
        let Some(path) = path else {
            return;
        };
        let day = clock::today();
        let (spent, follower) = store::spent_on(&path, &day);
        *lock(&inner.shared.spend) = (day, spent);
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_LINES);
        let (thread_path, tag, shared) = (path.clone(), inner.tag.clone(), inner.shared.clone());
        let spawned = std::thread::Builder::new()
            .name("pilotfish-usage-log".into())
            .spawn(move || store::run_writer(thread_path, tag, rx, shared, follower));
        match spawned {
            Ok(_) => *sink = Some(Sink { path, tx }),
            Err(e) => tracing::warn!("usage log off: cannot start its writer: {e}"),
        }
    }

    /// The log's path, when it is on.
    pub fn path(&self) -> Option<PathBuf> {
        lock(&self.inner.sink).as_ref().map(|s| s.path.clone())
    }

    /// A new request id, unique across processes and restarts.
    pub fn next_id(&self) -> String {
        let n = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{}-{n}", self.inner.tag)
    }

    /// Whether prompts go into the log (`telemetry.log_prompts`).
    pub fn log_prompts(&self) -> bool {
        self.inner.log_prompts.load(Ordering::Relaxed)
    }

    /// Records one line; never blocks. A call's cost counts towards the day's spend at once,
    /// whether or not its line reaches the file.
    pub fn record(&self, mut event: UsageEvent) {
        if event.ts.is_empty() {
            event.ts = clock::now_ts();
        }
        let spent = event.spent_usd();
        if spent > 0.0 {
            self.inner.shared.add_spend(event.day(), spent);
        }
        let sink = lock(&self.inner.sink);
        let Some(sink) = sink.as_ref() else {
            return;
        };
        match sink.tx.try_send(store::Msg::Line(Box::new(event))) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.inner
                    .shared
                    .dropped_since_written
                    .fetch_add(1, Ordering::Relaxed);
                self.inner.dropped_total.fetch_add(1, Ordering::Relaxed);
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// A suggestion for request `id` was delivered to the editor.
    pub fn shown(&self, id: &str, task: &str, model: &str, language: &str, chars: u64) {
        let shown = Shown {
            task: task.to_string(),
            model: model.to_string(),
            language: language.to_string(),
            chars,
        };
        lock(&self.inner.shown).put(id.to_string(), shown.clone());
        self.record(UsageEvent {
            event: Event::Shown,
            id: id.to_string(),
            task: shown.task,
            language: shown.language,
            model: Some(shown.model),
            chars: Some(chars),
            ..UsageEvent::default()
        });
    }

    /// The editor accepted the suggestion of request `id`: all of it, or `accepted_chars` of
    /// it (a partial accept). `model` is what the editor says, used when this process does
    /// not remember the suggestion (it was shown by an earlier run).
    pub fn accepted(&self, id: &str, accepted_chars: Option<u64>, model: Option<&str>) {
        let shown = lock(&self.inner.shown).get(id).cloned();
        let chars = shown.as_ref().map(|s| s.chars);
        let accepted = match (accepted_chars, chars) {
            (Some(a), Some(c)) => Some(a.min(c)),
            (a, c) => a.or(c),
        };
        self.record(UsageEvent {
            event: Event::Accepted,
            id: id.to_string(),
            task: shown.as_ref().map_or("complete".into(), |s| s.task.clone()),
            language: shown
                .as_ref()
                .map(|s| s.language.clone())
                .unwrap_or_default(),
            model: shown
                .as_ref()
                .map(|s| s.model.clone())
                .or_else(|| model.map(|m| m.chars().take(200).collect())),
            chars,
            accepted_chars: accepted,
            ..UsageEvent::default()
        });
    }

    /// USD spent today (UTC) on model calls, by every process that logs here.
    pub fn spent_today_usd(&self) -> f64 {
        let spend = lock(&self.inner.shared.spend);
        if spend.0 == clock::today() {
            spend.1
        } else {
            0.0
        }
    }

    /// The one notice of the day that the budget is spent, with the spend and the limit;
    /// `None` when the user was told already today.
    pub fn budget_notice(&self, daily_usd: f64) -> Option<String> {
        let today = clock::today();
        let mut told = lock(&self.inner.budget_told);
        if *told == today {
            return None;
        }
        *told = today;
        Some(format!(
            "Pilotfish: ${:.2} spent on cloud models today, the daily budget is ${daily_usd:.2}; cloud models are skipped until tomorrow (UTC).",
            self.spent_today_usd()
        ))
    }

    /// Lines dropped because the writer fell behind, since this process started.
    pub fn dropped(&self) -> u64 {
        self.inner.dropped_total.load(Ordering::Relaxed)
    }

    /// Waits (up to `timeout`) until every line recorded so far is written: for one-shot
    /// commands before they exit, and for tests.
    pub fn flush(&self, timeout: Duration) {
        let (done_tx, done_rx) = std::sync::mpsc::sync_channel(1);
        let sent = match lock(&self.inner.sink).as_ref() {
            Some(sink) => sink
                .tx
                .send_timeout_compat(store::Msg::Flush(done_tx), timeout),
            None => false,
        };
        if sent {
            let _ = done_rx.recv_timeout(timeout);
        }
    }
}

/// `SyncSender::send` with a time limit (std has none): retries `try_send` while the queue is
/// full.
trait SendTimeout<T> {
    fn send_timeout_compat(&self, msg: T, timeout: Duration) -> bool;
}

impl<T> SendTimeout<T> for SyncSender<T> {
    fn send_timeout_compat(&self, mut msg: T, timeout: Duration) -> bool {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            match self.try_send(msg) {
                Ok(()) => return true,
                Err(TrySendError::Disconnected(_)) => return false,
                Err(TrySendError::Full(back)) => {
                    if std::time::Instant::now() >= deadline {
                        return false;
                    }
                    msg = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
}

/// A tag for this process's request ids: its pid and start time, in base 36.
fn process_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    format!(
        "{}{}",
        base36(u64::from(std::process::id())),
        base36(nanos % 36u64.pow(6))
    )
}

fn base36(mut n: u64) -> String {
    const DIGITS: &[u8; 36] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = Vec::new();
    loop {
        out.push(DIGITS[(n % 36) as usize]);
        n /= 36;
        if n == 0 {
            break;
        }
    }
    out.reverse();
    String::from_utf8(out).unwrap_or_default()
}

/// Reads the log at `path` for `stats` and `replay`: the lines written at or after `since`
/// (a timestamp; `None`: all), and how many lines could not be read.
pub fn load(path: &Path, since: Option<&str>) -> std::io::Result<(Vec<UsageEvent>, usize)> {
    let since = since.map(str::to_string);
    store::read_lines(path, move |raw| match &since {
        // Lines start with their timestamp: compare without parsing.
        Some(from) => raw
            .strip_prefix("{\"ts\":\"")
            .is_some_and(|rest| rest.get(..from.len()).is_some_and(|ts| ts >= from.as_str())),
        None => true,
    })
}

/// A model call's line, written when the call ends ([`PendingCall::finish`]) — or, when the
/// call is dropped before it ends (its task aborted, its request cancelled), on drop, with
/// the outcome `dropped_as` says then. Latency is measured from [`PendingCall::start`].
pub struct PendingCall {
    usage: UsageLog,
    /// `None` once written.
    event: Option<UsageEvent>,
    started: std::time::Instant,
    dropped_as: Box<dyn Fn() -> Outcome + Send + Sync>,
}

impl PendingCall {
    pub fn start(
        usage: &UsageLog,
        event: UsageEvent,
        dropped_as: impl Fn() -> Outcome + Send + Sync + 'static,
    ) -> PendingCall {
        PendingCall {
            usage: usage.clone(),
            event: Some(event),
            started: std::time::Instant::now(),
            dropped_as: Box::new(dropped_as),
        }
    }

    /// Writes the line, as `complete` makes it from the one given at the start.
    pub fn finish(&mut self, complete: impl FnOnce(UsageEvent) -> UsageEvent) {
        if let Some(e) = self.event.take() {
            let mut e = complete(e);
            e.ms = Some(self.started.elapsed().as_millis() as u64);
            self.usage.record(e);
        }
    }
}

impl Drop for PendingCall {
    fn drop(&mut self) {
        let outcome = (self.dropped_as)();
        self.finish(|mut e| {
            e.outcome = Some(outcome);
            e
        });
    }
}

/// The configured models' prices, for `stats` and `replay`.
pub fn prices(config: &Config) -> Vec<stats::Price> {
    config
        .models
        .iter()
        .map(|(name, m)| stats::Price {
            model: name.clone(),
            input_per_mtok: m.cost_input_per_mtok,
            output_per_mtok: m.cost_output_per_mtok,
        })
        .collect()
}

/// `pilotfish stats` (and the `pilotfish.stats` command): the report over the log at `path`
/// since `since` (a `--since` argument), priced with `config`'s models. No log yet is an
/// empty report.
pub fn stats_of_log(
    path: &Path,
    since: Option<&str>,
    config: &Config,
) -> Result<stats::Report, String> {
    let from = since
        .map(|s| clock::since(s, std::time::SystemTime::now()))
        .transpose()?;
    let (lines, unreadable) = match load(path, from.as_deref()) {
        Ok(read) => read,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (Vec::new(), 0),
        Err(e) => return Err(format!("cannot read the usage log {}: {e}", path.display())),
    };
    let mut report = stats::report(&lines, &prices(config), from.as_deref());
    report.unreadable_lines = unreadable as u64;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syntax::Language;

    fn telemetry(path: &Path) -> TelemetryConfig {
        TelemetryConfig {
            usage_log: Some(path.to_string_lossy().into_owned()),
            ..TelemetryConfig::default()
        }
    }

    fn call(log: &UsageLog, cost: f64) -> UsageEvent {
        let mut e = UsageEvent::call(&log.next_id(), "explain", Language::Rust);
        e.cost_usd = Some(cost);
        e.outcome = Some(Outcome::Ok);
        e
    }

    #[test]
    fn the_days_spend_survives_a_restart_and_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        let first = UsageLog::open(&telemetry(&path));
        first.record(call(&first, 0.75));
        assert_eq!(first.spent_today_usd(), 0.75, "current in memory at once");
        first.flush(Duration::from_secs(5));
        // A second process (or the next start) reads it from the log.
        let second = UsageLog::open(&telemetry(&path));
        assert_eq!(second.spent_today_usd(), 0.75);
        second.record(call(&second, 0.5));
        second.flush(Duration::from_secs(5));
        // The first follows what the second appends (within a follow period).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while first.spent_today_usd() < 1.25 && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(first.spent_today_usd(), 1.25);
        assert_ne!(first.next_id(), second.next_id());
    }

    #[test]
    fn an_accept_is_matched_to_what_was_shown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        let log = UsageLog::open(&telemetry(&path));
        log.shown("x-1", "complete", "fast", "python", 12);
        log.accepted("x-1", Some(5), Some("liar"));
        log.accepted("x-1", None, None);
        log.accepted("x-1", Some(99), None);
        log.accepted("unknown-1", None, Some("fast"));
        log.flush(Duration::from_secs(5));
        let (lines, unreadable) = load(&path, None).unwrap();
        assert_eq!(unreadable, 0);
        type Accepted<'a> = (Option<&'a str>, &'a str, Option<u64>, Option<u64>);
        let accepted: Vec<Accepted> = lines
            .iter()
            .filter(|l| l.event == Event::Accepted)
            .map(|l| {
                (
                    l.model.as_deref(),
                    l.language.as_str(),
                    l.chars,
                    l.accepted_chars,
                )
            })
            .collect();
        assert_eq!(
            accepted,
            [
                (Some("fast"), "python", Some(12), Some(5)),
                (Some("fast"), "python", Some(12), Some(12)),
                (Some("fast"), "python", Some(12), Some(12)),
                (Some("fast"), "", None, None),
            ]
        );
    }

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_waiting() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        let log = UsageLog::open(&telemetry(&path));
        let started = std::time::Instant::now();
        let n = QUEUE_LINES * 4;
        for _ in 0..n {
            log.record(call(&log, 0.0));
        }
        // Never waits on the disk: the whole burst takes far less than writing it would.
        assert!(started.elapsed() < Duration::from_secs(5));
        log.flush(Duration::from_secs(10));
        let (lines, _) = load(&path, None).unwrap();
        let calls = lines.iter().filter(|l| l.event == Event::Call).count() as u64;
        let dropped: u64 = lines.iter().filter_map(|l| l.lines).sum();
        assert_eq!(calls + log.dropped(), n as u64);
        assert_eq!(dropped, log.dropped());
    }

    #[test]
    fn off_keeps_the_spend_in_memory() {
        let log = UsageLog::off();
        log.record(call(&log, 0.5));
        assert_eq!(log.spent_today_usd(), 0.5);
        assert!(log.path().is_none());
        assert!(log.budget_notice(0.25).unwrap().contains("$0.50 spent"));
        assert_eq!(log.budget_notice(0.25), None, "once a day");
    }
}
