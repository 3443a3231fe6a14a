//! The set-up every end-to-end test shares: a model double, a config file in a temp
//! workspace pointing at it, the real `pilotfish` binary spawned over stdio and initialized,
//! and small helpers to ask for completions and read their answers.
//!
//! Tests assert counts and contents, never timings: the machine is shared. They run with the
//! completion settings a new user has (the 100 ms budget), unless a test is about a setting.

use serde_json::{Value, json};
use tempfile::TempDir;

use crate::support::double::{Behaviour, ModelDouble, RecordedRequest};
use crate::support::lsp::{LspClient, RequestId, mark};

/// Which provider and FIM mode the config gives the completion model.
#[derive(Clone, Debug)]
pub struct Options {
    /// `"openai"`, `"ollama"` or `"llamacpp"`.
    pub provider: &'static str,
    /// `"native"` or a template name.
    pub fim: &'static str,
    /// Lines appended to the `[completion]` table.
    pub completion: String,
    /// The model's URL instead of the double's (e.g. a port nobody listens on).
    pub url: Option<String>,
    /// The client's capabilities at `initialize`.
    pub capabilities: Value,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            provider: "ollama",
            fim: "native",
            completion: String::new(),
            url: None,
            capabilities: json!({}),
        }
    }
}

impl Options {
    pub fn provider(mut self, provider: &'static str, fim: &'static str) -> Self {
        self.provider = provider;
        self.fim = fim;
        self
    }

    pub fn completion(mut self, lines: &str) -> Self {
        self.completion = lines.to_owned();
        self
    }

    pub fn url(mut self, url: String) -> Self {
        self.url = Some(url);
        self
    }

    pub fn capabilities(mut self, capabilities: Value) -> Self {
        self.capabilities = capabilities;
        self
    }
}

/// The `[models.fast]` config for a model served at `url` (the host root; `/v1` is added
/// for OpenAI-compatible servers).
pub fn config_toml(provider: &str, fim: &str, url: &str, completion: &str) -> String {
    let url = if provider == "openai" {
        format!("{url}/v1")
    } else {
        url.to_owned()
    };
    format!(
        "[models.fast]\nprovider = \"{provider}\"\nurl = \"{url}\"\nmodel = \"test-model\"\nfim = \"{fim}\"\n\n[routes]\ncomplete = [\"fast\"]\n\n[completion]\n{completion}"
    )
}

