//! One model on several machines (issue 11 item 2): `url` lists endpoints; each has its own
//! health, breaker and latency average; a request goes to the healthy endpoint expected to
//! answer fastest and fails over to the model's next endpoint before the chain's next model;
//! `pilotfish route`, `pilotfish check` and the log name the endpoint. And the averages at
//! work across models (issue 12 item 4): completion prefers, within its chain, a model
//! expected to answer inside the budget. Every server here runs the completion settings a
//! user gets (the 100 ms budget); the doubles' delays are far from it on either side.

use std::time::Duration;

use serde_json::Value;

use crate::harness::dead_url;
use crate::support::double::{Behaviour, ModelDouble};
use crate::support::lsp::mark;
use crate::support::tls::TlsFront;
use crate::support::wait_until;
use crate::workspace::{Editor, Workspace, complete_route, request_calls};

/// Upper bound for asynchronous effects; tests wait on conditions, not on this time.
const WAIT: Duration = Duration::from_secs(5);
/// A model server far slower than the 100 ms budget.
const SLOW: Duration = Duration::from_millis(400);

/// `[models.NAME]`: Ollama with native FIM at each of `urls`.
fn ollama_at(name: &str, urls: &[&str]) -> String {
    let urls: Vec<String> = urls.iter().map(|u| format!("\"{u}\"")).collect();
    format!(
        "[models.{name}]\nprovider = \"ollama\"\nurl = [{}]\nmodel = \"test-model\"\nfim = \"native\"\n\n",
        urls.join(", ")
    )
}

/// A server on `config` with the default completion settings.
fn serve(config: &str) -> (Workspace, Editor) {
    let workspace = Workspace::new(config);
    let editor = workspace.serve();
    (workspace, editor)
}

/// An open document and the cursor in it.
struct Doc {
    uri: String,
    line: u32,
    col: u32,
}

/// Opens a distinct Python file for request `n` (so the cache never answers a new one).
fn open(editor: &Editor, n: usize) -> Doc {
    let (text, line, col) = mark(&format!("value_{n} = $0\n"));
    let uri = editor.lsp.uri(&format!("f{n}.py"));
    editor.lsp.open(&uri, "python", &text);
    Doc { uri, line, col }
}

/// One inline completion at the document's cursor.
fn ask(editor: &Editor, doc: &Doc) -> Option<String> {
    editor.suggest_at(&doc.uri, doc.line, doc.col)
}

/// Waits until the server logs an answer from `endpoint`: a call that outlived the budget
/// has finished, and its latency is recorded (the line follows the recording).
fn until_answered_by(editor: &Editor, endpoint: &str) -> bool {
    wait_until(WAIT, || {
        editor
            .lsp
            .stderr()
            .lines()
            .any(|l| l.contains("completion answered") && l.contains(endpoint))
    })
}

/// The dead endpoint is listed first, and the chain has another model: the model's live
/// endpoint answers, before the next model is considered.
#[test]
fn a_model_with_a_dead_endpoint_is_served_by_its_live_one() {
    let live = ModelDouble::start(Behaviour::answer("from_live"));
    let next = ModelDouble::start(Behaviour::answer("from_next"));
    let dead = dead_url();
    let (_workspace, editor) = serve(&format!(
        "{}{}{}",
        ollama_at("m", &[&dead, &live.base_url()]),
        ollama_at("next", &[&next.base_url()]),
        complete_route(&["m", "next"])
    ));
    for n in 0..4 {
        let doc = open(&editor, n);
        assert_eq!(
            ask(&editor, &doc).as_deref(),
            Some("from_live"),
            "request {n}: {}",
            live.summary()
        );
    }
    assert_eq!(request_calls(&live, 4), 4, "{}", live.summary());
    assert_eq!(next.requests(), 0, "{}", next.summary());
    assert!(
        editor.messages().is_empty(),
        "the model answered: no warning"
    );
    let log = editor.lsp.stderr();
    let answered = log
        .lines()
        .filter(|l| l.contains("completion answered"))
        .collect::<Vec<_>>();
    assert!(
        !answered.is_empty() && answered.iter().all(|l| l.contains(&live.base_url())),
        "the log names the endpoint that answered:\n{log}"
    );
    editor.lsp.shutdown_and_exit();
}

/// A double slower than the budget and a fast one, wired by `config(slow_url, fast_url)`
/// so that, with nothing measured, the slow one is tried first. That first request gets the
/// slow answer, late, and the call is measured; after it, `requests` requests on new files
/// (and the prefetches after them) are all answered by the fast double, and the slow one
/// gets no other call.
fn measured_slow_then_avoided(config: impl Fn(&str, &str) -> String, requests: usize) {
    let slow = ModelDouble::start(Behaviour::answer("from_slow").delay(SLOW));
    let fast = ModelDouble::start(Behaviour::answer("from_fast"));
    let (_workspace, editor) = serve(&config(&slow.base_url(), &fast.base_url()));
    let first = open(&editor, 0);
    assert_eq!(
        ask(&editor, &first).as_deref(),
        Some("from_slow"),
        "late, but shown"
    );
    assert!(
        until_answered_by(&editor, &slow.base_url()),
        "{}",
        slow.summary()
    );
    for n in 1..=requests {
        let doc = open(&editor, n);
        assert_eq!(
            ask(&editor, &doc).as_deref(),
            Some("from_fast"),
            "request {n}: slow {}; fast {}",
            slow.summary(),
            fast.summary()
        );
    }
    assert_eq!(slow.requests(), 1, "{}", slow.summary());
    assert_eq!(
        request_calls(&fast, requests + 1),
        requests,
        "{}",
        fast.summary()
    );
    editor.lsp.shutdown_and_exit();
}

