//! `pilotfish check`: probes every configured model at each of its endpoints — reachable,
//! the model present on the server, latency of a tiny request — and says for each route
//! whether some model in it is live, and where. The report is plain data; `main.rs` prints
//! it and sets the exit code.

use std::time::Instant;

use crate::config::{Config, ModelConfig, Provider};
use crate::prompt::build_fim;
use crate::providers::{FimCall, Providers, model_listed};
use crate::syntax::Language;
use crate::syntax::context::{CompletionContext, SuggestionShape};

/// What the probe of one model at one endpoint found.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelReport {
    pub name: String,
    pub provider: Provider,
    /// The endpoint probed.
    pub url: String,
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
            let status = match &m.result {
                Ok(ms) => format!("ok, {ms} ms"),
                Err(why) => format!("FAILED: {why}"),
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

/// Probes every model at every endpoint (concurrently) and every route.
pub async fn check(config: &Config, providers: &Providers) -> CheckReport {
    let probes = config.models.iter().flat_map(|(name, model)| {
        model
            .url
            .iter()
            .map(move |url| probe(name, model.at_endpoint(url), providers))
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

/// Probes `model` at its (one) endpoint.
async fn probe(name: &str, model: ModelConfig, providers: &Providers) -> ModelReport {
    let model = &model;
    let mut report = ModelReport {
        name: name.to_string(),
        provider: model.provider,
        url: model.url.to_string(),
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
            report.result = Err(e.to_string());
            return report;
        }
    }
    let started = Instant::now();
    let tiny = tiny_request(model, providers).await;
    report.result = tiny.map(|()| started.elapsed().as_millis() as u64);
    report
}

/// The smallest real request the model serves: one token of fill-in-the-middle.
async fn tiny_request(model: &ModelConfig, providers: &Providers) -> Result<(), String> {
    let Some(fim) = model.fim() else {
        return Err("chat-only model: no completion probe yet".into());
    };
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
    providers
        .fim(model, call)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}
