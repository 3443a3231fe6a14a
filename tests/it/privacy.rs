//! Privacy (issue 3, SPEC §3 `[privacy]`, §9): with a completion chain `[cloud, local]` where
//! `cloud` is a double marked `local = false`, a file matching `privacy.local_only` never
//! reaches the cloud double at all; a secret in the text sent is masked before the cloud
//! double sees it (redaction on, the default), and with `redact_secrets = false` a secret
//! keeps the request on the local model. Every assertion is on what the doubles recorded.

use crate::harness::calls_not_after;
use crate::support::double::{Behaviour, ModelDouble};
use crate::workspace::{Workspace, cloud, complete_route, ollama};

/// The secret values planted in files. None may ever appear in a cloud request.
const OPENAI_KEY: &str = "sk-proj-Zq3vT8nW2xK5mR7pL9sJ4hB6dF1gC0aYeU2iO8tQ";
const PEM_BODY: [&str; 3] = [
    "MIIEowIBAAKCAQEAu7Zq3vT8nW2xK5mR7pL9sJ4hB6dF1gC0aYeU2iO8tQzXcVbN",
    "mKjHgFdSaPoIuYtReWqAzSxDcFvGbHnJmKlPoIuYtReWqAzSxDcFvGbHnJmKlPoI",
    "q9Zs+XkT7uV3wY5zA1bC8dE0fG2hI4jK6lM8nO0pQ2rS4tU6vW8xY0zA2bC4dE6f",
];

/// Two doubles, `cloud` (marked cloud) then `local`, and a workspace routing completion
/// through them in that order, with `privacy_lines` as the `[privacy]` table.
struct CloudThenLocal {
    cloud: ModelDouble,
    local: ModelDouble,
    workspace: Workspace,
}

impl CloudThenLocal {
    fn new(privacy_lines: &str) -> CloudThenLocal {
        let cloud_double = ModelDouble::start(Behaviour::answer("from_cloud"));
        let local = ModelDouble::start(Behaviour::answer("from_local"));
        let config = format!(
            "{}{}{}\n[privacy]\n{privacy_lines}\n",
            cloud("cloud", &cloud_double.base_url(), ""),
            ollama("local", &local.base_url(), ""),
            complete_route(&["cloud", "local"])
        );
        CloudThenLocal {
            cloud: cloud_double,
            local,
            workspace: Workspace::new(&config),
        }
    }

    /// The cloud double got no model call: at most the connection warm-up's probes, which
    /// carry no text of any file.
    #[track_caller]
    fn assert_cloud_untouched(&self) {
        assert_eq!(self.cloud.requests(), 0, "{}", self.cloud.summary());
        for request in self.cloud.recorded() {
            assert!(
                !request.is_model_call() && request.raw_body.is_empty(),
                "only bodiless probes: {request:?}"
            );
        }
    }

