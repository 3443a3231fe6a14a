//! The routing commands (issue 3, SPEC §2): `pilotfish route FILE:LINE:COL --task TASK
//! [--json]` prints the decision, the chain and the reason for every candidate without
//! calling a model (the doubles record nothing); `pilotfish check` probes every model and
//! exits 1 when a route has no live model; `pilotfish config` with no file shows the built-in
//! default, which adds a cloud model for actions only when its key variable is set — and
//! never prints the key.

use serde_json::Value;

use crate::harness::dead_url;
use crate::support::double::{Behaviour, Fault, ModelDouble};
use crate::workspace::{Ran, Workspace, cloud, ollama};

/// A Python function that builds SQL from its input (a `sql` sensitive call).
const LOOKUP_PY: &str = "import sqlite3\n\ndef find_user(cursor, name):\n    cursor.execute(f\"SELECT * FROM users WHERE name = '{name}'\")\n    return cursor.fetchone()\n";
/// A plain function: no sensitive call.
const ADD_PY: &str = "def add(a, b):\n    return a + b\n";

/// Models `fast` (local) and `big` (cloud), each a double that must never be called, with
/// routes complete = [fast], review = [big, fast], and `extra` appended.
struct Doubles {
    fast: ModelDouble,
    big: ModelDouble,
    workspace: Workspace,
}

impl Doubles {
    fn new(extra: &str) -> Doubles {
        let fast = ModelDouble::start(Behaviour::answer("unused"));
        let big = ModelDouble::start(Behaviour::answer("unused"));
        let config = format!(
            "{}{}[routes]\ncomplete = [\"fast\"]\nreview = [\"big\", \"fast\"]\n\n{extra}\n",
            ollama("fast", &fast.base_url(), ""),
            cloud("big", &big.base_url(), "")
        );
        let workspace = Workspace::new(&config);
        workspace.write("lookup.py", LOOKUP_PY);
        workspace.write("add.py", ADD_PY);
        Doubles {
            fast,
            big,
            workspace,
        }
    }

    /// `pilotfish route SPOT --task TASK --json`, parsed; asserts exit `code`.
    fn route_json(&self, spot: &str, task: &str, code: i32) -> Value {
        let ran = self
            .workspace
            .run_configured(&["route", spot, "--task", task, "--json"]);
        assert_eq!(ran.code(), Some(code), "{}", ran.both());
        serde_json::from_str(&ran.stdout())
            .unwrap_or_else(|e| panic!("route --json prints JSON ({e}): {}", ran.both()))
    }

    #[track_caller]
    fn assert_no_model_called(&self) {
        assert!(self.fast.recorded().is_empty(), "{}", self.fast.summary());
        assert!(self.big.recorded().is_empty(), "{}", self.big.summary());
    }
}

fn chain_of(json: &Value) -> Vec<String> {
    json["decision"]["chain"]
        .as_array()
        .unwrap_or_else(|| panic!("decision.chain is a list: {json:#}"))
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}

/// The candidate entry for `model`.
fn candidate<'a>(json: &'a Value, model: &str) -> &'a Value {
    json["decision"]["candidates"]
        .as_array()
        .and_then(|all| all.iter().find(|c| c["model"] == model))
        .unwrap_or_else(|| panic!("no candidate {model}: {json:#}"))
}

