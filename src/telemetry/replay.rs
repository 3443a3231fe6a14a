//! `pilotfish replay`: every logged request decided again under another configuration,
//! without calling a model — which model it would go to, what it would cost (its logged
//! tokens × the other configuration's prices, with that configuration's daily budget applied
//! day by day) and how long it would take (each model's latencies as the log recorded them).
//! Pure: lines and a router in, a report out; [`render`] makes the terminal table.
//!
//! A request is the model calls of one request id (an escalated action made several); it is
//! re-decided from the routing facts of its first call. Requests whose target features are
//! not in the log (completion without rules that read them, or lines from an older version)
//! are re-decided from what the log has — task, language, path, prompt size, secrets — and
//! counted in `partial_facts`.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;

use serde::Serialize;

use super::line::{Event, UsageEvent, cost_usd};
use super::stats::{Price, percentile};
use crate::router::{RouteRequest, RouteState, Router};
use crate::syntax::Language;

/// How one task's requests would change.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TaskReplay {
    pub task: String,
    pub requests: u64,
    /// Requests whose first model would change.
    pub changed: u64,
    /// `from → to` and how many requests move that way.
    pub moves: BTreeMap<String, u64>,
    /// Requests the other configuration routes to no model at all.
    pub no_model: u64,
    pub cost_before_usd: f64,
    pub cost_after_usd: f64,
    pub p50_ms_before: Option<u64>,
    pub p50_ms_after: Option<u64>,
    pub p95_ms_before: Option<u64>,
    pub p95_ms_after: Option<u64>,
    /// Requests whose new model has no recorded latency in the log.
    pub latency_unknown: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ReplayReport {
    pub requests: u64,
    /// Requests re-decided without their target's features (see the module's top).
    pub partial_facts: u64,
    pub by_task: Vec<TaskReplay>,
    pub total: TaskReplay,
}

/// One request as the log has it.
struct Request<'a> {
    first: &'a UsageEvent,
    cost: f64,
    ms: u64,
    tokens: (u64, u64),
}

/// Recorded latencies, per (model, task) and per model.
struct Latencies {
    by_model_task: HashMap<(String, String), Vec<u64>>,
    by_model: HashMap<String, Vec<u64>>,
}

impl Latencies {
    fn of(lines: &[UsageEvent]) -> Latencies {
        let mut by_model_task: HashMap<(String, String), Vec<u64>> = HashMap::new();
        let mut by_model: HashMap<String, Vec<u64>> = HashMap::new();
        for l in lines.iter().filter(|l| l.event == Event::Call) {
            let (Some(model), Some(ms), Some(outcome)) = (&l.model, l.ms, l.outcome) else {
                continue;
            };
            if outcome.answered() {
                by_model_task
                    .entry((model.clone(), l.task.clone()))
                    .or_default()
                    .push(ms);
                by_model.entry(model.clone()).or_default().push(ms);
            }
        }
        for v in by_model_task.values_mut().chain(by_model.values_mut()) {
            v.sort_unstable();
        }
        Latencies {
            by_model_task,
            by_model,
        }
    }

    /// The median of `model`'s recorded latencies on `task`, else on any task.
    fn expected(&self, model: &str, task: &str) -> Option<u64> {
        self.by_model_task
            .get(&(model.to_string(), task.to_string()))
            .or_else(|| self.by_model.get(model))
            .and_then(|v| percentile(v, 50))
    }
}

