//! The one routing input: everything a routing decision needs, gathered in one place for
//! completion, code actions, `pilotfish route` and the other one-shot commands alike — the
//! task, the target's features, the secrets in what would be sent (by the privacy policy),
//! the document's path against the session's workspace root, the prompt's size, each model's
//! live state and the day's spend. [`RouteInput`] holds the facts of the request;
//! [`RouteInput::decide`] adds the live state and asks the session's router, so no caller
//! can route with a forgotten spend or a missing workspace root.
//!
//! Reads the clock and the live state; does no I/O. Building an input for a target walks
//! and scans the target: callers run big ones off the runtime thread.

use std::time::Instant;

use crate::documents::{Snapshot, path_of_uri};
use crate::position::clamp_range;
use crate::redact::contains_secrets;
use crate::resilience::{Health, Work};
use crate::router::{COMPLETE, Decision, RouteRequest, RouteState};
use crate::session::Session;
use crate::syntax::context::CompletionContext;
use crate::syntax::features::{Features, Target, enclosing_target};
use crate::telemetry::UsageLog;
use crate::tokens::estimate_tokens;

/// Tokens a chat prompt spends on instructions and context around the code, for the
/// context-window check of actions (and of `pilotfish route`).
pub const PROMPT_OVERHEAD_TOKENS: u32 = 400;

/// The facts of one request that routing reads.
#[derive(Debug, Clone)]
pub struct RouteInput {
    /// `complete`, `explain`, `refactor`, `review`, or an `[actions.*]` name.
    pub task: String,
    pub features: Features,
    /// The document's file-system path (for `privacy.local_only` and rules' `paths`).
    pub path: String,
    /// Estimated tokens of the prompt (for the context-window fit).
    pub prompt_tokens: u32,
    /// Secrets found in what would be sent; `None` when they were not looked for because
    /// the privacy policy does not route on them.
    pub secrets: Option<usize>,
}

impl RouteInput {
    /// A completion request at `cursor` with its context window `ctx`: the features of the
    /// enclosing target when some rule may apply to completion (from the document's memo),
    /// the window's size, and its secrets when a cloud model could get it unredacted.
    pub fn for_completion(
        session: &Session,
        snapshot: &Snapshot,
        cursor: usize,
        ctx: &CompletionContext,
    ) -> RouteInput {
        let settings = session.completion();
        let features = if settings.rules_apply {
            let target = enclosing_target(
                &snapshot.rope,
                snapshot.tree.as_ref(),
                snapshot.language,
                cursor,
            );
            snapshot.features(&target)
        } else {
            Features::at_cursor(snapshot.language)
        };
        let prompt_tokens = estimate_tokens(&ctx.prefix)
            + estimate_tokens(&ctx.suffix)
            + ctx
                .imports
                .iter()
                .map(|l| estimate_tokens(l))
                .sum::<usize>();
        let secrets = (settings.any_cloud && routes_on_secrets(session)).then(|| {
            ctx.imports
                .iter()
                .map(|l| contains_secrets(l))
                .sum::<usize>()
                + contains_secrets(&ctx.prefix)
                + contains_secrets(&ctx.suffix)
        });
        RouteInput {
            task: COMPLETE.into(),
            features,
            path: path_of_uri(&snapshot.uri),
            prompt_tokens: u32::try_from(prompt_tokens).unwrap_or(u32::MAX),
            secrets,
        }
    }

    /// A request about `target` (a code action, or `pilotfish route` for an action's task):
    /// its features, and the secrets in its code (always counted, so they can be shown).
    /// Walks and scans the whole target: a whole-file selection takes milliseconds, so run
    /// it off the runtime thread.
    pub fn for_target(task: &str, snapshot: &Snapshot, target: &Target) -> RouteInput {
        let features = snapshot.features(target);
        let range = clamp_range(&snapshot.rope, target.range.clone());
        let secrets = contains_secrets(&snapshot.rope.byte_slice(range).to_string());
        RouteInput {
            task: task.to_string(),
            prompt_tokens: features.tokens.saturating_add(PROMPT_OVERHEAD_TOKENS),
            features,
            path: path_of_uri(&snapshot.uri),
            secrets: Some(secrets),
        }
    }

    /// The router's request: this input with the session's workspace root and the secrets
    /// the privacy policy routes on.
    pub fn request<'a>(&'a self, session: &'a Session) -> RouteRequest<'a> {
        let secrets_found = if routes_on_secrets(session) {
            self.secrets.unwrap_or(0)
        } else {
            0
        };
        RouteRequest {
            task: &self.task,
            features: &self.features,
            path: &self.path,
            workspace_root: session.workspace_root(),
            secrets_found,
            prompt_tokens: self.prompt_tokens,
        }
    }

