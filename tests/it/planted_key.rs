//! Privacy proven by planting (issue 11): a known API key in the environment, secrets in the
//! documents, a `local_only` file, and a whole session — completions and actions over LSP,
//! a failing cloud model, every one-shot command — after which every output is searched:
//! the server's stdout (the LSP transcript), its stderr and log file, every file it wrote
//! (explain pages, the usage log), the commands' stdout and stderr (`stats` included), and
//! every request the local and cloud doubles received.
//!
//! - The key appears nowhere but in the `Authorization` header of the cloud model's requests
//!   (which must carry it: that is the control that the key was in use).
//! - The documents' secrets reach no cloud request, no log at the `debug` level, and not the
//!   usage log (which holds no prompt text by default).
//! - The `local_only` file reaches no cloud request (and does reach the local model: control).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use crate::support::double::{Behaviour, Fault, ModelDouble, RecordedRequest};
use crate::support::lsp::{LspClient, mark, position};
use crate::workspace::Workspace;

/// The planted key: only ever in the environment.
const KEY: &str = "sk-proj-PLANTEDq7Vx2Lm9Rb4Tn8Wc3Yh6Jd1Kf5Gs0Pz";
const KEY_ENV: &str = "PILOTFISH_PLANTED_KEY";

/// Secrets written into the documents, each of a kind the redactor knows.
const DOC_SECRETS: [&str; 4] = [
    "AKIAQ4RZ7PLANTEDX3KM",
    "ghp_PlantedGithubToken0123456789abcdefXYZ",
    "hunter2-Planted-Pw-9xQ",
    "xoxb-2718281828-3141592653-PlantedSlackTokenAbc",
];
/// In the `local_only` files only.
const LOCAL_ONLY_MARKER: &str = "LOCAL_ONLY_MARKER_5b1e9c";

fn app_py() -> String {
    format!(
        "import boto3\n\n\
         AWS_ACCESS_KEY_ID = \"{}\"\n\
         GITHUB_TOKEN = \"{}\"\n\
         DB_PASSWORD = \"{}\"\n\
         SLACK = \"{}\"\n\n\
         def upload(path):\n    client = boto3.client(\"s3\")\n    return $0\n",
        DOC_SECRETS[0], DOC_SECRETS[1], DOC_SECRETS[2], DOC_SECRETS[3]
    )
}

fn env_file() -> String {
    format!("# {LOCAL_ONLY_MARKER}\nAPI_TOKEN=tok_{LOCAL_ONLY_MARKER}\nDEBUG=$0\n")
}

fn creds_py() -> String {
    format!("# {LOCAL_ONLY_MARKER}\ndef creds():\n    return \"{LOCAL_ONLY_MARKER}\"$0\n")
}

/// The cloud model: completes with a word, and answers every chat with an empty review.
fn cloud_behaviour() -> Behaviour {
    Behaviour::answer_with(|r: &RecordedRequest| {
        if r.path.ends_with("/chat/completions") {
            "{\"findings\": []}".to_owned()
        } else {
            "path".to_owned()
        }
    })
}

struct Planted {
    cloud: ModelDouble,
    local: ModelDouble,
    workspace: Workspace,
    /// TMPDIR of every process: explain pages land here.
    tmp: PathBuf,
}

impl Planted {
    fn new() -> Planted {
        let cloud = ModelDouble::start(cloud_behaviour());
        let local = ModelDouble::start(Behaviour::answer_with(|r: &RecordedRequest| {
            if r.path == "/api/chat" {
                "{\"findings\": []}".to_owned()
            } else {
                "local_value".to_owned()
            }
        }));
        let workspace = Workspace::new(&format!(
            "[models.cloud]\nprovider = \"openai\"\nurl = \"{}/v1\"\nmodel = \"gpt-test\"\nfim = \"native\"\nlocal = false\napi_key_env = \"{KEY_ENV}\"\n\n\
             [models.local]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"test-model\"\nfim = \"native\"\n\n\
             [routes]\ncomplete = [\"cloud\", \"local\"]\nexplain = [\"cloud\", \"local\"]\nreview = [\"cloud\", \"local\"]\nrefactor = [\"cloud\", \"local\"]\n",
            cloud.base_url(),
            local.base_url()
        ));
        let tmp = workspace.path().join("tmp");
        std::fs::create_dir_all(&tmp).expect("a TMPDIR");
        for (name, fixture) in [
            ("app.py", app_py()),
            (".env", env_file()),
            ("secrets/creds.py", creds_py()),
        ] {
            workspace.write(name, &mark(&fixture).0);
        }
        Planted {
            cloud,
            local,
            workspace,
            tmp,
        }
    }

