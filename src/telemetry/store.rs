//! The usage log's files: the only code in `telemetry` that does I/O. A background writer
//! thread appends lines, rotates the file by size and follows what other Pilotfish processes
//! append (their spend counts against the same daily budget); one-shot readers load lines for
//! `stats`, `replay` and the day's spend at start.
//!
//! Several processes (one per editor window) append to one log safely without a lock: the
//! file is opened with `O_APPEND` and each batch of whole lines goes out in one `write`, which
//! the kernel appends at the end of the file as one piece, so lines never interleave or tear.
//! Rotation renames the file to a name no other process can pick (time and process tag), so
//! two processes rotating at once never overwrite each other's lines; a writer whose file was
//! renamed away notices (the path names another file) and reopens the path.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use super::Shared;
use super::clock;
use super::line::{Event, UsageEvent};
use crate::redact::redact;

/// How many rotated files are kept besides the current one.
const KEEP_ROTATED: usize = 4;
/// How often the writer reads what other processes appended, when it has nothing to write.
const FOLLOW_EVERY: Duration = Duration::from_secs(1);
/// Most lines written in one `write`.
const MAX_BATCH: usize = 256;

/// What the writer thread is sent.
pub(super) enum Msg {
    Line(Box<UsageEvent>),
    /// Answered once every line sent before it is written.
    Flush(std::sync::mpsc::SyncSender<()>),
}

/// The log's files, oldest first: the rotated ones (`usage.jsonl.<time>-<process>`), then the
/// current one. Missing files are left out.
pub(super) fn log_files(path: &Path) -> Vec<PathBuf> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Vec::new();
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let prefix = format!("{}.", name.to_string_lossy());
    let mut rotated: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(&prefix))
        .map(|e| e.path())
        .collect();
    rotated.sort();
    if path.exists() {
        rotated.push(path.to_path_buf());
    }
    rotated
}

/// Every line of the log (rotated files first) for which `keep` holds on its raw text, and
/// the number of lines that could not be read.
pub(super) fn read_lines(
    path: &Path,
    keep: impl Fn(&str) -> bool,
) -> std::io::Result<(Vec<UsageEvent>, usize)> {
    let files = log_files(path);
    if files.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no usage log at {}", path.display()),
        ));
    }
    let (mut lines, mut unreadable) = (Vec::new(), 0);
    for file in files {
        let text = match std::fs::read(&file) {
            Ok(bytes) => bytes,
            // Rotated away or pruned by another process meanwhile.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        parse_into(&text, &keep, &mut lines, &mut unreadable);
    }
    Ok((lines, unreadable))
}

fn parse_into(
    bytes: &[u8],
    keep: &impl Fn(&str) -> bool,
    lines: &mut Vec<UsageEvent>,
    unreadable: &mut usize,
) {
    for raw in bytes.split(|b| *b == b'\n') {
        let Ok(text) = std::str::from_utf8(raw) else {
            *unreadable += 1;
            continue;
        };
        if text.trim().is_empty() || !keep(text) {
            continue;
        }
        match serde_json::from_str::<UsageEvent>(text) {
            Ok(line) => lines.push(line),
            Err(_) => *unreadable += 1,
        }
    }
}

/// Whether a raw line was written on `day` (`YYYY-MM-DD`): lines start with their timestamp.
pub(super) fn written_on(raw: &str, day: &str) -> bool {
    raw.strip_prefix("{\"ts\":\"")
        .is_some_and(|rest| rest.starts_with(day))
}