/// Two endpoints of one model: the other endpoint, not measured yet, is tried next; then it
/// keeps serving, being the faster on average.
#[test]
fn of_two_live_endpoints_the_faster_on_average_serves() {
    measured_slow_then_avoided(
        |slow, fast| {
            format!(
                "{}{}",
                ollama_at("m", &[slow, fast]),
                complete_route(&["m"])
            )
        },
        5,
    );
}

/// Two models: once the first is expected over the budget, the second (not measured yet,
/// so it may make it) is tried first, and answers in time.
#[test]
fn completion_prefers_a_model_expected_inside_the_budget() {
    measured_slow_then_avoided(
        |slow, fast| {
            format!(
                "{}{}{}",
                ollama_at("big", &[slow]),
                ollama_at("small", &[fast]),
                complete_route(&["big", "small"])
            )
        },
        3,
    );
}

/// An action's call is timed apart from completion's: a model that explains slowly (an
/// answer of hundreds of tokens) and completes fast is still a fast completion model after
/// an Explain, and keeps its place at the head of the chain.
#[test]
fn a_slow_explain_does_not_make_a_fast_completion_model_look_slow() {
    let big = ModelDouble::start(Behaviour::answer("from_big"));
    let small = ModelDouble::start(Behaviour::answer("from_small"));
    let (_workspace, editor) = serve(&format!(
        "{}{}{}explain = [\"big\"]\n",
        ollama_at("big", &[&big.base_url()]),
        ollama_at("small", &[&small.base_url()]),
        complete_route(&["big", "small"])
    ));
    let first = open(&editor, 0);
    assert_eq!(ask(&editor, &first).as_deref(), Some("from_big"));
    // The prefetch that follows the shown suggestion is a completion call too: let it end.
    assert!(wait_until(WAIT, || {
        editor.lsp.stderr().contains("purpose=Prefetch")
    }));

    big.set_behaviour(Behaviour::answer("`add` returns the sum.").delay(Duration::from_secs(1)));
    let (text, line, col) = mark("def add(a, b):\n    return a + b$0\n");
    let uri = editor.lsp.uri("add.py");
    editor.lsp.open(&uri, "python", &text);
    editor.explain_at(&uri, line, col);
    big.set_behaviour(Behaviour::answer("from_big"));

    let second = open(&editor, 1);
    assert_eq!(
        ask(&editor, &second).as_deref(),
        Some("from_big"),
        "the Explain's second says nothing of its completions: big {}; small {}",
        big.summary(),
        small.summary()
    );
    assert_eq!(request_calls(&small, 2), 0, "{}", small.summary());
    editor.lsp.shutdown_and_exit();
}

#[test]
fn with_one_model_completion_uses_it_whatever_its_speed() {
    let big = ModelDouble::start(Behaviour::answer("from_big").delay(SLOW));
    let (_workspace, editor) = serve(&format!(
        "{}{}",
        ollama_at("big", &[&big.base_url()]),
        complete_route(&["big"])
    ));
    let first = open(&editor, 0);
    assert_eq!(
        ask(&editor, &first).as_deref(),
        Some("from_big"),
        "its late answer"
    );
    assert!(
        until_answered_by(&editor, &big.base_url()),
        "{}",
        big.summary()
    );
    let second = open(&editor, 1);
    assert_eq!(
        ask(&editor, &second).as_deref(),
        Some("from_big"),
        "still the only model, measured over the budget: used, late"
    );
    assert_eq!(request_calls(&big, 2), 2, "{}", big.summary());
    editor.lsp.shutdown_and_exit();
}

/// A proxy in the environment (a company network's) that cannot be reached stands between
/// the user and no model server on this machine: the local model is asked directly. (Its
/// use for other hosts: `fim_wire::mistrals_codestral_fills_in_the_middle_at_its_own_path`.)
#[test]
fn a_local_model_server_is_reached_without_the_environments_proxy() {
    let local = ModelDouble::start(Behaviour::answer("from_local"));
    let dead_proxy = dead_url();
    let workspace = Workspace::new(&format!(
        "{}{}",
        ollama_at("m", &[&local.base_url()]),
        complete_route(&["m"])
    ));
    let editor = workspace.serve_with_env(&[
        ("HTTP_PROXY", dead_proxy.as_str()),
        ("https_proxy", dead_proxy.as_str()),
        ("ALL_PROXY", dead_proxy.as_str()),
    ]);
    let doc = open(&editor, 0);
    assert_eq!(
        ask(&editor, &doc).as_deref(),
        Some("from_local"),
        "{}",
        local.summary()
    );
    assert!(editor.messages().is_empty(), "{:?}", editor.messages());
    editor.lsp.shutdown_and_exit();
}