    /// The environment of every process: the key under its configured name and under the
    /// names the built-in default looks for, and the log level.
    fn env(&self, log_level: &str) -> Vec<(&'static str, String)> {
        vec![
            (KEY_ENV, KEY.to_owned()),
            ("OPENAI_API_KEY", KEY.to_owned()),
            ("ANTHROPIC_API_KEY", KEY.to_owned()),
            ("TMPDIR", self.tmp.display().to_string()),
            ("PILOTFISH_LOG", log_level.to_owned()),
        ]
    }
}

/// One editor session over LSP, logging everything (`trace`: tower-lsp then logs every
/// message, documents included — the user asked for all of it — but never the key); returns
/// what it printed (transcript and stderr).
fn editor_session(p: &Planted) -> Vec<(String, String)> {
    let env = p.env("trace");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let lsp = LspClient::spawn(
        &["--config", "pilotfish.toml", "--log-file", "server.log"],
        &env,
        p.workspace.path(),
    );
    lsp.initialize(
        json!({ "window": { "showDocument": { "support": true } } }),
        Value::Null,
    );
    let mut results = Vec::new();
    for (name, language, fixture) in [
        ("app.py", "python", app_py()),
        (".env", "plaintext", env_file()),
        ("secrets/creds.py", "python", creds_py()),
    ] {
        let (text, line, col) = mark(&fixture);
        let uri = lsp.uri(name);
        lsp.open(&uri, language, &text);
        let at = json!({ "uri": uri, "position": position(line, col) });
        let completion = lsp.request_and_wait(
            "textDocument/inlineCompletion",
            json!({ "textDocument": { "uri": uri }, "position": position(line, col), "context": { "triggerKind": 1 } }),
        );
        results.push(format!("{completion:?}"));
        for command in ["pilotfish.explain", "pilotfish.review"] {
            let ran = lsp.request_and_wait(
                "workspace/executeCommand",
                json!({ "command": command, "arguments": [at.clone()] }),
            );
            assert!(ran.is_ok(), "{command} on {name}: {ran:?}");
            results.push(format!("{ran:?}"));
        }
    }
    // The cloud model now refuses the key, echoing it back as some servers do: the error
    // reaches the user (the action falls back to the local model, naming the failure).
    p.cloud
        .set_behaviour(Behaviour::failing(Fault::status_with_body(
            401,
            format!("{{\"error\":{{\"message\":\"Incorrect API key provided: {KEY}\"}}}}"),
        )));
    let (text, line, col) = mark(&app_py());
    let uri = lsp.uri("app.py");
    lsp.change(&uri, 2, json!([{ "text": text }]));
    let explained = lsp.request_and_wait(
        "workspace/executeCommand",
        json!({ "command": "pilotfish.explain", "arguments": [{ "uri": uri, "position": position(line, col) }] }),
    );
    results.push(format!("{explained:?}"));
    lsp.shutdown_and_exit();
    vec![
        ("the LSP transcript".into(), lsp.transcript()),
        ("the LSP results".into(), results.join("\n")),
        ("the server's stderr".into(), lsp.stderr()),
    ]
}

/// Every one-shot command, logging at the level the README gives for troubleshooting
/// (`debug`: no document text in the log); returns what each printed.
fn command_line(p: &Planted) -> Vec<(String, String)> {
    p.cloud.set_behaviour(cloud_behaviour());
    let env = p.env("debug");
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let (_, line, col) = mark(&app_py());
    let spot = format!("app.py:{}:{}", line + 1, col + 1);
    let short = format!("app.py:{}", line + 1);
    let commands: Vec<Vec<&str>> = vec![
        vec!["config"],
        vec!["check"],
        vec!["route", &spot, "--task", "explain", "--json"],
        vec!["route", &spot, "--task", "complete", "--json"],
        vec!["route", &spot, "--task", "review"],
        vec!["complete", &spot],
        vec!["action", "explain", &short],
        vec!["action", "review", &short],
        vec!["action", "explain", ".env:2"],
        vec!["stats"],
        vec!["stats", "--json"],
    ];
    let mut outputs = Vec::new();
    for args in commands {
        let mut all = vec!["--config", "pilotfish.toml", "--log-file", "cli.log"];
        all.extend(&args);
        let ran = p.workspace.run(&all, &env);
        outputs.push((format!("`pilotfish {}`", args.join(" ")), ran.both()));
    }
    // Without --log-file too: the log goes to stderr.
    let ran = p.workspace.run(
        &["--config", "pilotfish.toml", "action", "explain", &short],
        &env,
    );
    outputs.push((
        "`pilotfish action explain` (log on stderr)".into(),
        ran.both(),
    ));
    outputs
}

/// Every file under `dir`, with its text (lossy).
fn files_under(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((
                path.display().to_string(),
                String::from_utf8_lossy(&bytes).into_owned(),
            ));
        }
    }
    out
}