/// What is spent on `day` according to the log, and a follower positioned at the current
/// file's end, which reads what is appended after.
pub(super) fn spent_on(path: &Path, day: &str) -> (f64, Follower) {
    let mut spent = 0.0;
    let today = |raw: &str| written_on(raw, day);
    for file in log_files(path) {
        if file == path {
            break;
        }
        // Rotated files older than the day hold nothing of it.
        let recent = std::fs::metadata(&file)
            .and_then(|m| m.modified())
            .map(|t| clock::day_of_time(t).as_str() >= day)
            .unwrap_or(true);
        if recent {
            let (lines, _) = read_lines_of(&file, &today);
            spent += lines.iter().map(UsageEvent::spent_usd).sum::<f64>();
        }
    }
    let mut follower = Follower {
        file: File::open(path).ok(),
        path: path.to_path_buf(),
        partial: Vec::new(),
    };
    spent += follower.read_new(day, None);
    (spent, follower)
}

fn read_lines_of(file: &Path, keep: &impl Fn(&str) -> bool) -> (Vec<UsageEvent>, usize) {
    let (mut lines, mut unreadable) = (Vec::new(), 0);
    if let Ok(bytes) = std::fs::read(file) {
        parse_into(&bytes, keep, &mut lines, &mut unreadable);
    }
    (lines, unreadable)
}

/// Reads what is appended to the log after a point, following it across rotations.
pub(super) struct Follower {
    /// `None` until the log exists.
    file: Option<File>,
    path: PathBuf,
    /// The start of a line whose end is not written yet.
    partial: Vec<u8>,
}

impl Follower {
    /// The spend on `day` in the lines appended since the last read, leaving out the lines of
    /// the process tagged `skip` (which counts its own). After the file was rotated, the rest
    /// of the old file is read, then the new one from its start.
    fn read_new(&mut self, day: &str, skip: Option<&str>) -> f64 {
        let mut spent = self.read_to_end(day, skip);
        let moved = match &self.file {
            Some(file) => !same_file(file, &self.path),
            None => true,
        };
        if moved {
            if let Ok(file) = File::open(&self.path) {
                self.file = Some(file);
                self.partial.clear();
                spent += self.read_to_end(day, skip);
            }
        }
        spent
    }

    fn read_to_end(&mut self, day: &str, skip: Option<&str>) -> f64 {
        let Some(file) = self.file.as_mut() else {
            return 0.0;
        };
        let mut bytes = std::mem::take(&mut self.partial);
        if file.read_to_end(&mut bytes).is_err() {
            return 0.0;
        }
        let complete = bytes.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        self.partial = bytes.split_off(complete);
        let keep = |raw: &str| {
            written_on(raw, day)
                && skip.is_none_or(|tag| !raw.contains(&format!("\"id\":\"{tag}-")))
        };
        let (mut lines, mut unreadable) = (Vec::new(), 0);
        parse_into(&bytes, &keep, &mut lines, &mut unreadable);
        lines.iter().map(UsageEvent::spent_usd).sum()
    }
}

/// Whether the open `file` is the file at `path` now (not renamed away, not deleted).
fn same_file(file: &File, path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.ino() == b.ino() && a.dev() == b.dev(),
            _ => false,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = file;
        path.exists()
    }
}

/// Appends lines to the log, rotating it by size.
struct Appender {
    path: PathBuf,
    file: Option<File>,
    tag: String,
}

impl Appender {
    fn open(&mut self) -> std::io::Result<&mut File> {
        if self.file.as_ref().is_some_and(|f| same_file(f, &self.path)) {
            // Checked above; the borrow checker wants it taken again.
            return self
                .file
                .as_mut()
                .ok_or_else(|| std::io::Error::other("closed"));
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        Ok(self.file.insert(file))
    }

    /// Writes `batch` (whole lines) in one `write`, rotating first when it would take the
    /// file past `limit` bytes.
    fn append(&mut self, batch: &[u8], limit: u64) -> std::io::Result<()> {
        let len = self.open()?.metadata()?.len();
        if len > 0 && len + batch.len() as u64 > limit {
            self.rotate();
        }
        self.open()?.write_all(batch)
    }

    /// Renames the current file to a name only this process uses, unless another process
    /// rotated it already; drops the oldest rotated files past [`KEEP_ROTATED`].
    fn rotate(&mut self) {
        let ours = self.file.as_ref().is_some_and(|f| same_file(f, &self.path));
        if ours {
            let stamp = clock::compact(&clock::now_ts());
            let name = self
                .path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned());
            let rotated = self.path.with_file_name(format!(
                "{}.{stamp}-{}",
                name.unwrap_or_default(),
                self.tag
            ));
            if let Err(e) = std::fs::rename(&self.path, &rotated) {
                tracing::warn!("cannot rotate the usage log {}: {e}", self.path.display());
            }
        }
        self.file = None;
        let files = log_files(&self.path);
        let rotated: Vec<&PathBuf> = files.iter().filter(|f| **f != self.path).collect();
        for old in rotated
            .iter()
            .take(rotated.len().saturating_sub(KEEP_ROTATED))
        {
            let _ = std::fs::remove_file(old);
        }
    }
}