#[test]
fn route_prints_the_decision_chain_and_reasons_without_calling_a_model() {
    let doubles = Doubles::new("");
    let ran = doubles
        .workspace
        .run_configured(&["route", "add.py:2:5", "--task", "review"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    let out = ran.stdout();
    assert!(out.contains("target: function_definition add"), "{out}");
    assert!(
        out.contains("routes.review"),
        "where the chain came from: {out}"
    );
    assert!(out.contains("big"), "{out}");
    assert!(out.contains("fast"), "{out}");
    assert!(out.contains("kept"), "each candidate's verdict: {out}");
    assert!(out.contains("cloud, healthy"), "the reason: {out}");
    assert!(out.contains("try: big → fast"), "the chain: {out}");
    doubles.assert_no_model_called();
}

#[test]
fn route_json_has_the_chain_and_a_reason_for_every_candidate() {
    let doubles = Doubles::new("");
    let json = doubles.route_json("add.py:2:5", "complete", 0);
    assert_eq!(chain_of(&json), ["fast"]);
    assert_eq!(json["decision"]["task"], "complete");
    assert_eq!(json["decision"]["chain_source"], "routes.complete");
    let candidates = json["decision"]["candidates"].as_array().expect("a list");
    assert!(!candidates.is_empty(), "{json:#}");
    for c in candidates {
        let reason = c["reason"].as_str().unwrap_or_default();
        assert!(!reason.is_empty(), "a reason for each candidate: {json:#}");
    }
    assert_eq!(json["features"]["language"], "python");
    assert_eq!(json["features"]["sensitive"], serde_json::json!([]));
    doubles.assert_no_model_called();
}

#[test]
fn route_shows_a_sql_call_and_a_sensitive_rule_picks_its_chain() {
    let doubles = Doubles::new(
        "[[rules]]\ntask = \"review\"\nwhen = { sensitive = true }\nuse = [\"big\"]\n",
    );
    // Line 4 is the `cursor.execute(f"...")` line, inside find_user.
    let json = doubles.route_json("lookup.py:4:9", "review", 0);
    let sensitive = json["features"]["sensitive"].as_array().expect("a list");
    assert!(
        sensitive.iter().any(|k| k == "sql"),
        "SQL built from a string: {json:#}"
    );
    assert_eq!(json["target"]["name"], "find_user", "{json:#}");
    assert_eq!(json["decision"]["chain_source"], "rules[0]", "{json:#}");
    let why = json["decision"]["why"].as_str().unwrap_or_default();
    assert!(
        why.contains("sql"),
        "the rule's reason names the call: {why}"
    );
    assert_eq!(chain_of(&json), ["big"]);

    // A function without sensitive calls falls back to the route.
    let plain = doubles.route_json("add.py:2:5", "review", 0);
    assert_eq!(plain["decision"]["chain_source"], "routes.review");
    assert_eq!(chain_of(&plain), ["big", "fast"]);

    // The text form says it too.
    let ran = doubles
        .workspace
        .run_configured(&["route", "lookup.py:4:9", "--task", "review"]);
    assert!(ran.stdout().contains("1 sensitive calls"), "{}", ran.both());
    assert!(ran.stdout().contains("rules[0]"), "{}", ran.both());
    doubles.assert_no_model_called();
}

#[test]
fn route_drops_the_cloud_model_for_a_local_only_path_and_says_why() {
    let doubles = Doubles::new("");
    doubles.workspace.write("secrets/keys.py", ADD_PY);
    let json = doubles.route_json("secrets/keys.py:2:5", "review", 0);
    assert_eq!(chain_of(&json), ["fast"]);
    let big = candidate(&json, "big");
    assert_eq!(big["kept"], false);
    assert_eq!(big["dropped_by"], "privacy");
    let reason = big["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("secrets/**"), "names the pattern: {reason}");
    doubles.assert_no_model_called();
}

#[test]
fn route_with_secrets_and_redaction_off_keeps_the_request_local() {
    let key_file = "API_KEY = \"sk-proj-Zq3vT8nW2xK5mR7pL9sJ4hB6dF1gC0aYeU2iO8tQ\"\n\ndef client():\n    return API_KEY\n";
    let redacting = Doubles::new("");
    redacting.workspace.write("client.py", key_file);
    let json = redacting.route_json("client.py:4:5", "review", 0);
    assert_eq!(
        chain_of(&json),
        ["big", "fast"],
        "with redaction the cloud model stays eligible: {json:#}"
    );

    let strict = Doubles::new("[privacy]\nredact_secrets = false\n");
    strict.workspace.write("client.py", key_file);
    let json = strict.route_json("client.py:1:1", "review", 0);
    assert_eq!(chain_of(&json), ["fast"], "{json:#}");
    let reason = candidate(&json, "big")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(reason.contains("secret"), "{reason}");
    redacting.assert_no_model_called();
    strict.assert_no_model_called();
}

#[test]
fn route_exits_1_when_every_candidate_is_dropped() {
    let only_cloud = ModelDouble::start(Behaviour::answer("unused"));
    let local = ModelDouble::start(Behaviour::answer("unused"));
    let workspace = Workspace::new(&format!(
        "{}{}[routes]\ncomplete = [\"local\"]\nreview = [\"big\"]\n",
        ollama("local", &local.base_url(), ""),
        cloud("big", &only_cloud.base_url(), "")
    ));
    workspace.write("secrets/keys.py", ADD_PY);
    let ran = workspace.run_configured(&["route", "secrets/keys.py:2:5", "--task", "review"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.both());
    assert!(
        ran.stdout().contains("no model for review"),
        "{}",
        ran.both()
    );
    assert!(ran.stdout().contains("secrets/**"), "{}", ran.both());
    let json =
        workspace.run_configured(&["route", "secrets/keys.py:2:5", "--task", "review", "--json"]);
    assert_eq!(json.code(), Some(1), "{}", json.both());
    let parsed: Value = serde_json::from_str(&json.stdout()).expect("JSON");
    assert_eq!(parsed["decision"]["chain"], serde_json::json!([]));
    assert!(parsed["decision"]["unavailable"].is_string(), "{parsed:#}");
    assert!(only_cloud.recorded().is_empty() && local.recorded().is_empty());
}

// ---------------------------------------------------------------------------------------------
// pilotfish check

/// The lines of `check`'s report that mention `word`.
fn lines_with<'a>(out: &'a str, word: &str) -> Vec<&'a str> {
    out.lines().filter(|l| l.contains(word)).collect()
}

#[test]
fn check_with_every_model_live_exits_0_and_lists_each_with_its_latency() {
    let one = ModelDouble::start(Behaviour::answer("x"));
    let two = ModelDouble::start(Behaviour::answer("x"));
    let workspace = Workspace::new(&format!(
        "{}{}[routes]\ncomplete = [\"one\", \"two\"]\nreview = [\"two\"]\n",
        ollama("one", &one.base_url(), ""),
        ollama("two", &two.base_url(), "")
    ));
    let ran = workspace.run_configured(&["check"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    let out = ran.stdout();
    for (name, double) in [("one", &one), ("two", &two)] {
        let line = lines_with(&out, &double.base_url()).join("\n");
        assert!(line.contains(name), "{out}");
        assert!(
            line.contains("ok, ") && line.contains(" ms"),
            "latency: {out}"
        );
        assert_eq!(
            double.requests(),
            1,
            "one tiny request: {}",
            double.summary()
        );
    }
    assert!(!out.contains("NO LIVE MODEL"), "{out}");
}

#[test]
fn check_exits_1_and_names_the_route_whose_only_model_is_down() {
    let up = ModelDouble::start(Behaviour::answer("x"));
    let down_url = dead_url();
    let workspace = Workspace::new(&format!(
        "{}{}[routes]\ncomplete = [\"up\"]\nreview = [\"down\"]\nexplain = [\"down\", \"up\"]\n",
        ollama("up", &up.base_url(), ""),
        ollama("down", &down_url, "")
    ));
    let ran = workspace.run_configured(&["check"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.both());
    let out = ran.stdout();
    let down = lines_with(&out, &down_url).join("\n");
    assert!(down.contains("down") && down.contains("FAILED"), "{out}");
    assert!(out.contains("Start your model server"), "what to do: {out}");
    let review = lines_with(&out, "review").join("\n");
    assert!(
        review.contains("down") && review.contains("NO LIVE MODEL"),
        "names the dead route: {out}"
    );
    let explain = lines_with(&out, "explain").join("\n");
    assert!(
        explain.contains("ok (up)"),
        "a route with a live model: {out}"
    );
}

#[test]
fn check_says_what_to_do_about_a_refused_key() {
    let refusing = ModelDouble::start(Behaviour::failing(Fault::status(401)));
    let workspace = Workspace::new(&format!(
        "{}[routes]\nreview = [\"keyed\"]\n",
        cloud("keyed", &refusing.base_url(), "")
    ));
    let ran = workspace.run_configured(&["check"]);
    assert_eq!(ran.code(), Some(1), "{}", ran.both());
    let out = ran.stdout();
    assert!(out.contains("HTTP 401"), "{out}");
    assert!(out.contains("Check the API key"), "what to do: {out}");
    assert!(!out.contains("Start your model server"), "{out}");
}

#[test]
fn check_notes_a_model_the_ollama_server_does_not_list() {
    let double = ModelDouble::start(Behaviour::answer("x").models(["llama3:latest"]));
    let workspace = Workspace::new(&format!(
        "{}[routes]\ncomplete = [\"fast\"]\n",
        ollama("fast", &double.base_url(), "")
    ));
    let ran = workspace.run_configured(&["check"]);
    let out = ran.stdout();
    assert!(
        out.contains("ollama pull test-model"),
        "suggests pulling it: {}",
        ran.both()
    );
    assert!(
        double.probes() >= 1,
        "asked /api/tags: {}",
        double.summary()
    );
}

#[test]
fn check_reports_an_unset_key_variable_without_sending_a_request() {
    let keyed = ModelDouble::start(Behaviour::answer("x"));
    let free = ModelDouble::start(Behaviour::answer("x"));
    let workspace = Workspace::new(&format!(
        "{}{}[routes]\ncomplete = [\"free\"]\nreview = [\"keyed\"]\n",
        ollama("free", &free.base_url(), ""),
        cloud(
            "keyed",
            &keyed.base_url(),
            "api_key_env = \"PILOTFISH_IT_NEVER_SET_KEY\"\n"
        )
    ));
    let ran = workspace.run_configured(&["check"]);
    assert_eq!(
        ran.code(),
        Some(1),
        "review has no live model: {}",
        ran.both()
    );
    let out = ran.stdout();
    let keyed_line = lines_with(&out, &keyed.base_url()).join("\n");
    assert!(
        keyed_line.contains("PILOTFISH_IT_NEVER_SET_KEY"),
        "names the variable: {out}"
    );
    assert!(keyed.recorded().is_empty(), "{}", keyed.summary());
    assert_eq!(free.requests(), 1);
}

#[test]
fn check_probes_a_chat_only_model_with_a_one_token_chat_and_reports_it_live() {
    let fast = ModelDouble::start(Behaviour::answer("x"));
    let claude = ModelDouble::start(Behaviour::answer("OK"));
    let workspace = Workspace::new(&format!(
        "{}[models.claude]\nprovider = \"anthropic\"\nurl = \"{}\"\nmodel = \"test-model\"\nlocal = false\napi_key_env = \"PILOTFISH_IT_ANTHROPIC_KEY\"\n\n\
         [routes]\ncomplete = [\"fast\"]\nexplain = [\"claude\"]\nrefactor = [\"claude\"]\nreview = [\"claude\"]\n",
        ollama("fast", &fast.base_url(), ""),
        claude.base_url()
    ));
    let ran = workspace.run(
        &["--config", "pilotfish.toml", "check"],
        &[("PILOTFISH_IT_ANTHROPIC_KEY", "test-key")],
    );
    assert_eq!(
        ran.code(),
        Some(0),
        "routes made only of a chat model are live: {}",
        ran.both()
    );
    let out = ran.stdout();
    let line = lines_with(&out, &claude.base_url()).join("\n");
    assert!(line.contains("claude") && line.contains("ok, "), "{out}");
    assert!(line.contains("chat"), "says it is a chat model: {out}");
    assert!(
        !out.contains("FAILED") && !out.contains("NO LIVE MODEL"),
        "{out}"
    );
    let calls = claude.model_calls();
    assert_eq!(calls.len(), 1, "{}", claude.summary());
    assert_eq!(
        calls[0].body["max_tokens"], 1,
        "one token: {:?}",
        calls[0].body
    );
}

// ---------------------------------------------------------------------------------------------
// pilotfish config (the built-in default)

/// The `[routes]` table of `pilotfish config`'s output.
fn routes_of(ran: &Ran) -> toml::Table {
    let parsed: toml::Table = ran
        .stdout()
        .parse()
        .unwrap_or_else(|e| panic!("config prints TOML ({e}): {}", ran.both()));
    parsed["routes"]
        .as_table()
        .cloned()
        .unwrap_or_else(|| panic!("a [routes] table: {}", ran.both()))
}

fn route(routes: &toml::Table, task: &str) -> Vec<String> {
    routes[task]
        .as_array()
        .unwrap_or_else(|| panic!("routes.{task}"))
        .iter()
        .filter_map(|m| m.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn the_built_in_default_is_ollama_for_every_task() {
    let workspace = Workspace::empty();
    let ran = workspace.run(&["config"], &[]);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    let out = ran.stdout();
    assert!(out.contains("built-in"), "{out}");
    assert!(out.contains("provider = \"ollama\""), "{out}");
    assert!(out.contains("http://127.0.0.1:11434"), "{out}");
    assert!(!out.contains("[models.cloud]"), "no key, no cloud: {out}");
    let routes = routes_of(&ran);
    for task in ["complete", "explain", "refactor", "review"] {
        assert_eq!(route(&routes, task), ["local"], "{task}: {out}");
    }
}

/// Ollama runs a model with a context of 4,096 tokens unless told otherwise (`num_ctx`) and
/// cuts a longer prompt from the front without a word, the instructions first (it never
/// refuses one, so an action cannot be asked again smaller): the built-in default sizes
/// prompts for that context, so a big function's Explain is cut where Pilotfish says.
#[test]
fn the_built_in_default_sizes_prompts_for_the_context_ollama_runs() {
    let workspace = Workspace::empty();
    let mut code = String::from("def process(records):\n    total = 0\n");
    for i in 0..600 {
        code.push_str(&format!("    total += records[{i}] * {i}\n"));
    }
    workspace.write("big.py", &code);
    let ran = workspace.run(&["route", "big.py:2:5", "--task", "explain"], &[]);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    let out = ran.stdout();
    assert!(
        out.contains("window is 4,096: no model holds it whole, so the largest window serves"),
        "{out}"
    );
}

#[test]
fn a_cloud_key_adds_a_cloud_model_for_actions_only_and_its_value_is_never_printed() {
    const VALUE: &str = "sk-ant-api03-NeverPrintThisValue0123456789";
    for var in ["ANTHROPIC_API_KEY", "OPENAI_API_KEY"] {
        let workspace = Workspace::empty();
        let ran = workspace.run(&["config"], &[(var, VALUE)]);
        assert_eq!(ran.code(), Some(0), "{var}: {}", ran.both());
        let out = ran.stdout();
        assert!(out.contains("[models.cloud]"), "{var}: {out}");
        assert!(out.contains(var), "names the variable: {out}");
        assert!(!out.contains(VALUE), "{var}: the key leaked: {out}");
        assert!(
            !ran.stderr().contains(VALUE),
            "{var}: the key leaked: {}",
            ran.stderr()
        );
        let routes = routes_of(&ran);
        assert_eq!(route(&routes, "complete"), ["local"], "{var}: {out}");
        for task in ["explain", "refactor", "review"] {
            assert!(
                route(&routes, task).contains(&"cloud".to_owned()),
                "{var} {task}: {out}"
            );
        }
    }
    // An empty variable is no key.
    let workspace = Workspace::empty();
    let ran = workspace.run(&["config"], &[("ANTHROPIC_API_KEY", "")]);
    assert!(!ran.stdout().contains("[models.cloud]"), "{}", ran.both());
}

#[test]
fn route_for_completion_agrees_with_what_completion_does() {
    // `tiny` holds 300 tokens: its 256 output tokens leave ~44 for the prompt. Completion
    // uses it for a one-line file and skips it for a long one (see `routing`); the dry run
    // must say the same.
    let tiny = ModelDouble::start(Behaviour::answer("unused"));
    let big = ModelDouble::start(Behaviour::answer("unused"));
    let workspace = Workspace::new(&format!(
        "{}{}[routes]\ncomplete = [\"tiny\", \"big\"]\n",
        ollama(
            "tiny",
            &tiny.base_url(),
            "context_window = 300\nmax_output_tokens = 256\n"
        ),
        ollama("big", &big.base_url(), "")
    ));
    workspace.write("small.py", "x = \n");
    let mut long = String::new();
    for i in 0..40 {
        long.push_str(&format!("setting_{i:02} = compute_setting({i})\n"));
    }
    long.push_str("last = \n");
    workspace.write("big.py", &long);
    let json = |spot: &str| -> Value {
        let ran = workspace.run_configured(&["route", spot, "--task", "complete", "--json"]);
        assert_eq!(ran.code(), Some(0), "{}", ran.both());
        serde_json::from_str(&ran.stdout()).expect("JSON")
    };
    assert_eq!(chain_of(&json("small.py:1:5")), ["tiny", "big"]);
    let long_route = json("big.py:41:8");
    assert_eq!(chain_of(&long_route), ["big"]);
    assert_eq!(candidate(&long_route, "tiny")["dropped_by"], "fit");
    assert!(tiny.recorded().is_empty() && big.recorded().is_empty());
}

#[test]
fn route_for_completion_sees_a_secret_above_the_function_when_redaction_is_off() {
    // Completion sends the prefix window, not just the function: with redaction off, a key
    // at the top of the file keeps completion local anywhere below it (see `privacy`); the
    // dry run must say the same.
    let big = ModelDouble::start(Behaviour::answer("unused"));
    let fast = ModelDouble::start(Behaviour::answer("unused"));
    let workspace = Workspace::new(&format!(
        "{}{}[routes]\ncomplete = [\"big\", \"fast\"]\n\n[privacy]\nredact_secrets = false\n",
        cloud("big", &big.base_url(), ""),
        ollama("fast", &fast.base_url(), "")
    ));
    workspace.write(
        "client.py",
        "API_KEY = \"sk-proj-Zq3vT8nW2xK5mR7pL9sJ4hB6dF1gC0aYeU2iO8tQ\"\n\ndef client():\n    return \n",
    );
    let ran =
        workspace.run_configured(&["route", "client.py:4:12", "--task", "complete", "--json"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    let json: Value = serde_json::from_str(&ran.stdout()).expect("JSON");
    assert_eq!(chain_of(&json), ["fast"], "{json:#}");
    assert_eq!(candidate(&json, "big")["dropped_by"], "privacy");
    assert!(big.recorded().is_empty() && fast.recorded().is_empty());
}
