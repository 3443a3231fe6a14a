//! Configuration: the TOML file of SPEC §3, typed and checked (references between sections,
//! value ranges, URLs); [`crate::session`] compiles it once into the session that everything
//! else reads. Owns the lookup order (`--config`, `$PILOTFISH_CONFIG`, `.pilotfish.toml` in the
//! workspace, `$XDG_CONFIG_HOME/pilotfish/config.toml`, built-in default), the merge of the
//! file over the built-in default, LSP overrides (same shape, as JSON), and errors that name
//! the file, the key and the reason. Unknown keys are errors, never silently ignored.
//! API keys never live here: only the NAME of the environment variable that holds one.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::prompt::Fim;
use crate::syntax::context::MultilinePolicy;

/// The tasks every configuration routes; user actions (`[actions.NAME]`) add their own.
pub const TASKS: [&str; 4] = ["complete", "explain", "refactor", "review"];

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub models: BTreeMap<String, ModelConfig>,
    #[serde(default)]
    pub routes: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<RuleConfig>,
    #[serde(default)]
    pub completion: CompletionConfig,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<String, ActionConfig>,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    #[serde(default)]
    pub budget: BudgetConfig,
    #[serde(default)]
    pub telemetry: TelemetryConfig,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Any OpenAI-compatible server (llama.cpp, vLLM, LM Studio, OpenRouter, …).
    Openai,
    Ollama,
    /// llama-server's own `/infill`.
    Llamacpp,
    Anthropic,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub provider: Provider,
    /// One endpoint, or several machines serving the same model.
    pub url: Urls,
    pub model: String,
    /// `"native"` or a template name; absent: a chat-only model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fim: Option<String>,
    /// `false` marks a cloud model. Absent: local when the URL is on this machine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<bool>,
    #[serde(default = "default_context_window")]
    pub context_window: u32,
    #[serde(default = "default_max_output_tokens")]
    pub max_output_tokens: u32,
    /// The NAME of the environment variable holding the API key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub cost_input_per_mtok: f64,
    #[serde(default)]
    pub cost_output_per_mtok: f64,
    #[serde(default = "default_timeout_ms")]
    pub timeout_ms: u64,
}

/// Whether `url` names this machine.
fn is_loopback(url: &str) -> bool {
    reqwest::Url::parse(url)
        .ok()
        .and_then(|u| {
            u.host_str()
                .map(|h| matches!(h, "127.0.0.1" | "localhost" | "[::1]" | "::1"))
        })
        .unwrap_or(false)
}

/// A model's `url`: one endpoint (`url = "http://127.0.0.1:8080"`) or several machines
/// serving the same model (`url = ["http://gpu-box:8080", "http://127.0.0.1:8080"]`), in
/// the user's order. Not empty once validated.
///
/// Dereferences to the first endpoint's URL. Providers are handed one endpoint at a time
/// ([`ModelConfig::at_endpoint`]), so for them the first is the only one; code that chooses
/// between endpoints iterates them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Urls(Vec<String>);

impl Urls {
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl std::ops::Deref for Urls {
    type Target = str;

    fn deref(&self) -> &str {
        self.0.first().map_or("", String::as_str)
    }
}

impl From<String> for Urls {
    fn from(url: String) -> Urls {
        Urls(vec![url])
    }
}

impl From<Vec<String>> for Urls {
    fn from(urls: Vec<String>) -> Urls {
        Urls(urls)
    }
}

impl Serialize for Urls {
    /// One endpoint as a string (as users write it), several as a list.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0.as_slice() {
            [one] => serializer.serialize_str(one),
            many => many.serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Urls {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Urls, D::Error> {
        struct UrlsVisitor;

        impl<'de> serde::de::Visitor<'de> for UrlsVisitor {
            type Value = Urls;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a URL or a list of URLs")
            }

            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<Urls, E> {
                Ok(Urls(vec![url.to_string()]))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Urls, A::Error> {
                let mut urls = Vec::new();
                while let Some(url) = seq.next_element::<String>()? {
                    urls.push(url);
                }
                Ok(Urls(urls))
            }
        }

        deserializer.deserialize_any(UrlsVisitor)
    }
}

fn default_context_window() -> u32 {
    8192
}
/// Room for an explanation or a rewrite; completion asks for fewer (see `completion.rs`).
fn default_max_output_tokens() -> u32 {
    1024
}
fn default_timeout_ms() -> u64 {
    30_000
}

impl ModelConfig {
    /// The FIM mode; `None` for a chat-only model. Valid after [`Config::validate`].
    pub fn fim(&self) -> Option<Fim> {
        self.fim.as_deref().and_then(Fim::parse)
    }

