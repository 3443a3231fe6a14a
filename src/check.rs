//! `pilotfish check`: probes every configured model at each of its endpoints — reachable,
//! the model present on the server, latency of a tiny request of the kind it serves (one
//! token of fill-in-the-middle, or for a chat-only model one token of chat) — and says for
//! each route whether some model in it is live, and where. The report is plain data;
//! `main.rs` prints it and sets the exit code.

use std::time::Instant;

use crate::config::{ModelConfig, Provider};
use crate::prompt::{Fim, build_fim};
use crate::providers::{
    ChatCall, ChatMessage, FimCall, ProviderError, Providers, Thinking, model_listed,
};
use crate::resilience::Remedy;
use crate::session::{Model, Session};
use crate::syntax::Language;
use crate::syntax::context::{CompletionContext, SuggestionShape};

/// The kind of request a model serves, and so the kind of its probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Serves {
    /// Fill-in-the-middle (completion) and chat.
    Fim,
    /// Chat only: actions, and completion through a chat prompt.
    Chat,
}

/// What the probe of one model at one endpoint found.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReport {
    pub name: String,
    pub provider: Provider,
    /// The endpoint probed.
    pub url: String,
    pub serves: Serves,
    /// `Ok(latency of the tiny request in ms)` or the one-line reason it failed.
    pub result: Result<u64, String>,
    /// Notes that do not make the model unusable (e.g. not in the server's list).
    pub notes: Vec<String>,
}

impl ModelReport {
    pub fn is_live(&self) -> bool {
        self.result.is_ok()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteReport {
    pub task: String,
    pub chain: Vec<String>,
    /// The first live model of the chain (`"name at URL"` when it has several endpoints:
    /// the first live one).
    pub live: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub models: Vec<ModelReport>,
    pub routes: Vec<RouteReport>,
}

impl CheckReport {
    /// True when every route has a live model.
    pub fn all_routes_live(&self) -> bool {
        self.routes.iter().all(|r| r.live.is_some())
    }

    pub fn render(&self) -> String {
        let mut out = String::from("models:\n");
        for m in &self.models {
            let status = match (&m.result, m.serves) {
                (Ok(ms), Serves::Fim) => format!("ok, {ms} ms"),
                (Ok(ms), Serves::Chat) => format!("ok, {ms} ms (chat-only: one-token chat probe)"),
                (Err(why), _) => format!("FAILED: {why}"),
            };
            out.push_str(&format!(
                "  {:<12} {:<9} {:<32} {status}\n",
                m.name,
                provider_name(m.provider),
                m.url
            ));
            for note in &m.notes {
                out.push_str(&format!("  {:<12} note: {note}\n", ""));
            }
        }
        out.push_str("routes:\n");
        for r in &self.routes {
            let live = match &r.live {
                Some(model) => format!("ok ({model})"),
                None => "NO LIVE MODEL".into(),
            };
            out.push_str(&format!(
                "  {:<10} [{}] {live}\n",
                r.task,
                r.chain.join(", ")
            ));
        }
        out
    }
}

fn provider_name(p: Provider) -> &'static str {
    match p {
        Provider::Openai => "openai",
        Provider::Ollama => "ollama",
        Provider::Llamacpp => "llamacpp",
        Provider::Anthropic => "anthropic",
    }
}

/// Probes every model of the session at each of its endpoints (concurrently) and every
/// route.
pub async fn check(session: &Session, providers: &Providers) -> CheckReport {
    let config = session.config();
    let probes = config
        .models
        .keys()
        .filter_map(|name| session.model(name))
        .flat_map(|model| {
            model
                .config
                .url
                .iter()
                .map(move |url| probe(model, model.config.at_endpoint(url), providers))
        });
    let models: Vec<ModelReport> = futures_util::future::join_all(probes).await;
    let live_at = |name: &String| {
        let live = models.iter().find(|m| &m.name == name && m.is_live())?;
        let several = config.models.get(name).is_some_and(|m| m.url.len() > 1);
        Some(if several {
            format!("{name} at {}", live.url)
        } else {
            name.clone()
        })
    };
    let routes = config
        .routes
        .iter()
        .map(|(task, chain)| RouteReport {
            task: task.clone(),
            chain: chain.clone(),
            live: chain.iter().find_map(live_at),
        })
        .collect();
    CheckReport { models, routes }
}

/// Probes `model` at one endpoint (`at`: its config with only that endpoint).
async fn probe(model: &Model, at: ModelConfig, providers: &Providers) -> ModelReport {
    let (name, fim, model) = (&model.name, model.fim, &at);
    let mut report = ModelReport {
        name: name.to_string(),
        provider: model.provider,
        url: model.url.to_string(),
        serves: if fim.is_some() {
            Serves::Fim
        } else {
            Serves::Chat
        },
        result: Err(String::new()),
        notes: Vec::new(),
    };
    if let Some(var) = &model.api_key_env {
        if model.api_key().is_none() {
            report.result = Err(format!("${var} is not set"));
            return report;
        }
    }
    match providers.list_models(model).await {
        Ok(Some(listed)) if !model_listed(&listed, &model.model) => {
            let hint = if model.provider == Provider::Ollama {
                format!(" (run `ollama pull {}`)", model.model)
            } else {
                String::new()
            };
            report.notes.push(format!(
                "the server does not list model {:?}{hint}",
                model.model
            ));
        }
        Ok(_) => {}
        Err(e) => {
            report.failed(&e);
            return report;
        }
    }
    let started = Instant::now();
    let tiny = match fim {
        Some(fim) => tiny_fim(fim, model, providers).await,
        None => tiny_chat(model, providers).await,
    };
    match tiny {
        Ok(()) => report.result = Ok(started.elapsed().as_millis() as u64),
        Err(e) => report.failed(&e),
    }
    report
}

impl ModelReport {
    /// The probe failed with `error`: its reason, and what to do about one that does not pass
    /// by itself.
    fn failed(&mut self, error: &ProviderError) {
        self.result = Err(error.to_string());
        if let Some(remedy) = Remedy::lasting(error) {
            self.notes.push(remedy.advice().to_owned());
        }
    }
}

/// The smallest real request a chat-only model serves: one token of chat.
async fn tiny_chat(model: &ModelConfig, providers: &Providers) -> Result<(), ProviderError> {
    let messages = [ChatMessage::user("Say OK.")];
    let call = ChatCall {
        system: "",
        messages: &messages,
        max_tokens: 1,
        temperature: 0.0,
        thinking: Thinking::ModelDefault,
        begin_within: None,
    };
    providers.chat(model, call, &mut |_| {}).await.map(drop)
}

/// The smallest real request a completion model serves: one token of fill-in-the-middle.
async fn tiny_fim(
    fim: Fim,
    model: &ModelConfig,
    providers: &Providers,
) -> Result<(), ProviderError> {
    let ctx = CompletionContext {
        language: Language::Python,
        imports: Vec::new(),
        prefix_start: 0,
        prefix: "def add(a, b):\n    return ".into(),
        suffix: "\n".into(),
        scope_chain: Vec::new(),
        shape: SuggestionShape {
            multiline: false,
            ..Default::default()
        },
    };
    let prompt = build_fim(fim, &ctx);
    let call = FimCall {
        prompt: &prompt,
        max_tokens: 1,
        time_budget: None,
        other_files: &[],
    };
    providers.fim(model, call).await.map(drop)
}
