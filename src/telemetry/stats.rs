//! `pilotfish stats`: usage-log lines → a report, per model, per task, per language and per
//! (model, task) — requests, latency and time-to-first-token percentiles, cache and
//! typed-ahead hits, shown and accepted suggestions, action check failures, tokens, cost —
//! and what routing saved against sending every call to the most expensive configured model.
//! Pure: lines and prices in, a report out; [`render`] makes the terminal table.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;

use serde::Serialize;

use super::line::{CacheUse, Event, Outcome, UsageEvent, cost_usd};

/// A configured model's prices, USD per million tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct Price {
    pub model: String,
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
}

/// One row of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Row {
    pub key: String,
    /// Requests answered: model calls (not prefetches) and cache answers.
    pub requests: u64,
    /// Model calls, prefetches included.
    pub model_calls: u64,
    pub prefetches: u64,
    pub cache_hits: u64,
    pub typed_ahead: u64,
    /// (cache hits + typed-ahead) / requests.
    pub cache_hit_rate: Option<f64>,
    pub p50_ms: Option<u64>,
    pub p95_ms: Option<u64>,
    pub ttft_p50_ms: Option<u64>,
    pub ttft_p95_ms: Option<u64>,
    pub shown: u64,
    /// Suggestions accepted (each at most once, partial accepts included).
    pub accepted: u64,
    /// accepted / shown.
    pub acceptance_rate: Option<f64>,
    pub accepted_chars: u64,
    pub empty: u64,
    pub cancelled: u64,
    pub superseded: u64,
    /// Calls that failed: deadline, timeout, error.
    pub failed: u64,
    /// Action answers that failed their strict check.
    pub check_failed: u64,
    /// check_failed / action answers.
    pub check_failure_rate: Option<f64>,
    pub tokens_in: u64,
    pub tokens_out: u64,
    pub cost_usd: f64,
}

/// What routing saved.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Saving {
    pub cost_usd: f64,
    /// The most expensive configured model for these calls' tokens.
    pub priciest_model: Option<String>,
    /// Every model call's tokens at that model's prices.
    pub all_on_priciest_usd: f64,
    pub saved_usd: f64,
    /// all_on_priciest / cost: "5× cheaper" (none when nothing was spent).
    pub ratio: Option<f64>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The earliest timestamp counted (`--since`), if any.
    pub since: Option<String>,
    pub first_ts: Option<String>,
    pub last_ts: Option<String>,
    pub lines: u64,
    pub unreadable_lines: u64,
    /// Lines the writers had to drop (their queue was full).
    pub dropped_lines: u64,
    pub total: Row,
    pub by_model: Vec<Row>,
    pub by_task: Vec<Row>,
    pub by_language: Vec<Row>,
    /// `model/task`.
    pub by_model_task: Vec<Row>,
    pub saving: Saving,
}

/// What one row collects before its percentiles are taken.
#[derive(Default)]
struct Acc {
    row: Row,
    ms: Vec<u64>,
    ttft: Vec<u64>,
    action_answers: u64,
    accepted_ids: HashSet<String>,
}

impl Acc {
    fn add(&mut self, line: &UsageEvent, accepted: Option<u64>) {
        let r = &mut self.row;
        match line.event {
            Event::Call => {
                r.model_calls += 1;
                let prefetch = line.cache == Some(CacheUse::Prefetch);
                if prefetch {
                    r.prefetches += 1;
                } else {
                    r.requests += 1;
                }
                let outcome = line.outcome.unwrap_or(Outcome::Ok);
                if outcome.answered() {
                    self.ms.extend(line.ms);
                    self.ttft.extend(line.ttft_ms);
                    if line.task != "complete" {
                        self.action_answers += 1;
                    }
                }
                match outcome {
                    Outcome::Empty => r.empty += 1,
                    Outcome::Cancelled => r.cancelled += 1,
                    Outcome::Superseded => r.superseded += 1,
                    Outcome::CheckFailed => r.check_failed += 1,
                    o if o.failed() => r.failed += 1,
                    _ => {}
                }
                r.tokens_in += line.tokens_in.unwrap_or(0);
                r.tokens_out += line.tokens_out.unwrap_or(0);
                r.cost_usd += line.spent_usd();
            }
            Event::Cache => {
                r.requests += 1;
                match line.cache {
                    Some(CacheUse::TypedAhead) => r.typed_ahead += 1,
                    _ => r.cache_hits += 1,
                }
                if line.outcome == Some(Outcome::Empty) {
                    r.empty += 1;
                }
            }
            Event::Shown => r.shown += 1,
            Event::Accepted => {
                // Several accepts of one suggestion (word by word) count once, at their
                // longest.
                if self.accepted_ids.insert(line.id.clone()) {
                    r.accepted += 1;
                }
                if let Some(chars) = accepted {
                    r.accepted_chars += chars;
                }
            }
            Event::Dropped => {}
        }
    }