/// Replays `lines` under `router` (the other configuration's) with its `prices`.
pub fn replay(lines: &[UsageEvent], router: &Router, prices: &[Price]) -> ReplayReport {
    let latencies = Latencies::of(lines);
    let price = |model: &str| prices.iter().find(|p| p.model == model);
    // Requests in the order they were made.
    let mut order: Vec<&str> = Vec::new();
    let mut requests: HashMap<&str, Request> = HashMap::new();
    let mut calls: Vec<&UsageEvent> = lines.iter().filter(|l| l.event == Event::Call).collect();
    calls.sort_by(|a, b| a.ts.cmp(&b.ts));
    for l in calls {
        let r = requests.entry(l.id.as_str()).or_insert_with(|| {
            order.push(l.id.as_str());
            Request {
                first: l,
                cost: 0.0,
                ms: 0,
                tokens: (0, 0),
            }
        });
        r.cost += l.spent_usd();
        r.ms += l.ms.unwrap_or(0);
        if let (Some(i), Some(o)) = (l.tokens_in, l.tokens_out) {
            // The answer that served the request: the last call with tokens.
            r.tokens = (i, o);
        }
    }

    let mut report = ReplayReport::default();
    let mut tasks: BTreeMap<String, (TaskReplay, Vec<u64>, Vec<u64>)> = BTreeMap::new();
    let mut total = (TaskReplay::default(), Vec::new(), Vec::new());
    let mut spent_by_day: HashMap<String, f64> = HashMap::new();
    for id in order {
        let Some(r) = requests.get(id) else { continue };
        let first = r.first;
        let language = Language::detect(&first.language, "");
        let facts = first.facts.clone().unwrap_or_default();
        if !facts.features {
            report.partial_facts += 1;
        }
        let features = facts.to_features(language);
        let request = RouteRequest {
            task: &first.task,
            features: &features,
            path: &facts.path,
            workspace_root: facts.root.as_deref(),
            secrets_found: facts.secrets,
            prompt_tokens: facts.prompt_tokens,
        };
        let day = first.day().to_string();
        let state = RouteState {
            models: HashMap::new(),
            spent_today_usd: spent_by_day.get(&day).copied().unwrap_or(0.0),
        };
        let decision = router.decide(&request, &state);
        let after = decision.chain().next().map(str::to_string);
        let before = first.model.clone().unwrap_or_default();
        let cost_after = after.as_deref().and_then(price).map_or(0.0, |p| {
            cost_usd(p.input_per_mtok, p.output_per_mtok, r.tokens.0, r.tokens.1)
        });
        *spent_by_day.entry(day).or_default() += cost_after;
        let expected = after
            .as_deref()
            .and_then(|m| latencies.expected(m, &first.task));
        report.requests += 1;
        let entry = tasks
            .entry(first.task.clone())
            .or_insert_with(|| (TaskReplay::default(), Vec::new(), Vec::new()));
        for (t, before_ms, after_ms) in [&mut *entry, &mut total] {
            t.requests += 1;
            t.cost_before_usd += r.cost;
            t.cost_after_usd += cost_after;
            before_ms.push(r.ms);
            match &after {
                None => t.no_model += 1,
                Some(model) => {
                    if *model != before {
                        t.changed += 1;
                        *t.moves.entry(format!("{before} → {model}")).or_default() += 1;
                    }
                    match expected {
                        Some(ms) => after_ms.push(ms),
                        None => t.latency_unknown += 1,
                    }
                }
            }
        }
    }
    let finish = |key: String, (mut t, mut before, mut after): (TaskReplay, Vec<u64>, Vec<u64>)| {
        t.task = key;
        before.sort_unstable();
        after.sort_unstable();
        t.p50_ms_before = percentile(&before, 50);
        t.p95_ms_before = percentile(&before, 95);
        t.p50_ms_after = percentile(&after, 50);
        t.p95_ms_after = percentile(&after, 95);
        t
    };
    report.by_task = tasks.into_iter().map(|(k, v)| finish(k, v)).collect();
    report.total = finish("total".into(), total);
    report
}

