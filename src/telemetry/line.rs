//! One line of the usage log, as written and as read back: plain data with serde, and the
//! builders the engine uses to describe what happened. No I/O, no clock (the writer stamps
//! the time).
//!
//! Every line has `ts` (UTC, RFC 3339 with milliseconds; written first, so that a line's day
//! is its first bytes) and `event`:
//! - `call`: one model call (a completion's, a prefetch, an action's, each step of an
//!   escalation): the model and endpoint, the route it came from and the fallbacks that failed,
//!   latency and time to first token, tokens and cost, the cache use (`miss`, `prefetch`), the
//!   outcome, and the routing facts that `replay` re-decides from;
//! - `cache`: an answer served without a model call (`hit`, `typed-ahead`);
//! - `shown`: a suggestion delivered to the editor (`chars` long);
//! - `accepted`: the editor ran `pilotfish.accept` for it (`accepted_chars` of it);
//! - `dropped`: the writer's queue overflowed and `lines` lines were lost.
//!
//! Readers ignore fields they do not know and default the ones a line lacks, so that old
//! logs stay readable.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::ModelConfig;
use crate::resilience::Attempt;
use crate::router::{Decision, RouteRequest};
use crate::syntax::Language;
use crate::syntax::features::{Features, SensitiveCall, SensitiveKind};

/// What a line records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Event {
    #[default]
    Call,
    Cache,
    Shown,
    Accepted,
    Dropped,
}

/// How the cache took part in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CacheUse {
    /// Served from the cache: the same prompt was answered before.
    Hit,
    /// Served from the cache: the user typed the start of a suggestion shown before.
    TypedAhead,
    /// Not in the cache: a model call.
    Miss,
    /// A model call made in the background for a request not asked yet.
    Prefetch,
}

/// How a request or model call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// An answer worth showing.
    Ok,
    /// The model answered, but nothing worth showing.
    Empty,
    /// The editor cancelled the request (`$/cancelRequest`, progress cancel, a closed
    /// document); the model call was dropped.
    Cancelled,
    /// A newer request for the same document took its place; the model call was dropped.
    Superseded,
    /// No answer before the request's deadline.
    Deadline,
    /// The model did not answer within its `timeout_ms`.
    Timeout,
    /// Every model tried failed.
    Error,
    /// An action's answer failed its strict check (a rewrite that does not parse, a
    /// malformed review, an empty explanation).
    CheckFailed,
}

impl Outcome {
    /// How a chain run that produced no answer ended, from its last attempt.
    pub fn of_failed_chain(attempts: &[Attempt]) -> Outcome {
        match attempts.last() {
            Some(a) if a.error.as_deref() == Some(crate::resilience::DEADLINE_REACHED) => {
                Outcome::Deadline
            }
            Some(a) if a.timed_out => Outcome::Timeout,
            _ => Outcome::Error,
        }
    }

    /// The model produced an answer (whether or not it was used): its latency counts.
    pub fn answered(self) -> bool {
        matches!(self, Outcome::Ok | Outcome::Empty | Outcome::CheckFailed)
    }

    /// The call failed (no answer, for a reason other than the user's).
    pub fn failed(self) -> bool {
        matches!(self, Outcome::Deadline | Outcome::Timeout | Outcome::Error)
    }
}

/// A model of the chain tried before the one that answered, and why it failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fallback {
    pub model: String,
    pub endpoint: String,
    pub error: String,
    pub ms: u64,
}

/// Where a call's model came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RouteNote {
    /// `routes.explain` or `rules[2]`.
    pub source: String,
    /// Why that source, in plain words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub why: String,
    /// The failed tries before the answer (or all of them, when none answered).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<Fallback>,
}

impl RouteNote {
    /// The route of `decision` and the failed tries among `attempts`.
    pub fn of(decision: &Decision, attempts: &[Attempt]) -> RouteNote {
        RouteNote {
            source: decision.chain_source.clone(),
            why: decision.why.clone(),
            fallbacks: attempts
                .iter()
                .filter_map(|a| {
                    Some(Fallback {
                        model: a.model.to_string(),
                        endpoint: a.endpoint.to_string(),
                        error: a.error.clone()?,
                        ms: a.ms,
                    })
                })
                .collect(),
        }
    }
}

/// What routing read for a request: enough for `pilotfish replay` to decide it again under
/// another configuration. `features = false` when only the language was known (completion
/// without rules that read the target), and the target's numbers are zero.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RouteFacts {
    /// The document's path (for `privacy.local_only` and rules' `paths`).
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root: Option<String>,
    #[serde(default)]
    pub features: bool,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub node_kind: String,
    #[serde(default)]
    pub lines: u32,
    #[serde(default)]
    pub tokens: u32,
    #[serde(default)]
    pub branches: u32,
    #[serde(default)]
    pub nesting: u32,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sensitive: Vec<String>,
    #[serde(default)]
    pub syntax_errors: u32,
    #[serde(default)]
    pub secrets: usize,
    #[serde(default)]
    pub prompt_tokens: u32,
}

/// The node kind of [`Features::at_cursor`]: the target was not walked.
const AT_CURSOR: &str = "cursor";

