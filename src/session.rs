//! The compiled session: a configuration validated and compiled once — the config itself,
//! its router (globs and language names compiled), every model by name with its FIM mode
//! resolved, the completion settings, and the workspace root — into one immutable value.
//! When the editor or the file changes the configuration, a new session is compiled and
//! swapped in whole ([`SharedSession`]); the server, the completion engine, the action runner
//! and the command line read the current one per request and keep no copies of its parts.
//!
//! Owns turning a [`LoadedConfig`] into something the engine can use, and nothing else: no
//! I/O beyond [`Session::load`]'s reading of the config file, no live state (model health and
//! the day's spend live in `resilience` and `providers`; [`crate::route_input`] joins them).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use crate::config::{
    Config, ConfigError, LoadedConfig, ModelConfig, Origin, PrefetchSetting, Provider,
};
use crate::documents::OtherFiles;
use crate::prompt::Fim;
use crate::router::{COMPLETE, Decision, Router};
use crate::sync::{read, write};
use crate::syntax::context::MultilinePolicy;

/// A configured model, shared by every request that uses it.
#[derive(Debug, Clone)]
pub struct Model {
    /// Its name under `[models]`.
    pub name: Arc<str>,
    pub config: Arc<ModelConfig>,
    /// How it fills in the middle; `None` for a chat-only model (which serves completion,
    /// when a route sends completion to it, through a chat prompt).
    pub fim: Option<Fim>,
}

/// Context from other files for completion: the outlines of this many other open files of
/// the language family, each at most this long (~300 tokens). They sit at the start of the
/// prompt and change only when those files' definitions do, so the model server's prompt
/// cache keeps them.
const OUTLINE_FILES: usize = 3;
const OUTLINE_CHARS: usize = 1200;

impl Model {
    /// Whether completion sends this model context from other files: only a local model, and
    /// only through a place made for it — llama.cpp's `/infill` (`input_extra`) or a FIM
    /// template with a repository layout (Qwen, StarCoder).
    pub fn takes_other_files(&self) -> bool {
        let place = self.config.provider == Provider::Llamacpp
            || matches!(self.fim, Some(Fim::Template(t)) if t.has_repo_layout());
        place && self.config.is_local()
    }
}

/// What the completion path reads on every request.
#[derive(Debug, Clone)]
pub struct CompletionSettings {
    /// What the path aims for: models measured inside it are preferred, and the debounce
    /// never pushes one that can make it past it. A slower model still answers, late.
    pub budget: Duration,
    /// The floor of the adaptive debounce.
    pub debounce_floor: Duration,
    pub cache_entries: usize,
    pub multiline: MultilinePolicy,
    /// Whether some `[[rules]]` entry may apply to completion: then the target's features
    /// are computed for each request (otherwise they are not needed).
    pub rules_apply: bool,
    /// Whether some configured model is a cloud model: then the prompt may need checking for
    /// secrets.
    pub any_cloud: bool,
    /// What completion gathers from other files: nothing unless some model takes it (a local
    /// llama.cpp `/infill`, or a local model whose FIM template has a repository layout).
    pub other_files: OtherFiles,
    /// Which models may be asked in the background for the suggestion after the shown one.
    pub prefetch: PrefetchSetting,
    /// Whether a local model server's prompt cache is warmed at a new place.
    pub warm_up: bool,
}

/// One compiled configuration. Immutable: a change makes a new one.
#[derive(Debug)]
pub struct Session {
    loaded: LoadedConfig,
    router: Router,
    models: BTreeMap<String, Model>,
    completion: CompletionSettings,
    workspace_root: Option<String>,
}

