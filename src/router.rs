//! Routing: (task, features of the target, privacy, model states, the day's spend, config)
//! → a decision: the candidate chain in order, each candidate kept or dropped with the
//! reason. Pure: no I/O, no clock, no async; everything it needs comes in as data.
//!
//! STUB — to be completed.

use std::collections::HashMap;

use crate::config::Config;
use crate::syntax::features::Features;

/// The live state of a model, as the resilience layer sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelState {
    #[default]
    Healthy,
    /// Consecutive failures opened the circuit; closed again (half-open) after `for_ms`.
    CircuitOpen { for_ms: u64 },
    /// The provider said 429/529; retry after `for_ms`.
    Cooling { for_ms: u64 },
    /// A health probe failed (local endpoints are probed in the background).
    Down,
}

/// What the router is asked.
#[derive(Debug, Clone)]
pub struct RouteRequest<'a> {
    /// `complete`, `explain`, `refactor`, `review`, or an `[actions.*]` name.
    pub task: &'a str,
    pub features: &'a Features,
    /// The document's path (for `privacy.local_only` and rules' `paths`).
    pub path: &'a str,
    /// Secrets found in what would be sent.
    pub secrets_found: usize,
    /// Estimated prompt tokens (for context-window fit).
    pub prompt_tokens: u32,
}

/// The world the decision is made in.
#[derive(Debug, Clone, Default)]
pub struct RouteState {
    pub models: HashMap<String, ModelState>,
    pub spent_today_usd: f64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub model: String,
    pub kept: bool,
    /// Why it was kept or dropped, in a few words (`"circuit open for 20 s"`).
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub task: String,
    /// Where the chain came from: `"rules[2]"` or `"routes.explain"`.
    pub chain_source: String,
    /// Why that source (`"rule 2: language rust, 120 lines >= 80"`).
    pub why: String,
    pub candidates: Vec<Verdict>,
    /// True when the budget dropped a cloud model (the caller tells the user once).
    pub budget_exhausted: bool,
}

impl Decision {
    /// The models to try, in order.
    pub fn chain(&self) -> impl Iterator<Item = &str> {
        self.candidates
            .iter()
            .filter(|v| v.kept)
            .map(|v| v.model.as_str())
    }
}

/// Decides the chain for `request`.
pub fn decide(config: &Config, request: &RouteRequest<'_>, state: &RouteState) -> Decision {
    let _ = state;
    let chain = config.routes.get(request.task).cloned().unwrap_or_default();
    Decision {
        task: request.task.to_string(),
        chain_source: format!("routes.{}", request.task),
        why: "default chain for the task".into(),
        candidates: chain
            .into_iter()
            .map(|model| Verdict {
                model,
                kept: true,
                reason: "configured".into(),
            })
            .collect(),
        budget_exhausted: false,
    }
}