    /// The decision for this input now: the session's rules and routes, each model's state
    /// as `health` sees it, and the day's spend as the usage log has it (every process of the
    /// user, this day).
    pub fn decide(&self, session: &Session, health: &Health, usage: &UsageLog) -> Decision {
        let state = RouteState {
            models: health.snapshot(Work::of_task(&self.task), Instant::now()),
            spent_today_usd: usage.spent_today_usd(),
        };
        session.router().decide(&self.request(session), &state)
    }
}

/// Whether secrets decide the route. With `redact_secrets` on they are masked before any
/// cloud call, so cloud models stay eligible; with it off, any secret keeps the request on
/// local models.
fn routes_on_secrets(session: &Session) -> bool {
    !session.config().privacy.redact_secrets
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{LoadedConfig, Origin};
    use crate::documents::Documents;
    use crate::syntax::Language;

    const KEY_IN_FN: &str =
        "fn f() {\n    let k = \"sk-proj-4f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c\";\n}\n";

    fn session(privacy: &str, spend_limit: &str, root: Option<&str>) -> Session {
        let text = format!(
            r#"
[models.local]
provider = "ollama"
url = "http://127.0.0.1:11434"
model = "m"
fim = "native"
[models.cloud]
provider = "openai"
url = "https://api.example.com/v1"
model = "m"
fim = "native"
cost_input_per_mtok = 1.0
[routes]
complete = ["cloud", "local"]
explain = ["cloud", "local"]
[privacy]
{privacy}
[budget]
{spend_limit}
"#
        );
        let loaded = LoadedConfig::from_toml_str(&text, Origin::BuiltIn).unwrap();
        Session::compile(loaded, root.map(String::from)).unwrap()
    }

    fn snapshot(uri: &str, text: &str) -> Snapshot {
        let mut docs = Documents::default();
        docs.open_parsed(uri, Language::Rust, 1, text);
        docs.snapshot(uri).unwrap()
    }

    fn chain(d: &Decision) -> Vec<&str> {
        d.chain().collect()
    }

    #[test]
    fn a_target_counts_its_secrets_and_the_policy_decides_whether_they_route() {
        let snap = snapshot("file:///w/a.rs", KEY_IN_FN);
        let target = enclosing_target(&snap.rope, snap.tree.as_ref(), Language::Rust, 12);
        let input = RouteInput::for_target("explain", &snap, &target);
        assert_eq!(input.secrets, Some(1));
        assert_eq!(input.path, "/w/a.rs");
        assert_eq!(
            input.prompt_tokens,
            input.features.tokens + PROMPT_OVERHEAD_TOKENS
        );
        let (health, usage) = (Health::new(), UsageLog::off());
        let redacting = session("", "", Some("/w"));
        assert_eq!(input.request(&redacting).secrets_found, 0);
        let d = input.decide(&redacting, &health, &usage);
        assert_eq!(chain(&d), ["cloud", "local"]);
        let strict = session("redact_secrets = false", "", Some("/w"));
        assert_eq!(input.request(&strict).secrets_found, 1);
        assert_eq!(chain(&input.decide(&strict, &health, &usage)), ["local"]);
    }

    #[test]
    fn a_workspace_relative_glob_matches_through_the_session_root() {
        let snap = snapshot("file:///w/private/a.rs", "fn f() {}\n");
        let target = enclosing_target(&snap.rope, snap.tree.as_ref(), Language::Rust, 3);
        let input = RouteInput::for_target("explain", &snap, &target);
        let (health, usage) = (Health::new(), UsageLog::off());
        let privacy = "local_only = [\"private/**\"]";
        let with_root = session(privacy, "", Some("/w"));
        assert_eq!(chain(&input.decide(&with_root, &health, &usage)), ["local"]);
        let without = session(privacy, "", None);
        assert_eq!(
            chain(&input.decide(&without, &health, &usage)),
            ["cloud", "local"]
        );
    }

    #[test]
    fn completion_looks_for_secrets_only_when_they_would_route() {
        let snap = snapshot("file:///w/a.rs", KEY_IN_FN);
        let ctx = crate::syntax::context::extract(
            &snap.rope,
            snap.tree.as_ref(),
            snap.language,
            20,
            Default::default(),
            Default::default(),
        );
        let redacting = session("", "", None);
        let input = RouteInput::for_completion(&redacting, &snap, 20, &ctx);
        assert_eq!(input.task, "complete");
        assert_eq!(input.secrets, None);
        assert!(input.prompt_tokens > 0);
        let strict = session("redact_secrets = false", "", None);
        let input = RouteInput::for_completion(&strict, &snap, 20, &ctx);
        assert_eq!(input.secrets, Some(1));
    }
}