    /// Every piece of text the cloud double was sent, across all its requests.
    fn cloud_input(&self) -> String {
        self.cloud
            .recorded()
            .iter()
            .map(|r| r.all_input_text())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn pem_block() -> String {
    format!(
        "-----BEGIN RSA PRIVATE KEY-----\n{}\n-----END RSA PRIVATE KEY-----\n",
        PEM_BODY.join("\n")
    )
}

#[test]
fn a_local_only_path_never_reaches_the_cloud_model() {
    // The default `local_only` globs: `**/.env*`, `**/secrets/**`, `**/*.pem`.
    let setup = CloudThenLocal::new("");
    let editor = setup.workspace.serve();
    for (n, (path, language)) in [
        ("secrets/keys.py", "python"),
        (".env.local", "plaintext"),
        ("certs/server.pem", "plaintext"),
    ]
    .into_iter()
    .enumerate()
    {
        let fixture = format!("value_{n} = $0\n");
        assert_eq!(
            editor.suggest(path, language, &fixture).as_deref(),
            Some("from_local"),
            "{path}"
        );
    }
    setup.assert_cloud_untouched();
    assert_eq!(
        calls_not_after(&setup.local, &["from_local"]),
        3,
        "{}",
        setup.local.summary()
    );
    // The same chain still prefers the cloud model for an ordinary file.
    assert_eq!(
        editor
            .suggest("src/app.py", "python", "ordinary = $0\n")
            .as_deref(),
        Some("from_cloud")
    );
    editor.lsp.shutdown_and_exit();
}

#[test]
fn a_configured_local_only_glob_keeps_its_files_local() {
    let setup = CloudThenLocal::new("local_only = [\"internal/**\"]");
    let editor = setup.workspace.serve();
    assert_eq!(
        editor
            .suggest("internal/billing.py", "python", "total = $0\n")
            .as_deref(),
        Some("from_local")
    );
    setup.assert_cloud_untouched();
    editor.lsp.shutdown_and_exit();
}

#[test]
fn a_secret_in_the_prefix_is_masked_before_the_cloud_model_sees_it() {
    let setup = CloudThenLocal::new("");
    let editor = setup.workspace.serve();
    let fixture =
        format!("import os\n\nOPENAI_API_KEY = \"{OPENAI_KEY}\"\n\ndef client():\n    return $0\n");
    assert_eq!(
        editor.suggest("app.py", "python", &fixture).as_deref(),
        Some("from_cloud"),
        "redaction keeps the cloud model eligible"
    );
    assert_eq!(setup.cloud.requests(), 1, "{}", setup.cloud.summary());
    let sent = setup.cloud_input();
    assert!(
        sent.contains("OPENAI_API_KEY = \""),
        "the code is sent: {sent}"
    );
    assert!(sent.contains("[REDACTED]"), "{sent}");
    assert!(!sent.contains(OPENAI_KEY), "the key leaked: {sent}");
    assert!(!sent.contains("sk-proj-"), "part of the key leaked: {sent}");
    assert_eq!(setup.local.requests(), 0);
    editor.lsp.shutdown_and_exit();
}

#[test]
fn a_private_key_block_in_the_prefix_or_the_suffix_never_reaches_the_cloud_model() {
    let setup = CloudThenLocal::new("");
    let editor = setup.workspace.serve();
    let pem = pem_block();
    let before = format!("KEY = \"\"\"\n{pem}\"\"\"\n\ndef sign(data):\n    return $0\n");
    let after = format!("def sign(data):\n    return $0\n\nKEY = \"\"\"\n{pem}\"\"\"\n");
    for (name, fixture) in [("before.py", before), ("after.py", after)] {
        assert_eq!(
            editor.suggest(name, "python", &fixture).as_deref(),
            Some("from_cloud"),
            "{name}"
        );
    }
    assert_eq!(setup.cloud.requests(), 2, "{}", setup.cloud.summary());
    let sent = setup.cloud_input();
    assert!(sent.contains("-----BEGIN RSA PRIVATE KEY-----"), "{sent}");
    for line in PEM_BODY {
        assert!(!sent.contains(line), "a key line leaked: {line}\n{sent}");
    }
    editor.lsp.shutdown_and_exit();
}

#[test]
fn a_private_key_cut_by_the_prefix_window_never_reaches_the_cloud_model() {
    // A plain-text file: the prefix window (~2 KB for a model not measured yet, ~6 KB for
    // a fast one) starts on a line inside the key block, after its BEGIN line, so the window
    // holds key lines and the END line only.
    let setup = CloudThenLocal::new("");
    let editor = setup.workspace.serve();
    let body: Vec<String> = (0..100)
        .map(|i| format!("{}{i:04}", &PEM_BODY[i % 3][..60]))
        .collect();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        body.join("\n")
    );
    let filler: String = (0..10)
        .map(|i| format!("note {i:03}: deployment steps follow the usual runbook.\n"))
        .collect();
    let fixture = format!("deploy notes\n{pem}{filler}next step: $0\n");
    assert_eq!(
        editor
            .suggest("notes.txt", "plaintext", &fixture)
            .as_deref(),
        Some("from_cloud")
    );
    let sent = setup.cloud_input();
    assert!(
        sent.contains("-----END PRIVATE KEY-----"),
        "the window must cut the key block for this test to mean anything: {sent}"
    );
    assert!(
        !sent.contains("-----BEGIN PRIVATE KEY-----"),
        "the window must start inside the block: {sent}"
    );
    for line in &body {
        assert!(
            !sent.contains(line.as_str()),
            "a key line leaked: {line}\n{sent}"
        );
    }
    editor.lsp.shutdown_and_exit();
}

#[test]
fn without_redaction_a_secret_keeps_the_request_on_the_local_model() {
    let setup = CloudThenLocal::new("redact_secrets = false");
    let editor = setup.workspace.serve();
    let with_key = format!("OPENAI_API_KEY = \"{OPENAI_KEY}\"\nclient = $0\n");
    assert_eq!(
        editor.suggest("app.py", "python", &with_key).as_deref(),
        Some("from_local")
    );
    let with_pem = format!("KEY = \"\"\"\n{}\"\"\"\nsigned = $0\n", pem_block());
    assert_eq!(
        editor.suggest("sign.py", "python", &with_pem).as_deref(),
        Some("from_local")
    );
    setup.assert_cloud_untouched();
    assert_eq!(
        calls_not_after(&setup.local, &["from_local"]),
        2,
        "{}",
        setup.local.summary()
    );
    // Without a secret the cloud model is used as usual.
    assert_eq!(
        editor
            .suggest("plain.py", "python", "plain = $0\n")
            .as_deref(),
        Some("from_cloud")
    );
    editor.lsp.shutdown_and_exit();
}

#[test]
fn a_secret_is_masked_in_the_chat_prompt_of_a_chat_only_cloud_model() {
    let chat = ModelDouble::start(Behaviour::answer("from_chat"));
    let local = ModelDouble::start(Behaviour::answer("from_local"));
    let workspace = Workspace::new(&format!(
        "[models.chat]\nprovider = \"ollama\"\nurl = \"{}\"\nmodel = \"chat-model\"\nlocal = false\n\n{}{}\n{}",
        chat.base_url(),
        ollama("local", &local.base_url(), ""),
        complete_route(&["local"]),
        "[[rules]]\ntask = \"complete\"\nwhen = { languages = [\"python\"] }\nuse = [\"chat\", \"local\"]\n"
    ));
    let editor = workspace.serve();
    let fixture = format!("OPENAI_API_KEY = \"{OPENAI_KEY}\"\n\ndef client():\n    return $0\n");
    assert_eq!(
        editor.suggest("app.py", "python", &fixture).as_deref(),
        Some("from_chat")
    );
    let call = chat.last_model_call().expect("a chat call");
    let sent = call.all_input_text();
    assert!(sent.contains("def client():"), "{sent}");
    assert!(!sent.contains(OPENAI_KEY), "the key leaked: {sent}");
    assert_eq!(local.requests(), 0);
    editor.lsp.shutdown_and_exit();
}