impl Session {
    /// Compiles `loaded` for the workspace at `workspace_root` (relative `privacy.local_only`
    /// and rule `paths` globs are matched against paths relative to it). Fails, naming the
    /// origin and the key, on a glob or language name that does not compile.
    pub fn compile(
        loaded: LoadedConfig,
        workspace_root: Option<String>,
    ) -> Result<Session, ConfigError> {
        let router = Router::new(&loaded.config).map_err(|e| ConfigError::Invalid {
            origin: loaded.origin.clone(),
            key: e.key,
            reason: e.reason,
        })?;
        let config = &loaded.config;
        let models: BTreeMap<String, Model> = config
            .models
            .iter()
            .map(|(name, m)| {
                let model = Model {
                    name: name.as_str().into(),
                    config: Arc::new(m.clone()),
                    fim: m.fim(),
                };
                (name.clone(), model)
            })
            .collect();
        let c = &config.completion;
        let completion = CompletionSettings {
            budget: Duration::from_millis(c.budget_ms),
            debounce_floor: Duration::from_millis(c.debounce_ms),
            cache_entries: c.cache_entries,
            multiline: c.multiline.into(),
            rules_apply: config
                .rules
                .iter()
                .any(|r| r.task.as_deref().is_none_or(|t| t == COMPLETE)),
            any_cloud: models.values().any(|m| !m.config.is_local()),
            other_files: if models.values().any(Model::takes_other_files) {
                OtherFiles {
                    outline_files: OUTLINE_FILES,
                    outline_chars: OUTLINE_CHARS,
                    recent_chunks: c.recent_chunks,
                }
            } else {
                OtherFiles::default()
            },
            prefetch: c.prefetch,
            warm_up: c.warm_up,
        };
        Ok(Session {
            loaded,
            router,
            models,
            completion,
            workspace_root: workspace_root.filter(|r| !r.is_empty()),
        })
    }

    /// The built-in default configuration (nothing read from disk) for `workspace_root`.
    pub fn built_in(workspace_root: Option<String>) -> Session {
        Session::compile(LoadedConfig::built_in(), workspace_root)
            .expect("the built-in config compiles")
    }

    /// Finds, loads and compiles the configuration (SPEC §2 lookup order): `explicit`
    /// (`--config`), `$PILOTFISH_CONFIG`, `.pilotfish.toml` in `workspace_root`, the user's
    /// config file, the built-in default.
    pub fn load(
        explicit: Option<&Path>,
        workspace_root: Option<&Path>,
    ) -> Result<Session, ConfigError> {
        let loaded = LoadedConfig::load(explicit, workspace_root)?;
        let root = workspace_root.map(|r| r.to_string_lossy().into_owned());
        Session::compile(loaded, root)
    }

    /// This session with editor settings (the file's shape, as JSON) merged over its
    /// configuration, compiled anew. `null`, `{}` and `[]` change nothing.
    pub fn with_overrides(&self, overrides: &serde_json::Value) -> Result<Session, ConfigError> {
        let loaded = self.loaded.with_overrides(overrides)?;
        Session::compile(loaded, self.workspace_root.clone())
    }

    pub fn config(&self) -> &Config {
        &self.loaded.config
    }

    /// Where the configuration came from.
    pub fn origin(&self) -> &Origin {
        &self.loaded.origin
    }

    pub fn router(&self) -> &Router {
        &self.router
    }

    pub fn completion(&self) -> &CompletionSettings {
        &self.completion
    }

    /// The workspace root, when known (the editor's first workspace folder, or the working
    /// directory of a one-shot command).
    pub fn workspace_root(&self) -> Option<&str> {
        self.workspace_root.as_deref()
    }

    /// The model configured under `name`.
    pub fn model(&self, name: &str) -> Option<&Model> {
        self.models.get(name)
    }

    /// The models a decision kept, in the order to try them.
    pub fn chain(&self, decision: &Decision) -> Vec<Model> {
        decision
            .chain()
            .filter_map(|name| self.models.get(name).cloned())
            .collect()
    }