    fn finish(mut self, key: String) -> Row {
        let r = &mut self.row;
        r.key = key;
        r.cache_hit_rate = ratio(r.cache_hits + r.typed_ahead, r.requests);
        r.acceptance_rate = ratio(r.accepted, r.shown);
        r.check_failure_rate = ratio(r.check_failed, self.action_answers);
        self.ms.sort_unstable();
        self.ttft.sort_unstable();
        r.p50_ms = percentile(&self.ms, 50);
        r.p95_ms = percentile(&self.ms, 95);
        r.ttft_p50_ms = percentile(&self.ttft, 50);
        r.ttft_p95_ms = percentile(&self.ttft, 95);
        self.row
    }
}

fn ratio(part: u64, whole: u64) -> Option<f64> {
    (whole > 0).then(|| part as f64 / whole as f64)
}

/// The nearest-rank percentile of sorted values.
pub fn percentile(sorted: &[u64], p: u32) -> Option<u64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = (p as usize * sorted.len()).div_ceil(100).max(1);
    sorted.get(rank - 1).copied()
}

/// The report over `lines` (already filtered by time), with the configured `prices`.
pub fn report(lines: &[UsageEvent], prices: &[Price], since: Option<&str>) -> Report {
    // Accepted characters per suggestion: the longest accept of each.
    let mut accepted_chars: HashMap<&str, u64> = HashMap::new();
    for l in lines.iter().filter(|l| l.event == Event::Accepted) {
        let chars = l.accepted_chars.or(l.chars).unwrap_or(0);
        let best = accepted_chars.entry(l.id.as_str()).or_default();
        *best = (*best).max(chars);
    }
    let mut counted: HashSet<&str> = HashSet::new();
    let mut total = Acc::default();
    let mut groups: [BTreeMap<String, Acc>; 4] = Default::default();
    let mut report = Report {
        since: since.map(str::to_string),
        ..Report::default()
    };
    for l in lines {
        report.lines += 1;
        if l.event == Event::Dropped {
            report.dropped_lines += l.lines.unwrap_or(0);
            continue;
        }
        if report.first_ts.as_ref().is_none_or(|t| l.ts < *t) {
            report.first_ts = Some(l.ts.clone());
        }
        if report.last_ts.as_ref().is_none_or(|t| l.ts > *t) {
            report.last_ts = Some(l.ts.clone());
        }
        let accepted = (l.event == Event::Accepted && counted.insert(l.id.as_str()))
            .then(|| accepted_chars.get(l.id.as_str()).copied())
            .flatten();
        total.add(l, accepted);
        let model = l.model.clone().unwrap_or_else(|| "(none)".into());
        let task = if l.task.is_empty() {
            "(none)".to_string()
        } else {
            l.task.clone()
        };
        let keys = [
            model.clone(),
            task.clone(),
            if l.language.is_empty() {
                "(unknown)".into()
            } else {
                l.language.clone()
            },
            format!("{model}/{task}"),
        ];
        for (group, key) in groups.iter_mut().zip(keys) {
            group.entry(key).or_default().add(l, accepted);
        }
    }
    report.total = total.finish("total".into());
    let [by_model, by_task, by_language, by_model_task] =
        groups.map(|g| g.into_iter().map(|(k, acc)| acc.finish(k)).collect());
    report.by_model = by_model;
    report.by_task = by_task;
    report.by_language = by_language;
    report.by_model_task = by_model_task;
    report.saving = saving(lines, prices, report.total.cost_usd);
    report
}