impl RouteFacts {
    /// The facts of a routing request.
    pub fn of(request: &RouteRequest<'_>) -> RouteFacts {
        let f = request.features;
        RouteFacts {
            path: request.path.to_string(),
            root: request.workspace_root.map(str::to_string),
            features: f.node_kind != AT_CURSOR,
            node_kind: f.node_kind.clone(),
            lines: f.lines,
            tokens: f.tokens,
            branches: f.branches,
            nesting: f.max_nesting,
            sensitive: f
                .sensitive_calls
                .iter()
                .map(|c| sensitive_name(c.kind).to_string())
                .collect(),
            syntax_errors: f.syntax_errors,
            secrets: request.secrets_found,
            prompt_tokens: request.prompt_tokens,
        }
    }

    /// The features these facts describe, for `language`.
    pub fn to_features(&self, language: Language) -> Features {
        if !self.features {
            return Features::at_cursor(language);
        }
        Features {
            language,
            node_kind: self.node_kind.clone(),
            lines: self.lines,
            tokens: self.tokens,
            branches: self.branches,
            max_nesting: self.nesting,
            sensitive_calls: self
                .sensitive
                .iter()
                .filter_map(|name| sensitive_kind(name))
                .map(|kind| SensitiveCall {
                    kind,
                    line: 0,
                    text: Arc::from(""),
                })
                .collect(),
            syntax_errors: self.syntax_errors,
        }
    }
}

const SENSITIVE_KINDS: [SensitiveKind; 6] = [
    SensitiveKind::Exec,
    SensitiveKind::Eval,
    SensitiveKind::Sql,
    SensitiveKind::Crypto,
    SensitiveKind::Deserialize,
    SensitiveKind::PathFromInput,
];

fn sensitive_name(kind: SensitiveKind) -> &'static str {
    match kind {
        SensitiveKind::Exec => "exec",
        SensitiveKind::Eval => "eval",
        SensitiveKind::Sql => "sql",
        SensitiveKind::Crypto => "crypto",
        SensitiveKind::Deserialize => "deserialize",
        SensitiveKind::PathFromInput => "path-from-input",
    }
}

fn sensitive_kind(name: &str) -> Option<SensitiveKind> {
    SENSITIVE_KINDS
        .into_iter()
        .find(|k| sensitive_name(*k) == name)
}

/// Tokens and cost of one model call.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Usage {
    pub tokens_in: u64,
    pub tokens_out: u64,
    /// True when the provider reported no usage and the counts are estimated from the text.
    pub estimated: bool,
    pub cost_usd: f64,
}

impl Usage {
    /// The usage of a call to `model` that sent `sent_chars` of text and got `answer_chars`
    /// back, with the provider's token counts where it reported them (else the one
    /// estimate, [`crate::tokens`]).
    pub fn of(
        model: &ModelConfig,
        reported: (Option<u64>, Option<u64>),
        sent_chars: usize,
        answer_chars: usize,
    ) -> Usage {
        let estimate = |chars: usize| crate::tokens::tokens_for_chars(chars) as u64;
        let tokens_in = reported.0.unwrap_or_else(|| estimate(sent_chars));
        let tokens_out = reported.1.unwrap_or_else(|| estimate(answer_chars));
        Usage {
            tokens_in,
            tokens_out,
            estimated: reported.0.is_none() || reported.1.is_none(),
            cost_usd: cost_usd(
                model.cost_input_per_mtok,
                model.cost_output_per_mtok,
                tokens_in,
                tokens_out,
            ),
        }
    }
}

/// What `tokens_in` and `tokens_out` cost at these prices (USD per million tokens).
pub fn cost_usd(input_per_mtok: f64, output_per_mtok: f64, tokens_in: u64, tokens_out: u64) -> f64 {
    let usd = (tokens_in as f64 * input_per_mtok + tokens_out as f64 * output_per_mtok) / 1e6;
    if usd.is_finite() && usd > 0.0 {
        usd
    } else {
        0.0
    }
}

/// One line of the usage log. Which fields an event carries is said at the module's top;
/// the rest are left out of the line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct UsageEvent {
    /// Set by the writer.
    #[serde(default)]
    pub ts: String,
    pub event: Event,
    /// The request: `<process>-<n>`, unique across processes and restarts.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub task: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub language: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteNote>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttft_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_out: Option<u64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub tokens_estimated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheUse>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<Outcome>,
    /// One line: the error, the failed check, or the escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The suggestion's length in characters (`shown`, `accepted`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chars: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_chars: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub facts: Option<RouteFacts>,
    /// The prompt, secrets masked; only with `telemetry.log_prompts = true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,
    /// `dropped`: how many lines were lost.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lines: Option<u64>,
}

impl UsageEvent {
    /// A model call for request `id`.
    pub fn call(id: &str, task: &str, language: Language) -> UsageEvent {
        UsageEvent {
            event: Event::Call,
            id: id.to_string(),
            task: task.to_string(),
            language: language.name().to_string(),
            cache: Some(CacheUse::Miss),
            ..UsageEvent::default()
        }
    }