/// The replay as a table for a terminal.
pub fn render(report: &ReplayReport, config_name: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Replay of {} requests under {config_name} (no model called)",
        report.requests
    );
    if report.partial_facts > 0 {
        let _ = writeln!(
            out,
            "{} of them re-decided without their target's features (not in the log): from task, language, path and prompt size",
            report.partial_facts
        );
    }
    out.push('\n');
    let _ = writeln!(
        out,
        "{:<12} {:>6} {:>8} {:>12} {:>12} {:>15} {:>15}",
        "task", "reqs", "changed", "cost before", "cost after", "p50/p95 before", "p50/p95 after"
    );
    let ms = |v: Option<u64>| v.map_or("-".to_string(), |ms| ms.to_string());
    for t in report.by_task.iter().chain(std::iter::once(&report.total)) {
        let _ = writeln!(
            out,
            "{:<12} {:>6} {:>8} {:>12.4} {:>12.4} {:>15} {:>15}",
            t.task,
            t.requests,
            t.changed,
            t.cost_before_usd,
            t.cost_after_usd,
            format!("{}/{} ms", ms(t.p50_ms_before), ms(t.p95_ms_before)),
            format!("{}/{} ms", ms(t.p50_ms_after), ms(t.p95_ms_after)),
        );
    }
    let total = &report.total;
    if !total.moves.is_empty() {
        out.push('\n');
        for (task, t) in report.by_task.iter().map(|t| (&t.task, t)) {
            for (m, n) in &t.moves {
                let _ = writeln!(out, "{task}: {m} ×{n}");
            }
        }
    }
    if total.no_model > 0 {
        let _ = writeln!(
            out,
            "{} requests would find no model under {config_name}",
            total.no_model
        );
    }
    if total.latency_unknown > 0 {
        let _ = writeln!(
            out,
            "{} requests go to a model with no latency in the log (left out of p50/p95 after)",
            total.latency_unknown
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadedConfig, Origin};
    use crate::telemetry::line::{CacheUse, Outcome, RouteFacts};

    fn router(toml: &str) -> (Router, Vec<Price>) {
        let config = LoadedConfig::from_toml_str(toml, Origin::BuiltIn)
            .unwrap()
            .config;
        let prices = config
            .models
            .iter()
            .map(|(name, m)| Price {
                model: name.clone(),
                input_per_mtok: m.cost_input_per_mtok,
                output_per_mtok: m.cost_output_per_mtok,
            })
            .collect();
        (Router::new(&config).unwrap(), prices)
    }

    const MODELS: &str = r#"
[models.local]
provider = "ollama"
url = "http://127.0.0.1:11434"
model = "m"
fim = "native"
[models.cloud]
provider = "anthropic"
url = "https://api.anthropic.com"
model = "c"
local = false
cost_input_per_mtok = 10.0
cost_output_per_mtok = 10.0
"#;

    #[allow(clippy::too_many_arguments)]
    fn call(
        id: &str,
        ts: &str,
        task: &str,
        model: &str,
        ms: u64,
        tokens: (u64, u64),
        cost: f64,
        lines: Option<u32>,
    ) -> UsageEvent {
        UsageEvent {
            ts: ts.into(),
            event: Event::Call,
            id: id.into(),
            task: task.into(),
            language: "rust".into(),
            model: Some(model.into()),
            ms: Some(ms),
            tokens_in: Some(tokens.0),
            tokens_out: Some(tokens.1),
            cost_usd: Some(cost),
            cache: Some(CacheUse::Miss),
            outcome: Some(Outcome::Ok),
            facts: lines.map(|lines| RouteFacts {
                path: "/w/src/a.rs".into(),
                root: Some("/w".into()),
                features: true,
                node_kind: "function_item".into(),
                lines,
                tokens: lines * 10,
                ..RouteFacts::default()
            }),
            ..UsageEvent::default()
        }
    }

    /// A week of a user's log under "everything explain goes to the cloud".
    fn log() -> Vec<UsageEvent> {
        vec![
            call(
                "r1",
                "2026-05-01T09:00:00.000Z",
                "explain",
                "cloud",
                3000,
                (40_000, 10_000),
                0.5,
                Some(20),
            ),
            call(
                "r2",
                "2026-05-01T10:00:00.000Z",
                "explain",
                "cloud",
                5000,
                (40_000, 10_000),
                0.5,
                Some(200),
            ),
            call(
                "r3",
                "2026-05-01T11:00:00.000Z",
                "explain",
                "cloud",
                4000,
                (40_000, 10_000),
                0.5,
                Some(30),
            ),
            call(
                "c1",
                "2026-05-01T11:30:00.000Z",
                "complete",
                "local",
                200,
                (300, 10),
                0.0,
                None,
            ),
            call(
                "r4",
                "2026-05-02T09:00:00.000Z",
                "explain",
                "local",
                9000,
                (40_000, 10_000),
                0.0,
                Some(40),
            ),
        ]
    }

    #[test]
    fn a_rule_that_keeps_small_functions_local_saves_what_it_should() {
        // The other config: explain on the cloud only for functions of 100+ lines.
        let (r, prices) = router(&format!(
            "{MODELS}[routes]\ncomplete = [\"local\"]\nexplain = [\"local\"]\n[[rules]]\ntask = \"explain\"\nwhen = {{ min_lines = 100 }}\nuse = [\"cloud\"]\n"
        ));
        let report = replay(&log(), &r, &prices);
        assert_eq!((report.requests, report.partial_facts), (5, 1));
        let explain = report.by_task.iter().find(|t| t.task == "explain").unwrap();
        assert_eq!((explain.requests, explain.changed), (4, 2));
        assert_eq!(explain.moves.get("cloud → local"), Some(&2));
        assert!((explain.cost_before_usd - 1.5).abs() < 1e-9);
        assert!(
            (explain.cost_after_usd - 0.5).abs() < 1e-9,
            "only r2 stays in the cloud"
        );
        // Local explains take 9 s as recorded; the cloud one 4 s (its median).
        assert_eq!(explain.p50_ms_after, Some(9000));
        assert_eq!(explain.p50_ms_before, Some(4000));
        let complete = report
            .by_task
            .iter()
            .find(|t| t.task == "complete")
            .unwrap();
        assert_eq!((complete.changed, complete.no_model), (0, 0));
        let text = render(&report, "other.toml");
        assert!(text.contains("explain: cloud → local ×2"), "{text}");
        assert!(text.contains("1 of them re-decided without"), "{text}");
    }

    #[test]
    fn the_other_configs_budget_holds_day_by_day() {
        // Everything to the cloud, with a budget one request spends.
        let (r, prices) = router(&format!(
            "{MODELS}[routes]\ncomplete = [\"local\"]\nexplain = [\"cloud\", \"local\"]\n[budget]\ndaily_usd = 0.5\n"
        ));
        let report = replay(&log(), &r, &prices);
        let explain = report.by_task.iter().find(|t| t.task == "explain").unwrap();
        // Day one: r1 spends the budget, r2 and r3 fall back to local; day two: r4 goes to
        // the cloud again.
        assert_eq!(explain.moves.get("cloud → local"), Some(&2));
        assert_eq!(explain.moves.get("local → cloud"), Some(&1));
        assert!((explain.cost_after_usd - 1.0).abs() < 1e-9);
    }

    #[test]
    fn an_escalated_request_is_one_request_and_an_unknown_model_has_no_latency() {
        let mut lines = log();
        let mut failed = call(
            "r5",
            "2026-05-03T09:00:00.000Z",
            "refactor",
            "local",
            800,
            (100, 100),
            0.0,
            Some(10),
        );
        failed.outcome = Some(Outcome::CheckFailed);
        lines.push(failed);
        lines.push(call(
            "r5",
            "2026-05-03T09:00:01.000Z",
            "refactor",
            "cloud",
            2000,
            (100, 100),
            0.002,
            None,
        ));
        let (r, prices) = router(&format!(
            "{MODELS}[models.new]\nprovider = \"ollama\"\nurl = \"http://127.0.0.1:1\"\nmodel = \"n\"\n[routes]\ncomplete = [\"local\"]\nrefactor = [\"new\"]\nexplain = [\"local\"]\n"
        ));
        let report = replay(&lines, &r, &prices);
        let refactor = report
            .by_task
            .iter()
            .find(|t| t.task == "refactor")
            .unwrap();
        assert_eq!(refactor.requests, 1);
        assert!((refactor.cost_before_usd - 0.002).abs() < 1e-12);
        assert_eq!(refactor.p50_ms_before, Some(2800), "what the user waited");
        assert_eq!(refactor.moves.get("local → new"), Some(&1));
        assert_eq!(refactor.latency_unknown, 1);
    }
}