/// A model address where nothing listens: a port bound and released at once.
pub fn dead_url() -> String {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
    let port = listener.local_addr().expect("local address").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

/// A running, initialized server with its model double and workspace.
pub struct Server {
    pub double: ModelDouble,
    pub lsp: LspClient,
    pub init: Value,
    /// Every suggestion an inline request got so far (prefetches ask after them).
    shown: std::cell::RefCell<Vec<String>>,
    /// Kept alive for the server's lifetime (its workspace).
    _dir: TempDir,
}

impl Server {
    /// Ollama with native FIM, default capabilities.
    pub fn start(behaviour: Behaviour) -> Server {
        Server::start_with(behaviour, Options::default())
    }

    pub fn start_with(behaviour: Behaviour, options: Options) -> Server {
        let double = ModelDouble::start(behaviour);
        let dir = tempfile::tempdir().expect("temp workspace");
        let url = options.url.clone().unwrap_or_else(|| double.base_url());
        let config = config_toml(options.provider, options.fim, &url, &options.completion);
        std::fs::write(dir.path().join("pilotfish.toml"), config).expect("write the config");
        let lsp = LspClient::spawn(&["--config", "pilotfish.toml"], &[], dir.path());
        let init = lsp.initialize(options.capabilities, Value::Null);
        Server {
            double,
            lsp,
            init,
            shown: Default::default(),
            _dir: dir,
        }
    }

    /// Opens `name` with the `$0`-marked `fixture`; returns the URI and the cursor (UTF-16).
    pub fn open(&self, name: &str, language_id: &str, fixture: &str) -> (String, u32, u32) {
        let (text, line, col) = mark(fixture);
        let uri = self.lsp.uri(name);
        self.lsp.open(&uri, language_id, &text);
        (uri, line, col)
    }

    /// Sends `textDocument/inlineCompletion` without waiting.
    pub fn inline_request(&self, uri: &str, line: u32, col: u32) -> RequestId {
        self.lsp.request(
            "textDocument/inlineCompletion",
            json!({
                "textDocument": { "uri": uri },
                "position": { "line": line, "character": col },
                "context": { "triggerKind": 2 }
            }),
        )
    }

    /// `textDocument/inlineCompletion` and its (successful) result.
    pub fn inline(&self, uri: &str, line: u32, col: u32) -> Value {
        let id = self.inline_request(uri, line, col);
        self.inline_result(id)
    }

    /// `textDocument/inlineCompletion`, its result, and the model call it made: the first
    /// one after the request was sent that is not a prefetch for the place after an earlier
    /// suggestion. None when it was answered without a model call.
    pub fn inline_and_call(
        &self,
        uri: &str,
        line: u32,
        col: u32,
    ) -> (Value, Option<crate::support::double::RecordedRequest>) {
        let before = self.double.model_calls().len();
        let shown = self.shown.borrow().clone();
        let result = self.inline(uri, line, col);
        let call = self
            .double
            .model_calls()
            .into_iter()
            .skip(before)
            .find(|c| {
                let prefix = c.fim_prefix_text();
                !c.is_warm_up() && !shown.iter().any(|s| prefix.ends_with(s.as_str()))
            });
        (result, call)
    }

    /// The successful result of an inline completion request.
    pub fn inline_result(&self, id: RequestId) -> Value {
        match self.lsp.response(id) {
            Ok(result) => {
                self.shown.borrow_mut().extend(suggestion(&result));
                result
            }
            Err(error) => self.lsp.fail(&format!(
                "inlineCompletion {id} answered with an error: {error:?}"
            )),
        }
    }

    /// Waits until the model double has received `n` calls for the place whose text before
    /// the cursor ends with `before_cursor` (see [`Server::calls_at`]), and none is in flight;
    /// false after 10 s.
    pub fn wait_calls_at(&self, before_cursor: &str, n: usize) -> bool {
        self.double.wait_for(
            |d| {
                d.in_flight() == 0
                    && d.model_calls()
                        .iter()
                        .filter(|c| !c.is_warm_up() && c.fim_prefix_text().ends_with(before_cursor))
                        .count()
                        == n
            },
            std::time::Duration::from_secs(10),
        )
    }

    /// The model calls so far for the place whose text before the cursor ends with
    /// `before_cursor` (see [`calls_at`]).
    pub fn calls_at(&self, before_cursor: &str) -> usize {
        calls_at(&self.double, before_cursor)
    }

    /// Asserts that the server still answers: a request for a method every server has.
    pub fn assert_alive(&self) {
        assert!(self.lsp.is_running(), "the server exited");
        let answered = self.lsp.request_and_wait(
            "textDocument/completion",
            json!({
                "textDocument": { "uri": "file:///never-opened.py" },
                "position": { "line": 0, "character": 0 }
            }),
        );
        // Any answer (an error for the unopened document is right) proves it is alive.
        let _ = answered;
        assert!(self.lsp.is_running(), "the server exited");
    }
}

/// The model calls `double` received for one place: those whose text before the cursor ends
/// with `before_cursor`. After a suggestion is shown the server asks, in the background, for
/// the place after it too (the prefetch); counting calls by place keeps the two apart.
/// Warm-ups (the prompt read into the server's cache at a new place) do not count.
pub fn calls_at(double: &ModelDouble, before_cursor: &str) -> usize {
    double
        .model_calls()
        .iter()
        .filter(|c| !c.is_warm_up() && c.fim_prefix_text().ends_with(before_cursor))
        .count()
}

/// The model calls `double` received, less the prefetches for the place after one of the
/// `shown` suggestions (their text before the cursor ends with the suggestion) and the
/// warm-ups.
pub fn calls_not_after(double: &ModelDouble, shown: &[&str]) -> usize {
    double
        .model_calls()
        .iter()
        .filter(|c| {
            let prefix = c.fim_prefix_text();
            !c.is_warm_up() && !shown.iter().any(|s| prefix.ends_with(s))
        })
        .count()
}

/// The suggestion text of an inline completion result (its first item), if any.
pub fn suggestion(result: &Value) -> Option<String> {
    items(result)
        .first()
        .and_then(|item| item["insertText"].as_str())
        .map(str::to_owned)
}

/// The items of an inline completion result (a list or a bare array).
pub fn items(result: &Value) -> Vec<Value> {
    let list = if result.is_array() {
        result
    } else {
        &result["items"]
    };
    list.as_array().cloned().unwrap_or_default()
}

/// Asserts an inline completion result offers nothing.
#[track_caller]
pub fn assert_empty(result: &Value) {
    assert!(
        result.is_null() || items(result).is_empty(),
        "expected no suggestion, got {result}"
    );
}

/// FNV-1a of the prompt and suffix a model call carried, as a suggestion: what [`echo`]
/// answers. A completion at the end of a document then proves the text the server holds.
pub fn digest(prompt: &str, suffix: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in prompt.bytes().chain([0xff]).chain(suffix.bytes()) {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    format!("seen_{hash:016x}")
}

/// A model that answers with the [`digest`] of what it was sent.
pub fn echo() -> Behaviour {
    Behaviour::answer_with(|request: &RecordedRequest| {
        digest(
            &request.prompt_text(),
            &request.suffix_text().unwrap_or_default(),
        )
    })
}

/// A memory figure of a process in KB, from Linux's `/proc/PID/status` (`VmRSS`: resident
/// now, `VmHWM`: its peak); 0 where it cannot be read.
pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A process's peak resident set size in KB.
pub fn peak_rss_kb(pid: u32) -> u64 {
    proc_status_kb(pid, "VmHWM")
}