/// A model server whose certificate a company's own CA signed (its vLLM, or what its
/// TLS-inspecting proxy shows): trusted once the CA is in the system's store — here the
/// file `SSL_CERT_FILE` names, as on any Linux; before that, `pilotfish check` says the
/// certificate's issuer is not trusted and how to trust it.
#[test]
fn a_model_server_certified_by_the_users_own_ca_is_trusted_from_the_system_store() {
    let double = ModelDouble::start(Behaviour::answer("over_tls"));
    let front = TlsFront::start(double.addr());
    let workspace = Workspace::new(&format!(
        "{}{}",
        ollama_at("m", &[&front.base_url()]),
        complete_route(&["m"])
    ));
    workspace.write("company-ca.pem", front.ca_pem());
    let ca = workspace.path().join("company-ca.pem");

    let ran = workspace.run_configured(&["check"]);
    assert_ne!(ran.code(), Some(0), "{}", ran.both());
    assert!(
        ran.both().contains("cannot trust")
            && ran.both().contains("SSL_CERT_FILE")
            && !ran.both().contains("Start your model server"),
        "says why and what to do: {}",
        ran.both()
    );
    assert!(double.recorded().is_empty(), "{}", double.summary());

    let editor = workspace.serve_with_env(&[("SSL_CERT_FILE", ca.to_str().unwrap())]);
    let doc = open(&editor, 0);
    assert_eq!(
        ask(&editor, &doc).as_deref(),
        Some("over_tls"),
        "{}",
        double.summary()
    );
    assert!(editor.messages().is_empty(), "{:?}", editor.messages());
    editor.lsp.shutdown_and_exit();
}

/// A certificate store of which nothing can be read (here a certificate that is not one)
/// costs the system's roots, with a warning, not the server.
#[test]
fn an_unreadable_certificate_store_is_warned_of_and_served_without() {
    let double = ModelDouble::start(Behaviour::answer("served"));
    let workspace = Workspace::new(&format!(
        "{}{}",
        ollama_at("m", &[&double.base_url()]),
        complete_route(&["m"])
    ));
    workspace.write(
        "broken.pem",
        "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
    );
    let broken = workspace.path().join("broken.pem");
    let editor = workspace.serve_with_env(&[("SSL_CERT_FILE", broken.to_str().unwrap())]);
    let doc = open(&editor, 0);
    assert_eq!(ask(&editor, &doc).as_deref(), Some("served"));
    assert!(
        editor
            .lsp
            .stderr()
            .contains("not trusting the system's certificate store"),
        "{}",
        editor.lsp.stderr()
    );
    editor.lsp.shutdown_and_exit();
}

/// `pilotfish route` and `pilotfish check` on a model with a live and a dead endpoint.
#[test]
fn route_and_check_name_each_endpoint() {
    let live = ModelDouble::start(Behaviour::answer("x"));
    let dead = dead_url();
    let workspace = Workspace::new(&format!(
        "{}{}",
        ollama_at("m", &[&dead, &live.base_url()]),
        complete_route(&["m"])
    ));
    workspace.write("add.py", "def add(a, b):\n    return \n");

    let ran = workspace.run_configured(&["route", "add.py:2:12", "--task", "complete"]);
    assert_eq!(ran.code(), Some(0), "{}", ran.both());
    let out = ran.stdout();
    for url in [dead.as_str(), &live.base_url()] {
        let line = out.lines().find(|l| l.contains(url)).unwrap_or_default();
        assert!(
            line.contains("healthy") && line.contains("no call measured yet"),
            "each endpoint with its state and averages: {out}"
        );
    }
    let ran = workspace.run_configured(&["route", "add.py:2:12", "--task", "complete", "--json"]);
    let json: Value = serde_json::from_str(&ran.stdout()).expect("route --json prints JSON");
    let endpoints = &json["decision"]["candidates"][0]["endpoints"];
    assert_eq!(endpoints[0]["url"], dead.as_str(), "{json:#}");
    assert_eq!(endpoints[1]["url"], live.base_url().as_str(), "{json:#}");
    assert_eq!(endpoints[0]["status"], "healthy", "{json:#}");
    assert!(live.recorded().is_empty(), "route calls no model");

    let ran = workspace.run_configured(&["check"]);
    assert_eq!(
        ran.code(),
        Some(0),
        "a live endpoint serves: {}",
        ran.both()
    );
    let out = ran.stdout();
    let line_of = |url: &str| out.lines().find(|l| l.contains(url)).unwrap_or_default();
    assert!(line_of(&live.base_url()).contains("ok, "), "{out}");
    assert!(line_of(&dead).contains("FAILED"), "{out}");
    let complete = out
        .lines()
        .find(|l| l.contains("complete"))
        .unwrap_or_default();
    assert!(
        complete.contains(&format!("ok (m at {})", live.base_url())),
        "the route names the live endpoint: {out}"
    );
}