    /// Whether requests to this model stay on this machine: `local` when set, else whether
    /// every endpoint is on this machine.
    pub fn is_local(&self) -> bool {
        self.local
            .unwrap_or_else(|| self.url.iter().all(is_loopback))
    }

    /// This model at one of its endpoints: what a provider is handed for one call (its
    /// `url` then names only that endpoint, and `is_local` speaks for that endpoint).
    pub fn at_endpoint(&self, url: &str) -> ModelConfig {
        ModelConfig {
            url: Urls(vec![url.to_string()]),
            ..self.clone()
        }
    }

    /// The API key from the environment, if this model names one and it is set.
    pub fn api_key(&self) -> Option<String> {
        self.api_key_env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|k| !k.is_empty())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<String>,
    #[serde(default)]
    pub when: WhenConfig,
    #[serde(rename = "use")]
    pub use_models: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WhenConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub languages: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_lines: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_lines: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_complexity: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sensitive: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompletionConfig {
    /// What a suggestion should take, in milliseconds: completion prefers models measured
    /// inside it and never debounces a fast one past it; a slower model's answer still
    /// reaches the editor (the request waits while it is the document's newest).
    #[serde(default = "default_budget_ms")]
    pub budget_ms: u64,
    /// Floor of the adaptive debounce during a typing burst.
    #[serde(default = "default_debounce_ms")]
    pub debounce_ms: u64,
    #[serde(default = "default_cache_entries")]
    pub cache_entries: usize,
    #[serde(default)]
    pub multiline: MultilineSetting,
    /// Which models may be asked in the background for the suggestion after the shown one.
    #[serde(default)]
    pub prefetch: PrefetchSetting,
    /// Read the prompt of a new place into a local model server's cache while the user
    /// types there (never a cloud model).
    #[serde(default = "yes")]
    pub warm_up: bool,
    /// How many chunks of code the user just touched in other files go with a completion to
    /// a local model that takes other files' context (0: none).
    #[serde(default = "default_recent_chunks")]
    pub recent_chunks: usize,
}

fn default_budget_ms() -> u64 {
    100
}
fn default_debounce_ms() -> u64 {
    25
}
fn default_cache_entries() -> usize {
    512
}
fn default_recent_chunks() -> usize {
    4
}

impl Default for CompletionConfig {
    fn default() -> Self {
        CompletionConfig {
            budget_ms: default_budget_ms(),
            debounce_ms: default_debounce_ms(),
            cache_entries: default_cache_entries(),
            multiline: MultilineSetting::default(),
            prefetch: PrefetchSetting::default(),
            warm_up: true,
            recent_chunks: default_recent_chunks(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MultilineSetting {
    #[default]
    Auto,
    Always,
    Never,
}

/// Background model calls for the suggestion that follows the shown one: they cost a cloud
/// model money, so by default only local models make them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrefetchSetting {
    Off,
    #[default]
    Local,
    /// Cloud models too.
    All,
}

impl PrefetchSetting {
    /// Whether `model` may be asked in the background.
    pub fn allows(self, model: &ModelConfig) -> bool {
        match self {
            PrefetchSetting::Off => false,
            PrefetchSetting::Local => model.is_local(),
            PrefetchSetting::All => true,
        }
    }
}

impl From<MultilineSetting> for MultilinePolicy {
    fn from(s: MultilineSetting) -> Self {
        match s {
            MultilineSetting::Auto => MultilinePolicy::Auto,
            MultilineSetting::Always => MultilinePolicy::Always,
            MultilineSetting::Never => MultilinePolicy::Never,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionConfig {
    pub title: String,
    pub prompt: String,
    #[serde(default)]
    pub output: ActionOutput,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionOutput {
    #[default]
    Document,
    Edit,
    Diagnostics,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    #[serde(default = "default_local_only")]
    pub local_only: Vec<String>,
    #[serde(default = "yes")]
    pub redact_secrets: bool,
}

fn default_local_only() -> Vec<String> {
    ["**/.env*", "**/secrets/**", "**/*.pem"]
        .map(String::from)
        .to_vec()
}
fn yes() -> bool {
    true
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        PrivacyConfig {
            local_only: default_local_only(),
            redact_secrets: true,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub daily_usd: Option<f64>,
}

/// `[telemetry]`: the usage log (one JSON line per model call, cache answer, shown and
/// accepted suggestion; see `crate::telemetry`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Where the usage log goes; `~/` is the home directory. Absent: under the XDG state
    /// directory ([`TelemetryConfig::usage_log_path`]). An empty string turns the log off
    /// (and with it the day's spend shared between processes and restarts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage_log: Option<String>,
    /// Also log the prompt text (secrets masked). Off by default.
    #[serde(default)]
    pub log_prompts: bool,
    /// The log is rotated when it would grow past this many megabytes.
    #[serde(default = "default_rotate_mb")]
    pub rotate_mb: f64,
}

fn default_rotate_mb() -> f64 {
    8.0
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            usage_log: None,
            log_prompts: false,
            rotate_mb: default_rotate_mb(),
        }
    }
}

impl TelemetryConfig {
    /// The usage log's path: `usage_log` with `~/` expanded, else
    /// `$XDG_STATE_HOME/pilotfish/usage.jsonl`, else `~/.local/state/pilotfish/usage.jsonl`.
    /// `None` when the log is off (`usage_log = ""`) or no home directory is known.
    pub fn usage_log_path(&self) -> Option<PathBuf> {
        let env = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        resolve_usage_log(
            self.usage_log.as_deref(),
            env("XDG_STATE_HOME").map(PathBuf::from),
            env("HOME").map(PathBuf::from),
        )
    }

    /// The rotation size in bytes.
    pub fn rotate_bytes(&self) -> u64 {
        (self.rotate_mb * 1024.0 * 1024.0) as u64
    }
}

/// [`TelemetryConfig::usage_log_path`] with the environment passed in.
fn resolve_usage_log(
    setting: Option<&str>,
    xdg_state_home: Option<PathBuf>,
    home: Option<PathBuf>,
) -> Option<PathBuf> {
    match setting {
        Some("") => None,
        Some(path) => match path.strip_prefix("~/") {
            Some(rest) => home.map(|h| h.join(rest)),
            None => Some(PathBuf::from(path)),
        },
        None => xdg_state_home
            .or_else(|| home.map(|h| h.join(".local/state")))
            .map(|state| state.join("pilotfish").join("usage.jsonl")),
    }
}

/// Where a configuration came from, for messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    File(PathBuf),
    BuiltIn,
    /// LSP `initializationOptions` or `workspace/didChangeConfiguration`.
    Editor,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(p) => write!(f, "{}", p.display()),
            Origin::BuiltIn => f.write_str("built-in default config"),
            Origin::Editor => f.write_str("editor settings (initializationOptions)"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{origin}: cannot read: {source}")]
    Read {
        origin: Origin,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Syntax { origin: Origin, message: String },
    #[error("{origin}: `{key}`: {reason}")]
    Invalid {
        origin: Origin,
        key: String,
        reason: String,
    },
}

/// A validated configuration and the raw table it came from (so that editor overrides can
/// be merged over the same base later).
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    pub config: Config,
    pub origin: Origin,
    base: toml::Table,
}

impl LoadedConfig {
    /// The built-in default, with nothing read from disk.
    pub fn built_in() -> LoadedConfig {
        let base = built_in_table(|name| std::env::var(name).ok());
        let config =
            from_table(base.clone(), &Origin::BuiltIn).expect("the built-in config is valid");
        LoadedConfig {
            config,
            origin: Origin::BuiltIn,
            base,
        }
    }

    /// Finds and loads the configuration (SPEC §2 lookup order).
    pub fn load(
        explicit: Option<&Path>,
        workspace_root: Option<&Path>,
    ) -> Result<LoadedConfig, ConfigError> {
        match locate(explicit, workspace_root, |name| std::env::var(name).ok()) {
            Some(path) => LoadedConfig::from_file(&path),
            None => Ok(LoadedConfig::built_in()),
        }
    }

    pub fn from_file(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let origin = Origin::File(path.to_path_buf());
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            origin: origin.clone(),
            source,
        })?;
        LoadedConfig::from_toml_str(&text, origin)
    }

    pub fn from_toml_str(text: &str, origin: Origin) -> Result<LoadedConfig, ConfigError> {
        let file: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                origin: origin.clone(),
                message: e.to_string(),
            })?;
        let mut base = built_in_table(|name| std::env::var(name).ok());
        merge(&mut base, file);
        let config = from_table(base.clone(), &origin)?;
        Ok(LoadedConfig {
            config,
            origin,
            base,
        })
    }

    /// The configuration with editor settings (same shape as the file, as JSON) merged over
    /// it. `null`, an empty object or an empty array (what an empty Lua table encodes to)
    /// changes nothing.
    pub fn with_overrides(
        &self,
        overrides: &serde_json::Value,
    ) -> Result<LoadedConfig, ConfigError> {
        let origin = Origin::Editor;
        let table = match overrides {
            serde_json::Value::Null => return Ok(self.clone()),
            serde_json::Value::Array(items) if items.is_empty() => return Ok(self.clone()),
            serde_json::Value::Object(_) => {
                toml::Table::try_from(overrides).map_err(|e| ConfigError::Invalid {
                    origin: origin.clone(),
                    key: "(root)".into(),
                    reason: e.to_string(),
                })?
            }
            other => {
                return Err(ConfigError::Invalid {
                    origin,
                    key: "(root)".into(),
                    reason: format!("expected an object, got {other}"),
                });
            }
        };
        let mut base = self.base.clone();
        merge(&mut base, table);
        let config = from_table(base.clone(), &origin)?;
        Ok(LoadedConfig {
            config,
            origin: self.origin.clone(),
            base,
        })
    }
}

/// The first configuration file that exists, in SPEC §2's order. An explicit path is
/// returned even when it does not exist, so that the error names it.
pub fn locate(
    explicit: Option<&Path>,
    workspace_root: Option<&Path>,
    env: impl Fn(&str) -> Option<String>,
) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    if let Some(p) = env("PILOTFISH_CONFIG").filter(|s| !s.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = workspace_root
        .map(|root| root.join(".pilotfish.toml"))
        .filter(|p| p.is_file())
    {
        return Some(p);
    }
    let xdg = env("XDG_CONFIG_HOME")
        .filter(|s| !s.is_empty())
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")))?;
    Some(xdg.join("pilotfish").join("config.toml")).filter(|p| p.is_file())
}

/// The built-in default (SPEC §3): Ollama on this machine for every task, and a cloud model
/// for actions only when its key variable is set. The local model's window is the context
/// Ollama runs a model with unless told otherwise (`num_ctx`, 4096 in current versions): a
/// longer prompt Ollama cuts from the front without a word, the instructions first, so
/// prompts are built to fit it and cut where Pilotfish says.
fn built_in_table(env: impl Fn(&str) -> Option<String>) -> toml::Table {
    let mut text = String::from(
        r#"
[models.local]
provider = "ollama"
url = "http://127.0.0.1:11434"
model = "qwen2.5-coder:1.5b"
fim = "native"
local = true
context_window = 4096
max_output_tokens = 1024
"#,
    );
    let cloud = if env("ANTHROPIC_API_KEY").is_some_and(|k| !k.is_empty()) {
        Some(
            r#"
[models.cloud]
provider = "anthropic"
url = "https://api.anthropic.com"
model = "claude-sonnet-4-5"
local = false
context_window = 200000
max_output_tokens = 4096
api_key_env = "ANTHROPIC_API_KEY"
cost_input_per_mtok = 3.0
cost_output_per_mtok = 15.0
timeout_ms = 120000
"#,
        )
    } else if env("OPENAI_API_KEY").is_some_and(|k| !k.is_empty()) {
        Some(
            r#"
[models.cloud]
provider = "openai"
url = "https://api.openai.com/v1"
model = "gpt-4.1-mini"
local = false
context_window = 128000
max_output_tokens = 4096
api_key_env = "OPENAI_API_KEY"
cost_input_per_mtok = 0.4
cost_output_per_mtok = 1.6
timeout_ms = 120000
"#,
        )
    } else {
        None
    };
    let action_chain = if let Some(cloud) = cloud {
        text.push_str(cloud);
        r#"["cloud", "local"]"#
    } else {
        r#"["local"]"#
    };
    text.push_str(&format!(
        "\n[routes]\ncomplete = [\"local\"]\nexplain = {action_chain}\nrefactor = {action_chain}\nreview = {action_chain}\n"
    ));
    text.parse().expect("the built-in config is valid TOML")
}

/// Merges `over` into `base`, key by key. Defining any `[models.*]` replaces the built-in
/// models, and with them the built-in routes (which name those models).
fn merge(base: &mut toml::Table, over: toml::Table) {
    if over.contains_key("models") {
        base.remove("models");
        base.remove("routes");
    }
    merge_tables(base, over);
}

fn merge_tables(base: &mut toml::Table, over: toml::Table) {
    for (key, value) in over {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge_tables(b, o),
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

fn from_table(table: toml::Table, origin: &Origin) -> Result<Config, ConfigError> {
    let mut config: Config =
        serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
            let key = e.path().to_string();
            ConfigError::Invalid {
                origin: origin.clone(),
                key,
                reason: e.into_inner().to_string(),
            }
        })?;
    config.fill_default_routes();
    config
        .validate()
        .map_err(|(key, reason)| ConfigError::Invalid {
            origin: origin.clone(),
            key,
            reason,
        })?;
    // Globs and language names are checked where they are compiled, once: `Session::compile`.
    Ok(config)
}

/// Checks a model's endpoints; the error names `url` (or `url[i]` in a list) and why.
fn validate_urls(urls: &Urls) -> Result<(), (String, String)> {
    if urls.is_empty() {
        return Err(("url".into(), "must name at least one endpoint".into()));
    }
    for (i, text) in urls.iter().enumerate() {
        let at = if urls.len() == 1 {
            "url".to_string()
        } else {
            format!("url[{i}]")
        };
        let url = reqwest::Url::parse(text)
            .map_err(|e| (at.clone(), format!("not a URL ({e}): {text:?}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err((at, format!("must be http:// or https://, got {text:?}")));
        }
        if urls.iter().take(i).any(|earlier| earlier == text) {
            return Err((at, format!("{text:?} is listed twice")));
        }
    }
    Ok(())
}

impl Config {
    /// A task with no `[routes]` entry gets every model that can serve it, by name.
    fn fill_default_routes(&mut self) {
        for task in TASKS {
            if self.routes.contains_key(task) {
                continue;
            }
            let chain: Vec<String> = self
                .models
                .iter()
                .filter(|(_, m)| task != "complete" || m.fim.is_some())
                .map(|(name, _)| name.clone())
                .collect();
            self.routes.insert(task.to_string(), chain);
        }
    }

    /// Checks what serde cannot: references between sections, value ranges, URLs.
    fn validate(&self) -> Result<(), (String, String)> {
        for (name, m) in &self.models {
            let key = |field: &str| format!("models.{name}.{field}");
            validate_urls(&m.url).map_err(|(at, reason)| (key(&at), reason))?;
            if m.model.trim().is_empty() {
                return Err((key("model"), "must not be empty".into()));
            }
            if let Some(fim) = &m.fim {
                if Fim::parse(fim).is_none() {
                    return Err((
                        key("fim"),
                        format!(
                            "unknown FIM mode {fim:?} (expected \"native\", \"qwen\", \"starcoder\", \"codellama\", \"deepseek\" or \"codestral\")"
                        ),
                    ));
                }
                if fim == "native" && m.provider == Provider::Anthropic {
                    return Err((
                        key("fim"),
                        "Anthropic has no native fill-in-the-middle API".into(),
                    ));
                }
            }
            if let Some(var) = &m.api_key_env {
                if var.is_empty() || !var.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err((
                        key("api_key_env"),
                        "must be the NAME of an environment variable (like OPENAI_API_KEY), not the key itself".into(),
                    ));
                }
            }
            if m.timeout_ms == 0 {
                return Err((key("timeout_ms"), "must be greater than 0".into()));
            }
            if m.max_output_tokens == 0 || m.context_window == 0 {
                return Err((
                    key("context_window"),
                    "context_window and max_output_tokens must be greater than 0".into(),
                ));
            }
            if m.cost_input_per_mtok < 0.0 || m.cost_output_per_mtok < 0.0 {
                return Err((
                    key("cost_input_per_mtok"),
                    "costs must not be negative".into(),
                ));
            }
        }
        let known_model = |key: String, name: &String| -> Result<(), (String, String)> {
            if self.models.contains_key(name) {
                Ok(())
            } else {
                let defined: Vec<&str> = self.models.keys().map(String::as_str).collect();
                Err((
                    key,
                    format!("unknown model {name:?} (defined: {})", defined.join(", ")),
                ))
            }
        };
        let known_task = |task: &str| TASKS.contains(&task) || self.actions.contains_key(task);
        for (task, chain) in &self.routes {
            if !known_task(task) {
                return Err((
                    format!("routes.{task}"),
                    "unknown task (expected complete, explain, refactor, review or an [actions.*] name)".into(),
                ));
            }
            for name in chain {
                known_model(format!("routes.{task}"), name)?;
            }
        }
        if self.routes.get("complete").is_none_or(|c| c.is_empty()) {
            return Err((
                "routes.complete".into(),
                "no model can serve completion (give one a `fim` mode and list it here)".into(),
            ));
        }
        for (i, rule) in self.rules.iter().enumerate() {
            if let Some(task) = &rule.task {
                if !known_task(task) {
                    return Err((format!("rules[{i}].task"), format!("unknown task {task:?}")));
                }
            }
            if rule.use_models.is_empty() {
                return Err((
                    format!("rules[{i}].use"),
                    "must name at least one model".into(),
                ));
            }
            for name in &rule.use_models {
                known_model(format!("rules[{i}].use"), name)?;
            }
        }
        let c = &self.completion;
        if c.budget_ms == 0 {
            return Err((
                "completion.budget_ms".into(),
                "must be greater than 0".into(),
            ));
        }
        if c.cache_entries == 0 {
            return Err((
                "completion.cache_entries".into(),
                "must be greater than 0".into(),
            ));
        }
        if c.recent_chunks > crate::recent::CAPACITY {
            return Err((
                "completion.recent_chunks".into(),
                format!("at most {} (0 turns it off)", crate::recent::CAPACITY),
            ));
        }
        for (name, action) in &self.actions {
            if TASKS.contains(&name.as_str()) {
                return Err((
                    format!("actions.{name}"),
                    "this name is a built-in task".into(),
                ));
            }
            if !action.prompt.contains("{code}") && !action.prompt.contains("{selection}") {
                return Err((
                    format!("actions.{name}.prompt"),
                    "must contain {code} or {selection}".into(),
                ));
            }
        }
        if let Some(b) = self.budget.daily_usd {
            if b < 0.0 {
                return Err(("budget.daily_usd".into(), "must not be negative".into()));
            }
        }
        let rotate = self.telemetry.rotate_mb;
        if !(rotate.is_finite() && rotate > 0.0) {
            return Err((
                "telemetry.rotate_mb".into(),
                "must be greater than 0".into(),
            ));
        }
        Ok(())
    }

    /// The effective configuration as TOML, for `pilotfish config`. The file holds no
    /// secrets; for each key variable it says whether it is set, never its value.
    pub fn to_display_toml(&self) -> String {
        let mut out =
            toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render: {e}\n"));
        for (name, m) in &self.models {
            if let Some(var) = &m.api_key_env {
                let state = if m.api_key().is_some() {
                    "set (value hidden)"
                } else {
                    "NOT set"
                };
                out.push_str(&format!("# models.{name}: ${var} is {state}\n"));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<Config, String> {
        LoadedConfig::from_toml_str(text, Origin::File("test.toml".into()))
            .map(|l| l.config)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn built_in_default_is_ollama_for_everything() {
        let table = built_in_table(|_| None);
        let c = from_table(table, &Origin::BuiltIn).unwrap();
        assert_eq!(c.models["local"].provider, Provider::Ollama);
        for task in TASKS {
            assert_eq!(c.routes[task], vec!["local".to_string()], "{task}");
        }
        let with_key = from_table(
            built_in_table(|v| (v == "ANTHROPIC_API_KEY").then(|| "k".into())),
            &Origin::BuiltIn,
        )
        .unwrap();
        assert_eq!(with_key.routes["complete"], vec!["local".to_string()]);
        assert_eq!(
            with_key.routes["review"],
            vec!["cloud".to_string(), "local".to_string()]
        );
        assert!(!with_key.models["cloud"].is_local());
    }

    #[test]
    fn file_models_replace_built_in_ones_and_routes_default_sensibly() {
        let c = load(
            r#"
            [models.fast]
            provider = "openai"
            url = "http://127.0.0.1:8080/v1"
            model = "qwen"
            fim = "qwen"
            [models.chat]
            provider = "openai"
            url = "https://example.invalid/v1"
            model = "big"
            [completion]
            budget_ms = 250
            "#,
        )
        .unwrap();
        assert!(!c.models.contains_key("local"));
        assert_eq!(c.routes["complete"], vec!["fast".to_string()]);
        assert_eq!(
            c.routes["explain"],
            vec!["chat".to_string(), "fast".to_string()]
        );
        assert_eq!(c.completion.budget_ms, 250);
        assert_eq!(c.completion.debounce_ms, 25);
        assert!(c.models["fast"].is_local());
        assert!(!c.models["chat"].is_local());
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let cases = [
            (
                "[completion]\nbudget_msx = 3\n",
                "completion",
                "unknown field `budget_msx`",
            ),
            (
                "[completion]\nbudget_ms = \"fast\"\n",
                "completion.budget_ms",
                "invalid type",
            ),
            (
                "[models.a]\nprovider = \"ollama\"\nurl = \"http://x\"\nmodel = \"m\"\nfim = \"qwn\"\n",
                "models.a.fim",
                "unknown FIM mode",
            ),
            (
                "[models.a]\nprovider = \"olama\"\nurl = \"http://x\"\nmodel = \"m\"\n",
                "models.a.provider",
                "unknown variant",
            ),
            (
                "[routes]\ncomplete = [\"nope\"]\n",
                "routes.complete",
                "unknown model \"nope\"",
            ),
            (
                "[routes]\ncompletion = [\"local\"]\n",
                "routes.completion",
                "unknown task",
            ),
            (
                "[models.a]\nprovider = \"openai\"\nurl = \"http://x/v1\"\nmodel = \"m\"\napi_key_env = \"sk-abc123-secret\"\n",
                "models.a.api_key_env",
                "NAME of an environment variable",
            ),
            ("[completion\n", "test.toml", "TOML parse error"),
            (
                "[completion]\nrecent_chunks = 17\n",
                "completion.recent_chunks",
                "at most 16",
            ),
            (
                "[models.a]\nprovider = \"ollama\"\nurl = []\nmodel = \"m\"\n",
                "models.a.url",
                "at least one endpoint",
            ),
            (
                "[models.a]\nprovider = \"ollama\"\nurl = [\"http://a:1\", \"ftp://b\"]\nmodel = \"m\"\n",
                "models.a.url[1]",
                "must be http:// or https://",
            ),
            (
                "[models.a]\nprovider = \"ollama\"\nurl = [\"http://a:1\", \"http://a:1\"]\nmodel = \"m\"\n",
                "models.a.url[1]",
                "listed twice",
            ),
            (
                "[models.a]\nprovider = \"ollama\"\nurl = 8080\nmodel = \"m\"\n",
                "models.a.url",
                "a URL or a list of URLs",
            ),
        ];
        for (text, key, reason) in cases {
            let err = load(text).unwrap_err();
            assert!(err.starts_with("test.toml"), "{err}");
            assert!(err.contains(key), "want key {key:?} in {err}");
            assert!(err.contains(reason), "want {reason:?} in {err}");
        }
    }

    #[test]
    fn a_model_may_list_several_endpoints() {
        let text = r#"
            [models.fast]
            provider = "llamacpp"
            url = ["http://gpu-box:8080", "http://127.0.0.1:8080"]
            model = "qwen"
            fim = "native"
            [models.here]
            provider = "llamacpp"
            url = ["http://127.0.0.1:8080", "http://localhost:8081"]
            model = "qwen"
            fim = "native"
            [models.one]
            provider = "ollama"
            url = "http://127.0.0.1:11434"
            model = "qwen"
            "#;
        let c = load(text).unwrap();
        let fast = &c.models["fast"];
        assert_eq!(
            fast.url.iter().collect::<Vec<_>>(),
            ["http://gpu-box:8080", "http://127.0.0.1:8080"]
        );
        assert!(!fast.is_local(), "one endpoint is another machine");
        assert!(c.models["here"].is_local());
        let at = fast.at_endpoint("http://127.0.0.1:8080");
        assert_eq!(at.url.iter().collect::<Vec<_>>(), ["http://127.0.0.1:8080"]);
        assert_eq!(
            &*at.url, "http://127.0.0.1:8080",
            "providers read the one URL"
        );
        assert!(at.is_local(), "that endpoint is on this machine");
        // `pilotfish config` writes one endpoint as a string and several as a list, and
        // what it writes loads again.
        let shown = c.to_display_toml();
        assert!(
            shown.contains("url = \"http://127.0.0.1:11434\""),
            "{shown}"
        );
        assert!(shown.contains("\"http://gpu-box:8080\""), "{shown}");
        assert_eq!(load(&shown).unwrap(), c, "{shown}");
    }

    #[test]
    fn editor_overrides_merge_over_the_file() {
        let base = LoadedConfig::from_toml_str("[completion]\nbudget_ms = 200\n", Origin::BuiltIn)
            .unwrap();
        let over = base
            .with_overrides(&serde_json::json!({"completion": {"debounce_ms": 40}}))
            .unwrap();
        assert_eq!(over.config.completion.budget_ms, 200);
        assert_eq!(over.config.completion.debounce_ms, 40);
        let bad = base
            .with_overrides(&serde_json::json!({"completion": {"budget": 1}}))
            .unwrap_err();
        assert!(bad.to_string().contains("editor settings"), "{bad}");
        assert_eq!(
            base.with_overrides(&serde_json::Value::Null)
                .unwrap()
                .config,
            base.config
        );
    }

    #[test]
    fn lookup_order() {
        let dir = tempfile::tempdir().unwrap();
        let ws = dir.path().join("ws");
        let xdg = dir.path().join("xdg");
        std::fs::create_dir_all(xdg.join("pilotfish")).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        std::fs::write(xdg.join("pilotfish/config.toml"), "").unwrap();
        let env_with = |pf: Option<&str>| {
            let xdg = xdg.to_string_lossy().to_string();
            let pf = pf.map(String::from);
            move |name: &str| match name {
                "XDG_CONFIG_HOME" => Some(xdg.clone()),
                "PILOTFISH_CONFIG" => pf.clone(),
                _ => None,
            }
        };
        assert_eq!(
            locate(None, Some(&ws), env_with(None)),
            Some(xdg.join("pilotfish/config.toml"))
        );
        std::fs::write(ws.join(".pilotfish.toml"), "").unwrap();
        assert_eq!(
            locate(None, Some(&ws), env_with(None)),
            Some(ws.join(".pilotfish.toml"))
        );
        assert_eq!(
            locate(None, Some(&ws), env_with(Some("/e.toml"))),
            Some(PathBuf::from("/e.toml"))
        );
        assert_eq!(
            locate(
                Some(Path::new("/x.toml")),
                Some(&ws),
                env_with(Some("/e.toml"))
            ),
            Some(PathBuf::from("/x.toml"))
        );
        assert_eq!(locate(None, None, |_| None), None);
    }

    #[test]
    fn the_usage_log_lives_under_the_xdg_state_dir_unless_set() {
        let p = |s: &str| Some(PathBuf::from(s));
        let (state, home) = (p("/s"), p("/h"));
        type Case = (
            Option<&'static str>,
            Option<PathBuf>,
            Option<PathBuf>,
            Option<PathBuf>,
        );
        let cases: [Case; 6] = [
            (
                None,
                state.clone(),
                home.clone(),
                p("/s/pilotfish/usage.jsonl"),
            ),
            (
                None,
                None,
                home.clone(),
                p("/h/.local/state/pilotfish/usage.jsonl"),
            ),
            (None, None, None, None),
            (
                Some("~/u.jsonl"),
                state.clone(),
                home.clone(),
                p("/h/u.jsonl"),
            ),
            (Some("/var/u.jsonl"), None, None, p("/var/u.jsonl")),
            (Some(""), state, home, None),
        ];
        for (setting, state, home, want) in cases {
            assert_eq!(resolve_usage_log(setting, state, home), want, "{setting:?}");
        }
        let bad = LoadedConfig::from_toml_str("[telemetry]\nrotate_mb = 0\n", Origin::BuiltIn)
            .unwrap_err()
            .to_string();
        assert!(bad.contains("telemetry.rotate_mb"), "{bad}");
    }
}