fn saving(lines: &[UsageEvent], prices: &[Price], cost: f64) -> Saving {
    let calls: Vec<(u64, u64)> = lines
        .iter()
        .filter(|l| l.event == Event::Call)
        .map(|l| (l.tokens_in.unwrap_or(0), l.tokens_out.unwrap_or(0)))
        .collect();
    let priciest = prices
        .iter()
        .map(|p| {
            let all: f64 = calls
                .iter()
                .map(|(i, o)| cost_usd(p.input_per_mtok, p.output_per_mtok, *i, *o))
                .sum();
            (p.model.clone(), all)
        })
        .filter(|(_, all)| *all > 0.0)
        .max_by(|a, b| a.1.total_cmp(&b.1));
    let (priciest_model, all_on_priciest_usd) = match priciest {
        Some((model, all)) => (Some(model), all),
        None => (None, 0.0),
    };
    Saving {
        cost_usd: cost,
        priciest_model,
        all_on_priciest_usd,
        saved_usd: (all_on_priciest_usd - cost).max(0.0),
        ratio: (cost > 0.0).then(|| all_on_priciest_usd / cost),
    }
}

/// The report as a table for a terminal.
pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let span = match (&report.first_ts, &report.last_ts) {
        (Some(a), Some(b)) => format!("{} – {}", &a[..a.len().min(16)], &b[..b.len().min(16)]),
        _ => "no usage recorded".into(),
    };
    let _ = writeln!(
        out,
        "Pilotfish usage{}: {span} UTC, {} lines",
        report
            .since
            .as_deref()
            .map(|s| format!(" since {}", &s[..s.len().min(16)]))
            .unwrap_or_default(),
        report.lines
    );
    if report.dropped_lines + report.unreadable_lines > 0 {
        let _ = writeln!(
            out,
            "({} lines dropped by a full queue, {} unreadable)",
            report.dropped_lines, report.unreadable_lines
        );
    }
    table(&mut out, "model", &report.by_model, &report.total);
    table(&mut out, "task", &report.by_task, &report.total);
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<16} {:>6} {:>9} {:>8}",
        "language", "shown", "accepted", "rate"
    );
    for r in report.by_language.iter().filter(|r| r.shown > 0) {
        let _ = writeln!(
            out,
            "{:<16} {:>6} {:>9} {:>8}",
            cut(&r.key, 16),
            r.shown,
            r.accepted,
            pct(r.acceptance_rate)
        );
    }
    let s = &report.saving;
    out.push('\n');
    match (&s.priciest_model, s.ratio) {
        (Some(model), Some(ratio)) => {
            let _ = writeln!(
                out,
                "Routing saved ${:.4} ({ratio:.1}× cheaper): ${:.4} spent; every call on {model} would have cost ${:.4}",
                s.saved_usd, s.cost_usd, s.all_on_priciest_usd
            );
        }
        (Some(model), None) => {
            let _ = writeln!(
                out,
                "Routing saved ${:.4}: nothing spent; every call on {model} would have cost ${:.4}",
                s.saved_usd, s.all_on_priciest_usd
            );
        }
        (None, _) => {
            let _ = writeln!(
                out,
                "${:.4} spent; no configured model has a price, so nothing to compare with",
                s.cost_usd
            );
        }
    }
    out
}

fn table(out: &mut String, what: &str, rows: &[Row], total: &Row) {
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<22} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>9} {:>9} {:>10}",
        what,
        "reqs",
        "calls",
        "cache",
        "p50",
        "p95",
        "ttft50",
        "shown",
        "acc%",
        "chkfail",
        "tok in",
        "tok out",
        "cost $"
    );
    for r in rows.iter().chain(std::iter::once(total)) {
        let _ = writeln!(
            out,
            "{:<22} {:>6} {:>6} {:>6} {:>7} {:>7} {:>7} {:>6} {:>6} {:>7} {:>9} {:>9} {:>10.4}",
            cut(&r.key, 22),
            r.requests,
            r.model_calls,
            pct(r.cache_hit_rate),
            ms(r.p50_ms),
            ms(r.p95_ms),
            ms(r.ttft_p50_ms),
            r.shown,
            pct(r.acceptance_rate),
            pct(r.check_failure_rate),
            r.tokens_in,
            r.tokens_out,
            r.cost_usd
        );
    }
}

fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        s.to_string()
    } else {
        s.chars().take(width - 1).chain(['…']).collect()
    }
}

fn pct(rate: Option<f64>) -> String {
    rate.map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
}

fn ms(v: Option<u64>) -> String {
    match v {
        None => "-".into(),
        Some(ms) if ms < 10_000 => format!("{ms}ms"),
        Some(ms) => format!("{:.0}s", ms as f64 / 1000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A line from a compact description: event, id, model, task, cache, outcome, ms,
    /// tokens (in, out), cost.
    #[allow(clippy::too_many_arguments)]
    fn l(
        event: Event,
        id: &str,
        model: &str,
        task: &str,
        cache: Option<CacheUse>,
        outcome: Option<Outcome>,
        ms: Option<u64>,
        tokens: (u64, u64),
        cost: f64,
    ) -> UsageEvent {
        UsageEvent {
            ts: format!("2026-05-01T10:00:00.{:03}Z", id.len()),
            event,
            id: id.into(),
            task: task.into(),
            language: "python".into(),
            model: Some(model.into()),
            ms,
            ttft_ms: ms.map(|m| m / 2),
            tokens_in: (event == Event::Call).then_some(tokens.0),
            tokens_out: (event == Event::Call).then_some(tokens.1),
            cost_usd: (event == Event::Call).then_some(cost),
            cache,
            outcome,
            ..UsageEvent::default()
        }
    }

    fn prices() -> Vec<Price> {
        vec![
            Price {
                model: "fast".into(),
                input_per_mtok: 0.0,
                output_per_mtok: 0.0,
            },
            Price {
                model: "cloud".into(),
                input_per_mtok: 3.0,
                output_per_mtok: 15.0,
            },
        ]
    }

    fn session() -> Vec<UsageEvent> {
        use CacheUse::*;
        use Event::*;
        use Outcome::*;
        let mut accepted = l(
            Accepted,
            "c1",
            "fast",
            "complete",
            None,
            None,
            None,
            (0, 0),
            0.0,
        );
        accepted.accepted_chars = Some(4);
        let mut accepted_again = accepted.clone();
        accepted_again.accepted_chars = Some(6);
        let mut shown = l(
            Shown,
            "c1",
            "fast",
            "complete",
            None,
            None,
            None,
            (0, 0),
            0.0,
        );
        shown.chars = Some(6);
        vec![
            l(
                Call,
                "c1",
                "fast",
                "complete",
                Some(Miss),
                Some(Ok),
                Some(40),
                (100, 10),
                0.0,
            ),
            shown.clone(),
            accepted,
            accepted_again,
            l(
                Cache,
                "c2",
                "fast",
                "complete",
                Some(Hit),
                Some(Ok),
                Some(1),
                (0, 0),
                0.0,
            ),
            l(
                Cache,
                "c3",
                "fast",
                "complete",
                Some(TypedAhead),
                Some(Ok),
                Some(1),
                (0, 0),
                0.0,
            ),
            l(
                Call,
                "c4",
                "fast",
                "complete",
                Some(Miss),
                Some(Superseded),
                Some(5),
                (0, 0),
                0.0,
            ),
            l(
                Call,
                "c5",
                "fast",
                "complete",
                Some(Miss),
                Some(Cancelled),
                Some(7),
                (0, 0),
                0.0,
            ),
            l(
                Call,
                "c6",
                "fast",
                "complete",
                Some(Prefetch),
                Some(Empty),
                Some(80),
                (100, 0),
                0.0,
            ),
            l(
                Call,
                "a1",
                "fast",
                "refactor",
                Some(Miss),
                Some(CheckFailed),
                Some(900),
                (500, 200),
                0.0,
            ),
            l(
                Call,
                "a1",
                "cloud",
                "refactor",
                Some(Miss),
                Some(Ok),
                Some(2000),
                (1000, 200),
                0.006,
            ),
            l(
                Call,
                "a2",
                "cloud",
                "explain",
                Some(Miss),
                Some(Error),
                Some(30),
                (0, 0),
                0.0,
            ),
            UsageEvent {
                ts: "2026-05-01T11:00:00.000Z".into(),
                event: Dropped,
                lines: Some(3),
                ..UsageEvent::default()
            },
        ]
    }

    #[test]
    fn a_session_gives_counts_rates_and_costs() {
        let r = report(&session(), &prices(), None);
        let t = &r.total;
        assert_eq!((t.requests, t.model_calls, t.prefetches), (8, 7, 1));
        assert_eq!((t.cache_hits, t.typed_ahead), (1, 1));
        assert_eq!(t.cache_hit_rate, Some(2.0 / 8.0));
        assert_eq!((t.shown, t.accepted, t.accepted_chars), (1, 1, 6));
        assert_eq!(t.acceptance_rate, Some(1.0));
        assert_eq!((t.superseded, t.cancelled, t.empty, t.failed), (1, 1, 1, 1));
        assert_eq!(t.check_failed, 1);
        assert_eq!(t.check_failure_rate, Some(0.5), "1 of 2 action answers");
        assert_eq!((t.tokens_in, t.tokens_out), (1700, 410));
        assert!((t.cost_usd - 0.006).abs() < 1e-12);
        assert_eq!(r.dropped_lines, 3);
        // Latency over answered calls only: 40, 80, 900, 2000.
        assert_eq!(
            (t.p50_ms, t.p95_ms, t.ttft_p50_ms),
            (Some(80), Some(2000), Some(40))
        );

        let by = |rows: &[Row], key: &str| rows.iter().find(|r| r.key == key).cloned().unwrap();
        let fast = by(&r.by_model, "fast");
        assert_eq!(
            (fast.requests, fast.model_calls, fast.check_failed),
            (6, 5, 1)
        );
        assert_eq!(fast.check_failure_rate, Some(1.0));
        let cloud_refactor = by(&r.by_model_task, "cloud/refactor");
        assert_eq!(cloud_refactor.check_failure_rate, Some(0.0));
        assert_eq!(by(&r.by_task, "explain").failed, 1);
        assert_eq!(by(&r.by_language, "python").acceptance_rate, Some(1.0));

        // Every call's tokens on the cloud model: (1700 × 3 + 410 × 15) / 1e6.
        let s = &r.saving;
        assert_eq!(s.priciest_model.as_deref(), Some("cloud"));
        assert!((s.all_on_priciest_usd - 0.01125).abs() < 1e-12);
        assert!((s.saved_usd - 0.00525).abs() < 1e-12);
        assert!((s.ratio.unwrap() - 1.875).abs() < 1e-9);
    }

    #[test]
    fn empty_logs_and_free_models_say_so() {
        let r = report(&[], &prices(), Some("2026-05-01T00:00:00.000Z"));
        assert_eq!(r.total.requests, 0);
        assert_eq!(r.total.cache_hit_rate, None);
        assert!(render(&r).contains("no usage recorded"));
        let free = report(&session(), &prices()[..1], None);
        assert_eq!(free.saving.priciest_model, None);
        assert!(render(&free).contains("no configured model has a price"));
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let cases: [(&[u64], u32, Option<u64>); 5] = [
            (&[], 50, None),
            (&[7], 95, Some(7)),
            (&[1, 2, 3, 4], 50, Some(2)),
            (&[1, 2, 3, 4], 95, Some(4)),
            (&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 90, Some(9)),
        ];
        for (values, p, want) in cases {
            assert_eq!(percentile(values, p), want, "{values:?} p{p}");
        }
    }

    #[test]
    fn the_table_names_every_model_and_the_saving() {
        let text = render(&report(&session(), &prices(), None));
        for needle in [
            "fast",
            "cloud",
            "refactor",
            "total",
            "Routing saved $0.005",
            "1.9× cheaper",
        ] {
            assert!(text.contains(needle), "{needle}:\n{text}");
        }
    }
}