    /// The fill-in-the-middle models of the default completion route, in order: the ones
    /// worth warming at start.
    pub fn completion_chain(&self) -> Vec<&Model> {
        self.config()
            .routes
            .get(COMPLETE)
            .into_iter()
            .flatten()
            .filter_map(|name| self.models.get(name))
            .filter(|m| m.fim.is_some())
            .collect()
    }

    /// The local endpoints of the models some route or rule uses, each as its model at that
    /// endpoint: what the server probes in the background (cloud endpoints are never
    /// probed: it would cost the user).
    pub fn routed_local_endpoints(&self) -> Vec<(Arc<str>, ModelConfig)> {
        let c = self.config();
        let routed: std::collections::BTreeSet<&String> = c
            .routes
            .values()
            .flatten()
            .chain(c.rules.iter().flat_map(|r| r.use_models.iter()))
            .collect();
        routed
            .into_iter()
            .filter_map(|name| self.models.get(name))
            .flat_map(|m| {
                m.config
                    .url
                    .iter()
                    .map(|url| (m.name.clone(), m.config.at_endpoint(url)))
            })
            .filter(|(_, endpoint)| endpoint.is_local())
            .collect()
    }

    /// `path` as shown to a model and in diff headers: relative to the workspace root when
    /// it lies inside it, else as given.
    /// The repository name a FIM template's repository layout starts with: the workspace
    /// folder's name (the same for every request of the session).
    pub fn repo_name(&self) -> &str {
        self.workspace_root
            .as_deref()
            .and_then(|root| Path::new(root).file_name())
            .and_then(|name| name.to_str())
            .unwrap_or("workspace")
    }

    pub fn display_path(&self, path: &str) -> String {
        self.workspace_root
            .as_deref()
            .and_then(|root| Path::new(path).strip_prefix(root).ok())
            .filter(|rest| !rest.as_os_str().is_empty())
            .map_or_else(
                || path.to_string(),
                |rest| rest.to_string_lossy().into_owned(),
            )
    }
}

/// The current session of a running server, swapped whole on reconfiguration. Readers get
/// an `Arc` of the session as it was when they asked, and keep it for the whole request, so
/// one request never sees half of an old configuration and half of a new one.
#[derive(Debug)]
pub struct SharedSession(RwLock<Arc<Session>>);

impl SharedSession {
    pub fn new(session: Session) -> SharedSession {
        SharedSession(RwLock::new(Arc::new(session)))
    }

    /// The current session.
    pub fn get(&self) -> Arc<Session> {
        read(&self.0).clone()
    }