/// Everything a double received: every request's headers (all but `authorization` when
/// `but_authorization`) and body.
fn received(double: &ModelDouble, but_authorization: bool) -> String {
    double
        .recorded()
        .iter()
        .map(|r| {
            let headers: Vec<String> = r
                .headers
                .iter()
                .filter(|(name, _)| !(but_authorization && name == "authorization"))
                .map(|(name, value)| format!("{name}: {value}"))
                .collect();
            format!(
                "{} {}\n{}\n{}",
                r.method,
                r.path,
                headers.join("\n"),
                String::from_utf8_lossy(&r.raw_body)
            )
        })
        .collect::<Vec<_>>()
        .join("\n\n")
}

/// The usage log's place under the workspace (its HOME and XDG_STATE_HOME), by default.
const USAGE_LOG: &str = ".local/state/pilotfish/usage.jsonl";

/// The usage log was written (so the search covered it): JSON lines, with model calls to
/// both the cloud and the local model, and the cloud's refusal.
fn assert_usage_log_covers_the_session(written: &[(String, String)]) {
    let (_, log) = written
        .iter()
        .find(|(path, _)| path.ends_with(USAGE_LOG))
        .unwrap_or_else(|| panic!("no usage log among {written:?}"));
    let lines: Vec<Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect();
    let calls = |model: &str| {
        lines
            .iter()
            .filter(|l| l["event"] == "call" && l["model"] == model)
            .count()
    };
    assert!(
        calls("cloud") > 0 && calls("local") > 0,
        "calls to both models are logged: {log}"
    );
    // The refusal (whose text echoed the key) is logged as the fallback of the call after it.
    let refused = lines.iter().any(|l| {
        l["route"]["fallbacks"]
            .as_array()
            .is_some_and(|f| f.iter().any(|f| f["model"] == "cloud"))
    });
    assert!(refused, "the refused call is logged: {log}");
}

#[test]
fn a_planted_key_and_document_secrets_appear_in_no_output() {
    let p = Planted::new();
    let mut outputs = editor_session(&p);
    outputs.extend(command_line(&p));
    // Every file any process wrote: the log files, explain pages (TMPDIR), and whatever lands
    // under HOME and XDG_STATE_HOME — the usage log among them.
    let written: Vec<(String, String)> = files_under(p.workspace.path())
        .into_iter()
        .filter(|(path, _)| {
            !path.ends_with("pilotfish.toml")
                && !path.ends_with("app.py")
                && !path.ends_with(".env")
                && !path.ends_with("creds.py")
        })
        .collect();
    assert!(
        written.iter().any(|(path, _)| path.ends_with("server.log"))
            && written.iter().any(|(path, _)| path.ends_with("cli.log"))
            && written.iter().any(|(path, _)| path.contains("explain")),
        "the log files and explain pages were written: {:?}",
        written.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    assert_usage_log_covers_the_session(&written);
    outputs.extend(written);
    let cloud_bodies = received(&p.cloud, true);
    outputs.push((
        "the local double's requests".into(),
        received(&p.local, false),
    ));
    outputs.push((
        "the cloud double's requests (but their Authorization headers)".into(),
        cloud_bodies.clone(),
    ));

    // Controls: the key was in use, the documents did reach both models, the local_only
    // file reached the local one, and the 401 echoing the key was seen by the server.
    let auth: Vec<String> = p
        .cloud
        .recorded()
        .iter()
        .filter_map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert!(
        !auth.is_empty() && auth.iter().all(|a| a == &format!("Bearer {KEY}")),
        "{auth:?}"
    );
    assert!(
        cloud_bodies.contains("def upload(path)"),
        "the code reached the cloud model"
    );
    assert!(received(&p.local, false).contains(LOCAL_ONLY_MARKER));
    assert!(p.cloud.faulted() >= 1, "{}", p.cloud.summary());

    let key_tail = &KEY[KEY.len() - 16..];
    let mut leaks = Vec::new();
    for (what, text) in &outputs {
        if let Some(at) = text.find(key_tail) {
            let from = text.floor_char_boundary(at.saturating_sub(120));
            leaks.push(format!("the key is in {what}: …{}…", &text[from..at + 16]));
        }
        // Logs at `debug` hold no document text (the server's log is at `trace`), nor does
        // the usage log.
        let is_log =
            what.ends_with("cli.log") || what.contains("`pilotfish") || what.contains(USAGE_LOG);
        for secret in DOC_SECRETS {
            if (what.contains("cloud") || is_log) && text.contains(secret) {
                leaks.push(format!("the document secret {secret} is in {what}"));
            }
        }
    }
    for (what, text) in &outputs {
        if what.contains(USAGE_LOG) && text.contains(LOCAL_ONLY_MARKER) {
            leaks.push(format!("the local_only file's text is in {what}"));
        }
    }
    if cloud_bodies.contains(LOCAL_ONLY_MARKER) {
        leaks.push("the local_only files reached the cloud double".into());
    }
    assert!(leaks.is_empty(), "{}", leaks.join("\n"));
}