/// The writer thread: writes what it is sent, a `dropped` line when the queue overflowed,
/// and follows other processes' spend; ends when every sender is gone.
pub(super) fn run_writer(
    path: PathBuf,
    tag: String,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    mut follower: Follower,
) {
    let mut appender = Appender {
        path,
        file: None,
        tag: tag.clone(),
    };
    let mut warned = false;
    loop {
        let first = match rx.recv_timeout(FOLLOW_EVERY) {
            Ok(msg) => Some(msg),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        let mut next = first;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Line(line) => batch.push(line),
                Msg::Flush(done) => flushes.push(done),
            }
            if batch.len() < MAX_BATCH {
                next = rx.try_recv().ok();
            }
        }
        let dropped = shared.dropped_since_written.swap(0, Ordering::Relaxed);
        if dropped > 0 {
            batch.push(Box::new(UsageEvent {
                ts: clock::now_ts(),
                event: Event::Dropped,
                lines: Some(dropped),
                ..UsageEvent::default()
            }));
        }
        if !batch.is_empty() {
            let bytes = serialize(&batch);
            let limit = shared.rotate_bytes.load(Ordering::Relaxed);
            match appender.append(&bytes, limit) {
                Ok(()) => warned = false,
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(
                        "cannot write the usage log {}: {e}",
                        appender.path.display()
                    );
                }
                Err(_) => {}
            }
        }
        let day = clock::today();
        let others = follower.read_new(&day, Some(&tag));
        if others > 0.0 {
            shared.add_spend(&day, others);
        }
        for done in flushes {
            let _ = done.send(());
        }
    }
}

