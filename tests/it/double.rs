//! Self-tests of the instruments in `support`: the model double speaks each provider's wire
//! format, counts and faults exactly as documented, and the LSP client frames messages right.
//! Tests of Pilotfish trust these counters, so these tests prove them first.
//!
//! Async tests wait with `wait_for_async`: on a current-thread runtime a blocking wait would
//! stop reqwest's connection task from ever closing the socket it is meant to observe.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::double::{Behaviour, Endpoint, Fault, Health, ModelDouble};
use crate::support::lsp::{
    self, Encoding, LspClient, file_uri, mark, mark_in, mark_utf8, position_at, read_frame,
    write_frame,
};

/// Upper bound for asynchronous effects; the tests wait on conditions, not on this time.
const WAIT: Duration = Duration::from_secs(2);

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

async fn post(double: &ModelDouble, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(double.url(path))
        .json(&body)
        .send()
        .await
        .expect("the double answers")
}

async fn anthropic_post(double: &ModelDouble, body: Value) -> reqwest::Response {
    client()
        .post(double.url("/v1/messages"))
        .header("x-api-key", "test-key")
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .expect("the double answers")
}

fn content_type(response: &reqwest::Response) -> String {
    response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// The JSON of every `data:` line of an SSE body, and whether it ended with `data: [DONE]`.
fn sse_data(body: &str) -> (Vec<Value>, bool) {
    let mut events = Vec::new();
    let mut done = false;
    for line in body.lines() {
        if let Some(data) = line.strip_prefix("data: ") {
            if data == "[DONE]" {
                done = true;
            } else {
                events.push(serde_json::from_str(data).expect("SSE data is JSON"));
            }
        }
    }
    (events, done)
}

/// The `event:` names of an SSE body, in order.
fn sse_event_names(body: &str) -> Vec<String> {
    body.lines()
        .filter_map(|line| line.strip_prefix("event: "))
        .map(str::to_owned)
        .collect()
}

fn ndjson_lines(body: &str) -> Vec<Value> {
    body.lines()
        .map(|line| serde_json::from_str(line).expect("NDJSON line is JSON"))
        .collect()
}

// --- wire formats ------------------------------------------------------------------------------

#[tokio::test]
async fn openai_completions_answer_json_with_usage() {
    let double = ModelDouble::start(Behaviour::answer("fn main() {}"));
    let response = post(
        &double,
        "/v1/completions",
        json!({ "model": "m", "prompt": "fn ", "suffix": "\n", "max_tokens": 16, "stop": ["\n\n"] }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(content_type(&response).starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], "fn main() {}");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let usage = &body["usage"];
    assert_eq!(
        usage["total_tokens"].as_u64().unwrap(),
        usage["prompt_tokens"].as_u64().unwrap() + usage["completion_tokens"].as_u64().unwrap()
    );
    assert_eq!((double.requests(), double.completed()), (1, 1));
    let recorded = double.last_model_call().unwrap();
    assert_eq!(recorded.endpoint, Endpoint::OpenAiCompletions);
    assert_eq!(recorded.prompt_text(), "fn ");
    assert_eq!(recorded.suffix_text().as_deref(), Some("\n"));
    assert_eq!(recorded.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn openai_completions_stream_sse_chunks_then_done() {
    let double = ModelDouble::start(Behaviour::answer("let x = 1;").chunks(3));
    let response = post(
        &double,
        "/v1/completions",
        json!({ "model": "m", "prompt": "", "stream": true }),
    )
    .await;
    assert!(content_type(&response).starts_with("text/event-stream"));
    let (events, done) = sse_data(&response.text().await.unwrap());
    assert!(done, "ends with data: [DONE]");
    let text: String = events
        .iter()
        .map(|e| e["choices"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(text, "let x = 1;");
    assert_eq!(events.len(), 4, "three content chunks and a finish chunk");
    assert_eq!(
        events.last().unwrap()["choices"][0]["finish_reason"],
        "stop"
    );
    assert_eq!(double.completed(), 1);
}

#[tokio::test]
async fn openai_chat_answers_json_and_streams_deltas_with_usage() {
    let double = ModelDouble::start(Behaviour::answer("Explained."));
    let messages =
        json!([{ "role": "system", "content": "s" }, { "role": "user", "content": "explain" }]);
    let body: Value = post(
        &double,
        "/v1/chat/completions",
        json!({ "model": "m", "messages": messages }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["content"], "Explained.");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let response = post(
        &double,
        "/v1/chat/completions",
        json!({ "model": "m", "messages": messages, "stream": true, "stream_options": { "include_usage": true } }),
    )
    .await;
    let (events, done) = sse_data(&response.text().await.unwrap());
    assert!(done);
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"].get(0)?["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "Explained.");
    let last = events.last().unwrap();
    assert_eq!(last["choices"], json!([]), "the usage chunk has no choices");
    assert!(last["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert_eq!(double.last_model_call().unwrap().prompt_text(), "explain");
}

#[tokio::test]
async fn openai_chat_stream_without_include_usage_has_no_usage_chunk() {
    let double = ModelDouble::start(Behaviour::answer("a"));
    let response = post(
        &double,
        "/v1/chat/completions",
        json!({ "model": "m", "messages": [{ "role": "user", "content": "q" }], "stream": true }),
    )
    .await;
    let (events, _) = sse_data(&response.text().await.unwrap());
    assert!(events.iter().all(|e| e.get("usage").is_none()));
}

#[tokio::test]
async fn probes_list_models_and_are_not_model_calls() {
    let double = ModelDouble::start(Behaviour::answer("x").models(["qwen2.5-coder:1.5b"]));
    let openai: Value = client()
        .get(double.url("/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(openai["data"][0]["id"], "qwen2.5-coder:1.5b");
    let ollama: Value = client()
        .get(double.url("/api/tags"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ollama["models"][0]["name"], "qwen2.5-coder:1.5b");
    let health: Value = client()
        .get(double.url("/health"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health, json!({ "status": "ok" }));
    let head = client().head(double.base_url()).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(double.probes(), 4);
    assert_eq!(double.requests(), 0, "probes are not model calls");
    assert_eq!(double.recorded().len(), 4, "but they are recorded");
}

#[tokio::test]
async fn health_down_makes_probes_fail() {
    let double = ModelDouble::start(Behaviour::answer("x").health(Health::Down));
    let health = client().get(double.url("/health")).send().await.unwrap();
    assert_eq!(health.status(), 503);
    let body: Value = health.json().await.unwrap();
    assert_eq!(body["error"]["type"], "unavailable_error");
    let tags = client().get(double.url("/api/tags")).send().await.unwrap();
    assert_eq!(tags.status(), 503);
}

#[tokio::test]
async fn ollama_generate_streams_ndjson_when_stream_is_absent() {
    let double = ModelDouble::start(Behaviour::answer("return 0;").chunks(2));
    let response = post(
        &double,
        "/api/generate",
        json!({ "model": "qwen", "prompt": "int f() {", "suffix": "}", "raw": true }),
    )
    .await;
    assert!(content_type(&response).starts_with("application/x-ndjson"));
    let lines = ndjson_lines(&response.text().await.unwrap());
    assert_eq!(lines.len(), 3, "two content lines and the final one");
    let text: String = lines
        .iter()
        .map(|l| l["response"].as_str().unwrap())
        .collect();
    assert_eq!(text, "return 0;");
    assert!(
        lines[..2]
            .iter()
            .all(|l| l["done"] == false && l["model"] == "qwen")
    );
    let last = lines.last().unwrap();
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "stop");
    assert!(last["prompt_eval_count"].as_u64().unwrap() > 0);
    assert!(last["eval_count"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn ollama_generate_and_chat_answer_one_object_when_not_streaming() {
    let double = ModelDouble::start(Behaviour::answer("done"));
    let generate: Value = post(
        &double,
        "/api/generate",
        json!({ "model": "qwen", "prompt": "p", "stream": false }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(generate["response"], "done");
    assert_eq!(generate["done"], true);
    assert!(generate["eval_count"].is_u64());

    let chat: Value = post(
        &double,
        "/api/chat",
        json!({ "model": "qwen", "messages": [{ "role": "user", "content": "q" }], "stream": false }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(chat["message"]["content"], "done");
    assert_eq!(chat["message"]["role"], "assistant");

    let streamed = post(
        &double,
        "/api/chat",
        json!({ "model": "qwen", "messages": [{ "role": "user", "content": "q" }] }),
    )
    .await;
    let lines = ndjson_lines(&streamed.text().await.unwrap());
    let text: String = lines
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "done");
    assert_eq!(lines.last().unwrap()["done"], true);
}

#[tokio::test]
async fn llamacpp_infill_answers_json_and_streams_sse() {
    let double = ModelDouble::start(Behaviour::answer("x + 1"));
    let request = json!({
        "input_prefix": "def f(x):\n    return ",
        "input_suffix": "\n",
        "input_extra": [{ "filename": "a.py", "text": "import os\n" }],
        "n_predict": 32,
        "t_max_predict_ms": 80
    });
    let body: Value = post(&double, "/infill", request.clone())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(body["content"], "x + 1");
    assert_eq!(body["stop"], true);
    assert!(body["tokens_predicted"].as_u64().unwrap() > 0);
    assert!(body["tokens_evaluated"].as_u64().unwrap() > 0);
    let recorded = double.last_model_call().unwrap();
    assert_eq!(recorded.prompt_text(), "def f(x):\n    return ");
    assert_eq!(recorded.suffix_text().as_deref(), Some("\n"));
    assert!(recorded.all_input_text().contains("import os"));

    let mut streaming = request;
    streaming["stream"] = json!(true);
    let response = post(&double, "/infill", streaming).await;
    assert!(content_type(&response).starts_with("text/event-stream"));
    let (events, done) = sse_data(&response.text().await.unwrap());
    assert!(!done, "llama.cpp's own endpoints send no [DONE]");
    let text: String = events
        .iter()
        .map(|e| e["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "x + 1");
    assert!(
        events[..events.len() - 1]
            .iter()
            .all(|e| e["stop"] == false)
    );
    assert_eq!(events.last().unwrap()["stop"], true);
}

#[tokio::test]
async fn anthropic_messages_answer_json() {
    let double = ModelDouble::start(Behaviour::answer("Looks safe."));
    let body: Value = anthropic_post(
        &double,
        json!({ "model": "claude", "max_tokens": 100, "messages": [{ "role": "user", "content": "review" }] }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["role"], "assistant");
    assert_eq!(
        body["content"],
        json!([{ "type": "text", "text": "Looks safe." }])
    );
    assert_eq!(body["stop_reason"], "end_turn");
    assert!(body["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(body["usage"]["output_tokens"].as_u64().unwrap() > 0);
    assert_eq!(
        double.last_model_call().unwrap().header("x-api-key"),
        Some("test-key")
    );
}

#[tokio::test]
async fn anthropic_messages_stream_the_documented_event_sequence() {
    let double = ModelDouble::start(Behaviour::answer("one two three").chunks(3));
    let response = anthropic_post(
        &double,
        json!({ "model": "claude", "max_tokens": 100, "stream": true, "messages": [{ "role": "user", "content": "q" }] }),
    )
    .await;
    assert!(content_type(&response).starts_with("text/event-stream"));
    let body = response.text().await.unwrap();
    assert_eq!(
        sse_event_names(&body),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    let (events, _) = sse_data(&body);
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "content_block_delta")
        .map(|e| {
            assert_eq!(e["delta"]["type"], "text_delta");
            e["delta"]["text"].as_str().unwrap()
        })
        .collect();
    assert_eq!(text, "one two three");
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    assert!(delta["usage"]["output_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn anthropic_requires_its_headers() {
    let double = ModelDouble::start(Behaviour::answer("x"));
    let body = json!({ "model": "claude", "max_tokens": 1, "messages": [] });
    let no_key = post(&double, "/v1/messages", body.clone()).await;
    assert_eq!(no_key.status(), 401);
    let error: Value = no_key.json().await.unwrap();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "authentication_error");
    let no_version = client()
        .post(double.url("/v1/messages"))
        .header("x-api-key", "k")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(no_version.status(), 400);
}

#[tokio::test]
async fn unknown_paths_and_methods_are_refused() {
    let double = ModelDouble::start(Behaviour::answer("x"));
    let missing = post(&double, "/v2/whatever", json!({})).await;
    assert_eq!(missing.status(), 404);
    let wrong_method = client()
        .get(double.url("/api/generate"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_method.status(), 405);
    let not_json = client()
        .post(double.url("/v1/completions"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
}

// --- behaviour ---------------------------------------------------------------------------------

#[tokio::test]
async fn answers_per_prompt_and_changes_behaviour_while_running() {
    let double = ModelDouble::start(Behaviour::answer_with(|request| {
        format!("<{}>", request.prompt_text())
    }));
    let first: Value = post(
        &double,
        "/v1/completions",
        json!({ "model": "m", "prompt": "a" }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(first["choices"][0]["text"], "<a>");

    double.set_behaviour(Behaviour::answer("fixed"));
    let second: Value = post(
        &double,
        "/v1/completions",
        json!({ "model": "m", "prompt": "b" }),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(second["choices"][0]["text"], "fixed");
    let prompts: Vec<String> = double
        .model_calls()
        .iter()
        .map(|r| r.prompt_text())
        .collect();
    assert_eq!(prompts, ["a", "b"]);
    assert_eq!(double.requests_to("/v1/completions"), 2);
}

#[tokio::test]
async fn keep_alive_connections_serve_several_requests() {
    let double = ModelDouble::start(Behaviour::answer("x"));
    let client = client();
    for _ in 0..3 {
        let response = client
            .post(double.url("/api/generate"))
            .json(&json!({ "model": "m", "prompt": "p" }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap();
    }
    assert_eq!(
        (double.requests(), double.completed(), double.aborted()),
        (3, 3, 0)
    );
    assert_eq!(double.in_flight(), 0);
}

// --- aborts ------------------------------------------------------------------------------------

#[tokio::test]
async fn dropping_a_request_during_the_delay_counts_as_aborted() {
    let double = ModelDouble::start(Behaviour::answer("never seen").delay(Duration::from_secs(30)));
    let request = client()
        .post(double.url("/v1/completions"))
        .json(&json!({ "model": "m", "prompt": "p" }))
        .send();
    // Give up once the double has the request: this drops the reqwest future mid-delay.
    tokio::select! {
        _ = request => panic!("the double answered during its delay"),
        started = double.wait_for_async(|d| d.requests() == 1, WAIT) => assert!(started),
    }
    let dropped = Instant::now();
    assert!(
        double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
        "{}",
        double.summary()
    );
    eprintln!(
        "abort seen {:?} after the client dropped the request",
        dropped.elapsed()
    );
    assert_eq!((double.completed(), double.in_flight()), (0, 0));
}

/// Pilotfish keeps warm pooled connections: giving up on a request sent over one must still
/// close it. Also shows the blocking `wait_for` is fine on a multi-thread runtime.
#[tokio::test(flavor = "multi_thread")]
async fn dropping_a_request_on_a_warm_pooled_connection_counts_as_aborted() {
    let double = ModelDouble::start(Behaviour::answer("warm"));
    let client = client();
    let warm = client
        .post(double.url("/api/generate"))
        .json(&json!({ "model": "m", "prompt": "p", "stream": false }))
        .send()
        .await
        .unwrap();
    assert!(warm.text().await.unwrap().contains("warm"));

    double.set_behaviour(Behaviour::answer("late").delay(Duration::from_secs(30)));
    let request = tokio::spawn({
        let (client, url) = (client.clone(), double.url("/api/generate"));
        async move {
            client
                .post(url)
                .json(&json!({ "model": "m", "prompt": "p" }))
                .send()
                .await
        }
    });
    assert!(double.wait_for(|d| d.requests() == 2, WAIT));
    request.abort();
    assert!(
        double.wait_for(|d| d.aborted() == 1, WAIT),
        "{}",
        double.summary()
    );
    assert_eq!(double.completed(), 1, "only the warm-up completed");
}

#[tokio::test]
async fn dropping_a_stream_midway_counts_as_aborted() {
    let double = ModelDouble::start(
        Behaviour::answer("abcdef")
            .chunks(3)
            .chunk_delay(Duration::from_secs(30)),
    );
    let mut response = post(
        &double,
        "/v1/completions",
        json!({ "model": "m", "prompt": "p", "stream": true }),
    )
    .await;
    let first = response.chunk().await.unwrap().expect("a first chunk");
    assert!(String::from_utf8_lossy(&first).contains("ab"));
    drop(response);
    assert!(
        double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
        "{}",
        double.summary()
    );
    assert_eq!(double.completed(), 0);
}

#[tokio::test]
async fn a_client_timeout_on_a_hang_counts_as_aborted() {
    let double = ModelDouble::start(Behaviour::failing(Fault::Hang));
    let result = client()
        .post(double.url("/api/generate"))
        .timeout(Duration::from_millis(100))
        .json(&json!({ "model": "m", "prompt": "p" }))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert!(
        double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
        "{}",
        double.summary()
    );
    assert_eq!(
        (double.requests(), double.faulted(), double.completed()),
        (1, 1, 0)
    );
}

// --- faults ------------------------------------------------------------------------------------

#[tokio::test]
async fn rate_limits_carry_retry_after_and_the_provider_error_body() {
    let double = ModelDouble::start(Behaviour::failing(Fault::rate_limited(7)));
    let response = anthropic_post(
        &double,
        json!({ "model": "c", "max_tokens": 1, "messages": [{ "role": "user", "content": "q" }] }),
    )
    .await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");

    let openai = post(
        &double,
        "/v1/chat/completions",
        json!({ "model": "m", "messages": [] }),
    )
    .await;
    assert_eq!(openai.status(), 429);
    let body: Value = openai.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
    assert_eq!((double.faulted(), double.completed()), (2, 2));
}

#[tokio::test]
async fn overloaded_is_529_with_overloaded_error() {
    let double = ModelDouble::start(Behaviour::failing(Fault::overloaded()));
    let response = anthropic_post(
        &double,
        json!({ "model": "c", "max_tokens": 1, "messages": [{ "role": "user", "content": "q" }] }),
    )
    .await;
    assert_eq!(response.status().as_u16(), 529);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn status_faults_can_carry_a_literal_body() {
    let double = ModelDouble::start(Behaviour::failing(Fault::status_with_body(500, "boom")));
    let response = post(
        &double,
        "/api/generate",
        json!({ "model": "m", "prompt": "p" }),
    )
    .await;
    assert_eq!(response.status(), 500);
    assert_eq!(response.text().await.unwrap(), "boom");
}

#[tokio::test]
async fn fail_first_then_succeed_and_probes_do_not_consume_the_script() {
    let double = ModelDouble::start(Behaviour::answer("ok").fail_first(2, Fault::status(500)));
    let body = json!({ "model": "m", "prompt": "p", "stream": false });
    client().get(double.url("/api/tags")).send().await.unwrap();
    let statuses = [
        post(&double, "/api/generate", body.clone()).await.status(),
        post(&double, "/api/generate", body.clone()).await.status(),
        post(&double, "/api/generate", body.clone()).await.status(),
    ];
    assert_eq!(statuses.map(|s| s.as_u16()), [500, 500, 200]);
    assert_eq!(
        (double.requests(), double.faulted(), double.probes()),
        (3, 2, 1)
    );

    double.push_faults([Fault::rate_limited(1)]);
    assert_eq!(
        post(&double, "/api/generate", body.clone()).await.status(),
        429
    );
    assert_eq!(post(&double, "/api/generate", body).await.status(), 200);
}

#[tokio::test]
async fn garbage_is_not_json() {
    let double = ModelDouble::start(Behaviour::failing(Fault::Garbage));
    let response = post(
        &double,
        "/v1/completions",
        json!({ "model": "m", "prompt": "p" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    assert!(response.json::<Value>().await.is_err());
    assert_eq!((double.faulted(), double.completed()), (1, 1));
}

#[tokio::test]
async fn reset_mid_stream_gives_partial_data_then_an_error() {
    let double = ModelDouble::start(
        Behaviour::answer("aaabbbccc")
            .chunks(3)
            .fault(Fault::ResetMidStream { after_chunks: 1 }),
    );
    let mut response = post(
        &double,
        "/api/generate",
        json!({ "model": "m", "prompt": "p" }),
    )
    .await;
    assert_eq!(response.status(), 200);
    let mut received = Vec::new();
    let error = loop {
        match response.chunk().await {
            Ok(Some(bytes)) => received.extend_from_slice(&bytes),
            Ok(None) => panic!("the stream ended cleanly after {received:?}"),
            Err(error) => break error,
        }
    };
    let received = String::from_utf8_lossy(&received);
    assert!(
        received.contains("aaa") && !received.contains("bbb"),
        "{received}"
    );
    assert!(
        error.is_body() || error.is_decode() || error.is_request(),
        "{error:?}"
    );
    assert_eq!(
        (double.resets(), double.completed(), double.aborted()),
        (1, 0, 0)
    );
}

#[tokio::test]
async fn reset_without_streaming_cuts_the_body() {
    let double = ModelDouble::start(
        Behaviour::answer("a long enough answer").fault(Fault::ResetMidStream { after_chunks: 1 }),
    );
    let response = post(
        &double,
        "/v1/completions",
        json!({ "model": "m", "prompt": "p" }),
    )
    .await;
    assert!(response.bytes().await.is_err());
    assert_eq!(double.resets(), 1);
}

#[tokio::test]
async fn stream_errors_arrive_in_band_in_each_format() {
    let double = ModelDouble::start(
        Behaviour::answer("aaabbb")
            .chunks(2)
            .fault(Fault::StreamError { after_chunks: 1 }),
    );
    let anthropic = anthropic_post(
        &double,
        json!({ "model": "c", "max_tokens": 9, "stream": true, "messages": [{ "role": "user", "content": "q" }] }),
    )
    .await
    .text()
    .await
    .unwrap();
    let names = sse_event_names(&anthropic);
    assert_eq!(names.last().map(String::as_str), Some("error"));
    assert!(!names.iter().any(|n| n == "message_stop"));
    let (events, _) = sse_data(&anthropic);
    assert_eq!(events.last().unwrap()["error"]["type"], "overloaded_error");

    let ollama = post(
        &double,
        "/api/generate",
        json!({ "model": "m", "prompt": "p" }),
    )
    .await
    .text()
    .await
    .unwrap();
    let lines = ndjson_lines(&ollama);
    assert_eq!(lines[0]["response"], "aaa");
    assert!(lines.last().unwrap()["error"].is_string());

    let not_streaming = anthropic_post(
        &double,
        json!({ "model": "c", "max_tokens": 9, "messages": [{ "role": "user", "content": "q" }] }),
    )
    .await;
    assert_eq!(not_streaming.status().as_u16(), 529);
}

// --- the LSP client ----------------------------------------------------------------------------

#[test]
fn frames_round_trip_and_concatenate() {
    let mut wire = Vec::new();
    write_frame(&mut wire, br#"{"a":1}"#).unwrap();
    write_frame(&mut wire, "{\"é\":\"😀\"}".as_bytes()).unwrap();
    assert!(wire.starts_with(b"Content-Length: 7\r\n\r\n{\"a\":1}"));
    let mut input = std::io::Cursor::new(wire);
    assert_eq!(read_frame(&mut input).unwrap().unwrap(), br#"{"a":1}"#);
    assert_eq!(
        read_frame(&mut input).unwrap().unwrap(),
        "{\"é\":\"😀\"}".as_bytes()
    );
    assert!(read_frame(&mut input).unwrap().is_none(), "clean EOF");
}

#[test]
fn frames_accept_content_type_and_reject_stray_output() {
    let framed =
        b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\ncontent-length: 2\r\n\r\n{}";
    let mut input = std::io::Cursor::new(framed.to_vec());
    assert_eq!(read_frame(&mut input).unwrap().unwrap(), b"{}");

    let stray = b"hello from println!\r\n\r\n{}".to_vec();
    let error = read_frame(&mut std::io::Cursor::new(stray)).unwrap_err();
    assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);

    let truncated = b"Content-Length: 10\r\n\r\n{}".to_vec();
    assert!(read_frame(&mut std::io::Cursor::new(truncated)).is_err());
}

#[test]
fn mark_finds_the_cursor_in_each_encoding() {
    let (text, line, character) = mark("fn main() {\n    let s = \"😀é\"$0;\n}");
    assert_eq!(text, "fn main() {\n    let s = \"😀é\";\n}");
    assert_eq!((line, character), (1, 17), "😀 is two UTF-16 units");
    assert_eq!(
        mark_utf8("a\n    \"😀é\"$0").2,
        12,
        "😀 is four bytes, é two"
    );
    assert_eq!(mark_in("😀$0", Encoding::Utf32).2, 1);
    assert_eq!(mark("a\r\nb$0\rc").1, 1, "CRLF is one line break");
    assert_eq!(mark("a\rb\r\nc$0").1, 2, "a lone CR is a line break");
    assert_eq!(mark("$0").1, 0);
    assert_eq!(position_at("ab\ncd", 5, Encoding::Utf16), (1, 2));
}

#[test]
fn file_uris_are_percent_encoded() {
    assert_eq!(
        file_uri(std::path::Path::new("/tmp/a b/ü.rs")),
        "file:///tmp/a%20b/%C3%BC.rs"
    );
    assert_eq!(lsp::range((0, 1), (2, 3))["end"]["character"], 3);
}

/// `cat` echoes what the client sends: a request comes back as a server→client request, is
/// answered automatically, and that answer comes back as the response to the original request.
#[test]
fn the_client_round_trips_through_an_echo_process() {
    let dir = tempfile::tempdir().unwrap();
    let cat = std::path::Path::new("/bin/cat");
    if !cat.exists() {
        eprintln!("skipped: no /bin/cat");
        return;
    }
    let client = LspClient::spawn_program(cat, &[], &[], dir.path());

    let shown = client.request_and_wait("window/showDocument", json!({ "uri": "file:///x" }));
    assert_eq!(shown, Ok(json!({ "success": true })));
    let unknown = client.request_and_wait("pilotfish/unknown", json!({}));
    assert_eq!(unknown.unwrap_err().code, -32601);
    assert_eq!(client.server_requests_of("window/showDocument").len(), 1);

    client.notify(
        "window/logMessage",
        json!({ "type": 3, "message": "hello" }),
    );
    let logged = client.wait_for_notification("window/logMessage", |p| p["message"] == "hello");
    assert_eq!(logged["type"], 3);
    let mark = client.notification_count();
    client.notify(
        "window/logMessage",
        json!({ "type": 3, "message": "again" }),
    );
    client.wait_for_notification_after(mark, "window/logMessage", |_| true);
    assert_eq!(client.notifications_of("window/logMessage").len(), 2);

    client.send_raw_frame(b"{ not json");
    client.send_raw_frame(b"\xff\xfe");
    assert!(lsp::DEFAULT_TIMEOUT > Duration::ZERO);
    let id = client.request("window/showDocument", json!({}));
    assert!(client.response(id).is_ok());
    assert_eq!(
        client.protocol_errors().len(),
        2,
        "{:?}",
        client.protocol_errors()
    );

    client.close_stdin();
    let status = client
        .wait_exit(Duration::from_secs(5))
        .expect("cat exits at EOF");
    assert!(status.success());
}