    /// Makes `session` the current one; requests already running keep theirs.
    pub fn replace(&self, session: Session) {
        *write(&self.0) = Arc::new(session);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(text: &str, root: Option<&str>) -> Result<Session, ConfigError> {
        let loaded = LoadedConfig::from_toml_str(text, Origin::File("s.toml".into()))?;
        Session::compile(loaded, root.map(String::from))
    }

    const MODELS: &str = r#"
[models.fast]
provider = "llamacpp"
url = "http://127.0.0.1:8012"
model = "qwen"
fim = "native"
[models.chat]
provider = "anthropic"
url = "https://api.anthropic.com"
model = "claude"
[routes]
complete = ["fast"]
explain = ["chat", "fast"]
"#;

    #[test]
    fn compiles_models_settings_and_chains_once() {
        let s = session(
            &format!("{MODELS}[[rules]]\ntask = \"explain\"\nuse = [\"fast\"]\n"),
            Some("/ws"),
        )
        .unwrap();
        assert_eq!(s.model("fast").unwrap().fim, Fim::parse("native"));
        assert_eq!(s.model("chat").unwrap().fim, None);
        let c = s.completion();
        assert_eq!(c.budget, Duration::from_millis(100));
        assert!(!c.rules_apply, "the only rule is for explain");
        assert!(c.any_cloud);
        assert_eq!(c.other_files.outline_files, 3);
        assert_eq!(c.other_files.recent_chunks, 4);
        assert_eq!(s.repo_name(), "ws");
        let names = |models: Vec<&Model>| -> Vec<String> {
            models.iter().map(|m| m.name.to_string()).collect()
        };
        assert_eq!(names(s.completion_chain()), ["fast"]);
        let endpoints: Vec<(String, String)> = s
            .routed_local_endpoints()
            .into_iter()
            .map(|(name, m)| (name.to_string(), m.url.to_string()))
            .collect();
        assert_eq!(endpoints, [("fast".into(), "http://127.0.0.1:8012".into())]);
        assert_eq!(s.display_path("/ws/src/a.rs"), "src/a.rs");
        assert_eq!(s.display_path("/elsewhere/a.rs"), "/elsewhere/a.rs");
        assert_eq!(s.display_path("/ws"), "/ws");
    }

    /// Other files' context goes only to local models with a place for it: llama.cpp's
    /// `/infill`, or a template with a repository layout.
    #[test]
    fn which_models_take_other_files() {
        let cases = [
            ("provider = \"llamacpp\"\nfim = \"native\"", true),
            (
                "provider = \"llamacpp\"\nfim = \"native\"\nlocal = false",
                false,
            ),
            ("provider = \"openai\"\nfim = \"qwen\"", true),
            ("provider = \"ollama\"\nfim = \"starcoder\"", true),
            (
                "provider = \"openai\"\nfim = \"qwen\"\nlocal = false",
                false,
            ),
            ("provider = \"ollama\"\nfim = \"native\"", false),
            ("provider = \"openai\"\nfim = \"codellama\"", false),
            ("provider = \"openai\"", false),
        ];
        for (model, want) in cases {
            let toml = format!(
                "[models.m]\n{model}\nurl = \"http://127.0.0.1:9\"\nmodel = \"x\"\n[routes]\ncomplete = [\"m\"]\n"
            );
            let s = session(&toml, None).unwrap();
            assert_eq!(s.model("m").unwrap().takes_other_files(), want, "{model}");
            let other_files = s.completion().other_files;
            assert_eq!(other_files.outline_files > 0, want, "{model}");
            assert_eq!(other_files.recent_chunks > 0, want, "{model}");
        }
        let off = session(&format!("{MODELS}[completion]\nrecent_chunks = 0\n"), None).unwrap();
        assert_eq!(off.completion().other_files.recent_chunks, 0);
        assert_eq!(off.completion().other_files.outline_files, 3);
        assert_eq!(off.repo_name(), "workspace");
    }

    #[test]
    fn a_glob_that_does_not_compile_names_the_file_and_key() {
        let err = session(
            &format!("{MODELS}[privacy]\nlocal_only = [\"a/[b\"]\n"),
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(err.starts_with("s.toml: `privacy.local_only[0]`"), "{err}");
    }

    #[test]
    fn overrides_compile_a_new_session_and_keep_the_root() {
        let s = session(MODELS, Some("/ws")).unwrap();
        let over = s
            .with_overrides(&serde_json::json!({"completion": {"budget_ms": 250}}))
            .unwrap();
        assert_eq!(over.completion().budget, Duration::from_millis(250));
        assert_eq!(over.workspace_root(), Some("/ws"));
        for nothing in [
            serde_json::json!(null),
            serde_json::json!({}),
            serde_json::json!([]),
        ] {
            let same = s.with_overrides(&nothing).unwrap();
            assert_eq!(same.config(), s.config(), "{nothing}");
        }
        assert!(s.with_overrides(&serde_json::json!([1])).is_err());
    }

    #[test]
    fn a_shared_session_is_swapped_whole() {
        let shared = SharedSession::new(session(MODELS, None).unwrap());
        let before = shared.get();
        shared.replace(session(MODELS, Some("/ws")).unwrap());
        assert_eq!(before.workspace_root(), None, "a reader keeps its session");
        assert_eq!(shared.get().workspace_root(), Some("/ws"));
    }
}