/// The lines of a batch, each ending in a line break, with secrets masked in every text
/// field a model, a provider or the user's code could have filled.
fn serialize(batch: &[Box<UsageEvent>]) -> Vec<u8> {
    let mut out = Vec::with_capacity(batch.len() * 512);
    for line in batch {
        let mut line = (**line).clone();
        mask(&mut line);
        if serde_json::to_writer(&mut out, &line).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

fn mask(line: &mut UsageEvent) {
    let masked = |s: &mut String| {
        let (text, found) = redact(s);
        if found > 0 {
            *s = text;
        }
    };
    for s in [&mut line.note, &mut line.prompt].into_iter().flatten() {
        masked(s);
    }
    if let Some(route) = line.route.as_mut() {
        masked(&mut route.why);
        for f in &mut route.fallbacks {
            masked(&mut f.error);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::line::{CacheUse, Outcome};

    fn line(ts: &str, id: &str, cost: f64) -> UsageEvent {
        UsageEvent {
            ts: ts.into(),
            id: id.into(),
            cost_usd: Some(cost),
            cache: Some(CacheUse::Miss),
            outcome: Some(Outcome::Ok),
            ..UsageEvent::default()
        }
    }

    fn write_lines(path: &Path, lines: &[UsageEvent]) {
        let boxed: Vec<Box<UsageEvent>> = lines.iter().cloned().map(Box::new).collect();
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .unwrap();
        f.write_all(&serialize(&boxed)).unwrap();
    }

    #[test]
    fn rotation_keeps_whole_lines_and_a_bounded_number_of_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state/usage.jsonl");
        let mut appender = Appender {
            path: path.clone(),
            file: None,
            tag: "t".into(),
        };
        let one = serialize(&[Box::new(line("2026-01-01T00:00:00.000Z", "t-1", 0.5))]);
        for _ in 0..40 {
            appender.append(&one, (one.len() * 3) as u64).unwrap();
            // Rotated names carry the time to the millisecond: keep them apart.
            std::thread::sleep(Duration::from_millis(2));
        }
        let files = log_files(&path);
        assert_eq!(files.len(), KEEP_ROTATED + 1, "{files:?}");
        assert_eq!(files.last(), Some(&path));
        let (lines, unreadable) = read_lines(&path, |_| true).unwrap();
        assert_eq!(unreadable, 0);
        assert_eq!(lines.len(), 3 * (KEEP_ROTATED + 1) - 2, "{files:?}");
    }

    #[test]
    fn the_days_spend_follows_other_processes_across_a_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usage.jsonl");
        write_lines(
            &path,
            &[
                line("2026-01-01T23:59:59.000Z", "a-1", 1.0),
                line("2026-01-02T00:00:01.000Z", "a-2", 0.25),
            ],
        );
        let (spent, mut follower) = spent_on(&path, "2026-01-02");
        assert_eq!(spent, 0.25);
        // Another process appends, one line of ours too (skipped: we count our own).
        write_lines(
            &path,
            &[
                line("2026-01-02T01:00:00.000Z", "b-1", 0.5),
                line("2026-01-02T01:00:00.000Z", "me-1", 9.0),
            ],
        );
        assert_eq!(follower.read_new("2026-01-02", Some("me")), 0.5);
        // It rotates the file after one more line, and writes on in a new one.
        write_lines(&path, &[line("2026-01-02T02:00:00.000Z", "b-2", 0.125)]);
        std::fs::rename(&path, dir.path().join("usage.jsonl.x-b")).unwrap();
        write_lines(&path, &[line("2026-01-02T03:00:00.000Z", "b-3", 2.0)]);
        assert_eq!(follower.read_new("2026-01-02", Some("me")), 2.125);
        assert_eq!(follower.read_new("2026-01-02", Some("me")), 0.0);
        // At the next start everything of the day is summed, in every file.
        assert_eq!(
            spent_on(&path, "2026-01-02").0,
            0.25 + 0.5 + 9.0 + 0.125 + 2.0
        );
    }

    #[test]
    fn secrets_are_masked_in_every_text_field() {
        let key = "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789";
        let mut l = line("2026-01-01T00:00:00.000Z", "a-1", 0.0);
        l.note = Some(format!("HTTP 401: bad key {key}"));
        l.prompt = Some(format!("API_KEY = \"{key}\""));
        l.route = Some(crate::telemetry::line::RouteNote {
            source: "routes.explain".into(),
            why: String::new(),
            fallbacks: vec![crate::telemetry::line::Fallback {
                model: "cloud".into(),
                endpoint: "https://x".into(),
                error: format!("rejected {key}"),
                ms: 3,
            }],
        });
        let text = String::from_utf8(serialize(&[Box::new(l)])).unwrap();
        assert!(!text.contains(key), "{text}");
        assert!(text.contains("HTTP 401"), "{text}");
    }

    #[test]
    fn lines_are_recognised_by_day_from_their_first_bytes() {
        assert!(written_on(
            r#"{"ts":"2026-01-02T00:00:00.000Z","event":"call"}"#,
            "2026-01-02"
        ));
        assert!(!written_on(
            r#"{"ts":"2026-01-01T23:59:59.999Z"}"#,
            "2026-01-02"
        ));
        assert!(!written_on(
            r#"{"event":"call","ts":"2026-01-02"}"#,
            "2026-01-02"
        ));
    }
}