    /// An answer served from the cache (`hit` or `typed-ahead`) by `model`'s earlier call.
    pub fn cache(
        id: &str,
        task: &str,
        language: Language,
        model: &str,
        cache: CacheUse,
        outcome: Outcome,
        ms: u64,
    ) -> UsageEvent {
        UsageEvent {
            event: Event::Cache,
            id: id.to_string(),
            task: task.to_string(),
            language: language.name().to_string(),
            model: Some(model.to_string()),
            cache: Some(cache),
            outcome: Some(outcome),
            ms: Some(ms),
            ..UsageEvent::default()
        }
    }

    /// The model and endpoint that answered (or were asked last).
    pub fn by(mut self, model: Option<&str>, endpoint: Option<&str>) -> UsageEvent {
        self.model = model.map(str::to_string);
        self.endpoint = endpoint.filter(|e| !e.is_empty()).map(str::to_string);
        self
    }

    pub fn usage(mut self, usage: Usage) -> UsageEvent {
        self.tokens_in = Some(usage.tokens_in);
        self.tokens_out = Some(usage.tokens_out);
        self.tokens_estimated = usage.estimated;
        self.cost_usd = Some(usage.cost_usd);
        self
    }

    /// The USD this line says was spent (0 for anything but a call).
    pub fn spent_usd(&self) -> f64 {
        match self.event {
            Event::Call => self.cost_usd.filter(|c| c.is_finite() && *c > 0.0),
            _ => None,
        }
        .unwrap_or(0.0)
    }

    /// The UTC day of the line (`YYYY-MM-DD`), from its timestamp.
    pub fn day(&self) -> &str {
        self.ts.get(..10).unwrap_or("")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_round_trips_and_leaves_out_what_it_lacks() {
        let e = UsageEvent::cache(
            "a-1",
            "complete",
            Language::Python,
            "fast",
            CacheUse::TypedAhead,
            Outcome::Ok,
            2,
        );
        let text = serde_json::to_string(&e).unwrap();
        assert_eq!(
            text,
            r#"{"ts":"","event":"cache","id":"a-1","task":"complete","language":"python","model":"fast","ms":2,"cache":"typed-ahead","outcome":"ok"}"#
        );
        assert_eq!(serde_json::from_str::<UsageEvent>(&text).unwrap(), e);
        // Unknown fields (a newer writer) are ignored; missing ones default.
        let old: UsageEvent =
            serde_json::from_str(r#"{"ts":"2026-01-02T03:04:05.000Z","event":"call","x":1}"#)
                .unwrap();
        assert_eq!((old.event, old.day()), (Event::Call, "2026-01-02"));
        for (name, outcome) in [
            ("check-failed", Outcome::CheckFailed),
            ("superseded", Outcome::Superseded),
        ] {
            assert_eq!(
                serde_json::from_str::<Outcome>(&format!("\"{name}\"")).unwrap(),
                outcome
            );
        }
    }

    #[test]
    fn usage_from_the_provider_or_estimated() {
        let model: ModelConfig = toml::from_str(
            "provider = \"anthropic\"\nurl = \"https://x\"\nmodel = \"m\"\ncost_input_per_mtok = 3.0\ncost_output_per_mtok = 15.0\n",
        )
        .unwrap();
        let reported = Usage::of(&model, (Some(2_000), Some(1_000)), 1, 1);
        assert_eq!((reported.tokens_in, reported.tokens_out), (2_000, 1_000));
        assert!(!reported.estimated);
        assert!((reported.cost_usd - 0.021).abs() < 1e-12);
        let estimated = Usage::of(&model, (None, Some(7)), 10, 99);
        assert_eq!((estimated.tokens_in, estimated.tokens_out), (3, 7));
        assert!(estimated.estimated);
        assert_eq!(cost_usd(f64::NAN, 1.0, 1, 0), 0.0);
        assert_eq!(cost_usd(-1.0, 0.0, 10, 0), 0.0);
    }

    #[test]
    fn facts_give_back_the_features_routing_read() {
        for name in SENSITIVE_KINDS.map(sensitive_name) {
            assert_eq!(sensitive_kind(name).map(sensitive_name), Some(name));
        }
        let facts = RouteFacts {
            path: "/w/a.py".into(),
            features: true,
            node_kind: "function_definition".into(),
            lines: 90,
            tokens: 800,
            branches: 4,
            nesting: 2,
            sensitive: vec!["sql".into(), "unknown".into()],
            ..RouteFacts::default()
        };
        let f = facts.to_features(Language::Python);
        assert_eq!(
            (f.lines, f.tokens, f.complexity(), f.max_nesting),
            (90, 800, 5, 2)
        );
        assert_eq!(f.sensitive_calls.len(), 1);
        let request = RouteRequest::new("explain", &f, "/w/a.py");
        assert_eq!(RouteFacts::of(&request).sensitive, vec!["sql".to_string()]);
        let bare = RouteFacts::default().to_features(Language::Go);
        assert_eq!(bare.node_kind, AT_CURSOR);
        assert!(!RouteFacts::of(&RouteRequest::new("complete", &bare, "")).features);
    }
}
