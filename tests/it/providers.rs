//! Chat providers against the model double: `Providers::chat` is called directly (no binary),
//! once per wire format, and each test checks what went over the wire (body, headers), what
//! came back (pieces in order, usage) and how every fault the double can play surfaces as a
//! `ProviderError` — and that a dropped call really drops its connection.
//!
//! Keys come from environment variables with a name unique to each test, so tests running in
//! parallel never race on one variable.

use std::time::{Duration, Instant};

use pilotfish::config::{ModelConfig, Provider};
use pilotfish::providers::{
    ChatCall, ChatMessage, Cut, ModelAnswer, ProviderError, Providers, Thinking,
};
use serde_json::json;

use crate::support::double::{Behaviour, Fault, ModelDouble};

/// Upper bound for asynchronous effects; tests wait on conditions, not on this time.
const WAIT: Duration = Duration::from_secs(5);

/// Sets `name` (unique to the calling test) to `value` in this process.
fn set_key(name: &str, value: &str) {
    // SAFETY: each test uses its own variable name and no test removes or rewrites another's,
    // so no thread reads this variable while it is being written except the test itself.
    unsafe { std::env::set_var(name, value) };
}

fn model(double: &ModelDouble, provider: Provider, key_env: Option<&str>) -> ModelConfig {
    let url = match provider {
        Provider::Openai => double.url("/v1"),
        _ => double.base_url(),
    };
    ModelConfig {
        provider,
        url: url.into(),
        model: "test-model".into(),
        fim: None,
        local: Some(true),
        context_window: 8192,
        max_output_tokens: 256,
        api_key_env: key_env.map(String::from),
        cost_input_per_mtok: 0.0,
        cost_output_per_mtok: 0.0,
        timeout_ms: 5_000,
    }
}

/// One chat call; returns the pieces `on_text` saw, in order, and the result.
async fn chat(model: &ModelConfig) -> (Vec<String>, Result<ModelAnswer, ProviderError>) {
    chat_asking(model, 300).await
}

/// [`chat`] asking for at most `max_tokens`.
async fn chat_asking(
    model: &ModelConfig,
    max_tokens: u32,
) -> (Vec<String>, Result<ModelAnswer, ProviderError>) {
    let messages = [
        ChatMessage::user("Explain this code."),
        ChatMessage::assistant("Which part?"),
        ChatMessage::user("fn main() {}"),
    ];
    let call = ChatCall {
        system: "You are a careful reviewer.",
        messages: &messages,
        max_tokens,
        temperature: 0.2,
        thinking: Thinking::ModelDefault,
        begin_within: None,
    };
    let mut pieces = Vec::new();
    let result = Providers::new()
        .chat(model, call, &mut |piece| pieces.push(piece.to_string()))
        .await;
    (pieces, result)
}

/// The three wire formats, with the key variable each needs (Anthropic always needs one).
fn each_provider(key_env: &str) -> [(Provider, Option<&str>); 3] {
    [
        (Provider::Openai, None),
        (Provider::Ollama, None),
        (Provider::Anthropic, Some(key_env)),
    ]
}

/// A chat of `messages` with no system prompt: up to 300 tokens, temperature 0.2.
fn a_chat(messages: &[ChatMessage]) -> ChatCall<'_> {
    ChatCall {
        system: "",
        messages,
        max_tokens: 300,
        temperature: 0.2,
        thinking: Thinking::ModelDefault,
        begin_within: None,
    }
}

const ANSWER: &str = "Prints nothing: main is empty. 😀 ✓";

#[tokio::test]
async fn openai_streams_pieces_in_order_with_usage_and_the_bearer_key() {
    set_key("PILOTFISH_IT_OPENAI_STREAM_KEY", "sk-openai-stream-secret");
    let double = ModelDouble::start(Behaviour::answer(ANSWER).chunks(5));
    let model = model(
        &double,
        Provider::Openai,
        Some("PILOTFISH_IT_OPENAI_STREAM_KEY"),
    );
    let (pieces, result) = chat(&model).await;
    let answer = result.expect("a streamed answer");
    assert_eq!(pieces.len(), 5, "{pieces:?}");
    assert_eq!(pieces.concat(), ANSWER);
    assert_eq!(answer.text, ANSWER);
    assert!(answer.tokens_in.is_some_and(|n| n > 0), "{answer:?}");
    assert!(answer.tokens_out.is_some_and(|n| n > 0), "{answer:?}");
    assert!(answer.first_token.is_some());

    let request = double.last_model_call().expect("one model call");
    assert_eq!(request.path, "/v1/chat/completions");
    assert_eq!(
        request.header("authorization"),
        Some("Bearer sk-openai-stream-secret")
    );
    let body = &request.body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["stream"], true);
    assert_eq!(body["stream_options"], json!({ "include_usage": true }));
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(
        body["messages"],
        json!([
            { "role": "system", "content": "You are a careful reviewer." },
            { "role": "user", "content": "Explain this code." },
            { "role": "assistant", "content": "Which part?" },
            { "role": "user", "content": "fn main() {}" },
        ])
    );
    assert!((body["temperature"].as_f64().unwrap() - 0.2).abs() < 1e-6);
    assert_eq!((double.requests(), double.completed()), (1, 1));
}

#[tokio::test]
async fn openai_without_a_key_sends_no_authorization() {
    let double = ModelDouble::start(Behaviour::answer("ok"));
    let (_, result) = chat(&model(&double, Provider::Openai, None)).await;
    assert_eq!(result.expect("an answer").text, "ok");
    let request = double.last_model_call().expect("one model call");
    assert_eq!(request.header("authorization"), None);
}

#[tokio::test]
async fn llamacpp_chat_goes_to_its_openai_endpoint() {
    let double = ModelDouble::start(Behaviour::answer("from llama-server").chunks(2));
    let (pieces, result) = chat(&model(&double, Provider::Llamacpp, None)).await;
    assert_eq!(result.expect("an answer").text, "from llama-server");
    assert_eq!(pieces.len(), 2);
    assert_eq!(double.requests_to("/v1/chat/completions"), 1);
}

#[tokio::test]
async fn ollama_streams_ndjson_pieces_and_counts() {
    let double = ModelDouble::start(Behaviour::answer(ANSWER).chunks(4));
    let (pieces, result) = chat(&model(&double, Provider::Ollama, None)).await;
    let answer = result.expect("a streamed answer");
    assert_eq!(pieces.len(), 4, "{pieces:?}");
    assert_eq!(pieces.concat(), ANSWER);
    assert_eq!(answer.text, ANSWER);
    assert!(answer.tokens_in.is_some_and(|n| n > 0), "{answer:?}");
    assert!(answer.tokens_out.is_some_and(|n| n > 0), "{answer:?}");

    let request = double.last_model_call().expect("one model call");
    assert_eq!(request.path, "/api/chat");
    let body = &request.body;
    assert_eq!(body["stream"], true);
    assert_eq!(body["options"]["num_predict"], 300);
    assert_eq!(body["messages"][0]["role"], "system");
    assert_eq!(
        body["messages"][3],
        json!({ "role": "user", "content": "fn main() {}" })
    );
    assert_eq!((double.requests(), double.completed()), (1, 1));
}

#[tokio::test]
async fn anthropic_streams_with_its_headers_and_usage() {
    set_key("PILOTFISH_IT_ANTHROPIC_STREAM_KEY", "sk-ant-stream-secret");
    let double = ModelDouble::start(Behaviour::answer(ANSWER).chunks(3));
    let model = model(
        &double,
        Provider::Anthropic,
        Some("PILOTFISH_IT_ANTHROPIC_STREAM_KEY"),
    );
    let (pieces, result) = chat(&model).await;
    let answer = result.expect("a streamed answer");
    assert_eq!(pieces.len(), 3, "{pieces:?}");
    assert_eq!(pieces.concat(), ANSWER);
    assert_eq!(answer.text, ANSWER);
    // From `message_start` and `message_delta`.
    assert!(answer.tokens_in.is_some_and(|n| n > 1), "{answer:?}");
    assert!(answer.tokens_out.is_some_and(|n| n > 1), "{answer:?}");
    assert!(answer.first_token.is_some());

    let request = double.last_model_call().expect("one model call");
    assert_eq!(request.path, "/v1/messages");
    assert_eq!(request.header("x-api-key"), Some("sk-ant-stream-secret"));
    assert_eq!(request.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("authorization"), None);
    let body = &request.body;
    assert_eq!(body["model"], "test-model");
    assert_eq!(body["max_tokens"], 300);
    assert_eq!(body["system"], "You are a careful reviewer.");
    assert_eq!(body["stream"], true);
    assert_eq!(
        body["messages"],
        json!([
            { "role": "user", "content": "Explain this code." },
            { "role": "assistant", "content": "Which part?" },
            { "role": "user", "content": "fn main() {}" },
        ])
    );
    assert_eq!((double.requests(), double.completed()), (1, 1));
}

#[tokio::test]
async fn anthropic_without_its_key_sends_nothing_and_names_the_variable() {
    let double = ModelDouble::start(Behaviour::answer("unused"));
    let model = model(
        &double,
        Provider::Anthropic,
        Some("PILOTFISH_IT_ANTHROPIC_NEVER_SET_KEY"),
    );
    let (pieces, result) = chat(&model).await;
    let error = result.expect_err("no key, no call");
    assert!(
        matches!(error, ProviderError::MissingKey { .. }),
        "{error:?}"
    );
    assert!(
        error
            .to_string()
            .contains("PILOTFISH_IT_ANTHROPIC_NEVER_SET_KEY"),
        "{error}"
    );
    assert!(pieces.is_empty());
    assert!(double.recorded().is_empty(), "{}", double.summary());
    let warm = Providers::new().warm(&model).await;
    assert!(
        matches!(warm, Err(ProviderError::MissingKey { .. })),
        "{warm:?}"
    );
    assert!(double.recorded().is_empty(), "{}", double.summary());
}

#[tokio::test]
async fn anthropic_warm_proves_the_key_without_a_model_call() {
    set_key("PILOTFISH_IT_ANTHROPIC_WARM_KEY", "sk-ant-warm-secret");
    let double = ModelDouble::start(Behaviour::answer("unused"));
    let model = model(
        &double,
        Provider::Anthropic,
        Some("PILOTFISH_IT_ANTHROPIC_WARM_KEY"),
    );
    Providers::new().warm(&model).await.expect("warm");
    let probe = double.recorded().pop().expect("one probe");
    assert_eq!(probe.path, "/v1/models");
    assert_eq!(probe.header("x-api-key"), Some("sk-ant-warm-secret"));
    assert_eq!(probe.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(double.requests(), 0);
}

#[tokio::test]
async fn http_500_is_a_status_error_with_the_providers_message() {
    set_key("PILOTFISH_IT_500_KEY", "k");
    for (provider, key) in each_provider("PILOTFISH_IT_500_KEY") {
        let double = ModelDouble::start(Behaviour::failing(Fault::status(500)));
        let (pieces, result) = chat(&model(&double, provider, key)).await;
        match result {
            Err(ProviderError::Status {
                status: 500,
                message,
                ..
            }) => assert_eq!(message, "internal server error", "{provider:?}"),
            other => panic!("{provider:?}: {other:?}"),
        }
        assert!(pieces.is_empty());
    }
}

#[tokio::test]
async fn rate_limits_surface_retry_after() {
    set_key("PILOTFISH_IT_429_KEY", "k");
    for (provider, key) in each_provider("PILOTFISH_IT_429_KEY") {
        let double = ModelDouble::start(Behaviour::failing(Fault::rate_limited(7)));
        let (_, result) = chat(&model(&double, provider, key)).await;
        match result {
            Err(ProviderError::Status {
                status: 429,
                retry_after,
                message,
                ..
            }) => {
                assert_eq!(retry_after, Some(Duration::from_secs(7)), "{provider:?}");
                assert_eq!(message, "rate limit exceeded", "{provider:?}");
            }
            other => panic!("{provider:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn anthropic_overloaded_is_529_over_http_and_in_the_stream() {
    set_key("PILOTFISH_IT_529_KEY", "k");
    let double = ModelDouble::start(Behaviour::failing(Fault::overloaded()));
    let model = model(&double, Provider::Anthropic, Some("PILOTFISH_IT_529_KEY"));
    let (_, result) = chat(&model).await;
    match result {
        Err(ProviderError::Status {
            status: 529,
            message,
            ..
        }) => assert_eq!(message, "Overloaded"),
        other => panic!("{other:?}"),
    }

    double.set_behaviour(
        Behaviour::answer("abcdefghij")
            .chunks(5)
            .fault(Fault::StreamError { after_chunks: 2 }),
    );
    let (pieces, result) = chat(&model).await;
    assert_eq!(pieces, ["ab", "cd"]);
    match result {
        Err(ProviderError::Status {
            status: 529,
            message,
            ..
        }) => assert!(message.starts_with("Overloaded"), "{message}"),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn in_stream_errors_from_openai_and_ollama_are_stream_errors() {
    for provider in [Provider::Openai, Provider::Ollama] {
        let double = ModelDouble::start(
            Behaviour::answer("abcdefghij")
                .chunks(5)
                .fault(Fault::StreamError { after_chunks: 3 }),
        );
        let (pieces, result) = chat(&model(&double, provider, None)).await;
        assert_eq!(pieces, ["ab", "cd", "ef"], "{provider:?}");
        match result {
            Err(ProviderError::Stream {
                partial_chars,
                detail,
                ..
            }) => {
                assert_eq!(partial_chars, 6, "{provider:?}");
                assert!(detail.starts_with("model error: "), "{detail}");
            }
            other => panic!("{provider:?}: {other:?}"),
        }
    }
}

#[tokio::test]
async fn garbage_is_malformed() {
    set_key("PILOTFISH_IT_GARBAGE_KEY", "k");
    for (provider, key) in each_provider("PILOTFISH_IT_GARBAGE_KEY") {
        let double = ModelDouble::start(Behaviour::failing(Fault::Garbage));
        let (pieces, result) = chat(&model(&double, provider, key)).await;
        match result {
            Err(ProviderError::Malformed { detail, .. }) => {
                assert!(detail.contains("502 Bad Gateway"), "{provider:?}: {detail}")
            }
            other => panic!("{provider:?}: {other:?}"),
        }
        assert!(pieces.is_empty());
    }
}

#[tokio::test]
async fn reset_mid_stream_is_a_stream_error_with_the_partial_length() {
    set_key("PILOTFISH_IT_RESET_KEY", "k");
    for (provider, key) in each_provider("PILOTFISH_IT_RESET_KEY") {
        let double = ModelDouble::start(
            Behaviour::answer("abcdefghij")
                .chunks(5)
                .fault(Fault::ResetMidStream { after_chunks: 2 }),
        );
        let (pieces, result) = chat(&model(&double, provider, key)).await;
        assert_eq!(pieces, ["ab", "cd"], "{provider:?}");
        match result {
            Err(ProviderError::Stream { partial_chars, .. }) => {
                assert_eq!(partial_chars, 4, "{provider:?}")
            }
            other => panic!("{provider:?}: {other:?}"),
        }
        assert_eq!(double.resets(), 1);
    }
}

#[tokio::test]
async fn a_hanging_server_times_out_and_loses_the_connection() {
    set_key("PILOTFISH_IT_HANG_KEY", "k");
    for (provider, key) in each_provider("PILOTFISH_IT_HANG_KEY") {
        let double = ModelDouble::start(Behaviour::failing(Fault::Hang));
        let mut model = model(&double, provider, key);
        model.timeout_ms = 300;
        let started = Instant::now();
        let (_, result) = chat(&model).await;
        assert!(
            matches!(result, Err(ProviderError::Timeout { ms: 300, .. })),
            "{provider:?}: {result:?}"
        );
        assert!(started.elapsed() < Duration::from_secs(3));
        assert!(
            double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
            "{provider:?}: {}",
            double.summary()
        );
    }
}

/// Until its first word a model may be silent for its whole `timeout_ms`, however long: a
/// user who raised it for a CPU model reading a long prompt (llama-server sends its empty
/// role event at once, then nothing) gets the answer, not a stall at 30 s. Real time: the
/// limit it must pass is the 30 s a stream may be quiet once it writes.
#[tokio::test]
async fn a_model_reading_its_prompt_longer_than_a_stall_is_waited_for_to_its_timeout() {
    let double = ModelDouble::start(Behaviour::answer("abcdef").reading(Duration::from_secs(31)));
    let mut model = model(&double, Provider::Openai, None);
    model.timeout_ms = 60_000;
    let (pieces, result) = chat(&model).await;
    assert!(
        matches!(&result, Ok(ModelAnswer { text, cut: None, .. }) if text == "abcdef"),
        "{result:?}"
    );
    assert_eq!(pieces.concat(), "abcdef");
}

/// A chat stream that goes quiet after some text ends there, keeping what came, once it has
/// been quiet for the model's timeout.
#[tokio::test]
async fn a_stream_that_stalls_times_out_after_the_first_pieces() {
    let double = ModelDouble::start(
        Behaviour::answer("abcdef")
            .chunks(3)
            .chunk_delay(Duration::from_secs(10)),
    );
    let mut model = model(&double, Provider::Openai, None);
    // Long enough for the first piece to arrive on a loaded machine, far shorter than the
    // 10 s stall.
    model.timeout_ms = 1_500;
    let (pieces, result) = chat(&model).await;
    assert_eq!(pieces, ["ab"]);
    assert!(
        matches!(&result, Ok(ModelAnswer { text, cut: Some(Cut::Stalled { ms: 1_500 }), .. }) if text == "ab"),
        "{result:?}"
    );
    assert!(
        double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
        "{}",
        double.summary()
    );
}

#[tokio::test]
async fn dropping_the_call_mid_stream_drops_the_connection() {
    set_key("PILOTFISH_IT_DROP_KEY", "k");
    for (provider, key) in each_provider("PILOTFISH_IT_DROP_KEY") {
        let double = ModelDouble::start(
            Behaviour::answer("0123456789")
                .chunks(10)
                .chunk_delay(Duration::from_millis(100)),
        );
        let model = model(&double, provider, key);
        let mut pieces = Vec::new();
        let messages = [ChatMessage::user("q")];
        let call = ChatCall {
            system: "",
            messages: &messages,
            max_tokens: 10,
            temperature: 0.0,
            thinking: Thinking::ModelDefault,
            begin_within: None,
        };
        let providers = Providers::new();
        let cut = tokio::time::timeout(
            Duration::from_millis(250),
            providers.chat(&model, call, &mut |p| pieces.push(p.to_string())),
        )
        .await;
        assert!(cut.is_err(), "{provider:?}: finished early: {cut:?}");
        assert!(
            !pieces.is_empty() && pieces.len() < 10,
            "{provider:?}: {pieces:?}"
        );
        assert!(
            double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
            "{provider:?}: {}",
            double.summary()
        );
        assert_eq!(double.completed(), 0);
    }
}

#[tokio::test]
async fn keys_never_appear_in_errors() {
    set_key("PILOTFISH_IT_SECRET_OPENAI_KEY", "sk-never-shown-1");
    set_key("PILOTFISH_IT_SECRET_ANTHROPIC_KEY", "sk-never-shown-2");
    for (provider, key_env, key) in [
        (
            Provider::Openai,
            "PILOTFISH_IT_SECRET_OPENAI_KEY",
            "sk-never-shown-1",
        ),
        (
            Provider::Anthropic,
            "PILOTFISH_IT_SECRET_ANTHROPIC_KEY",
            "sk-never-shown-2",
        ),
    ] {
        // The last one echoes the key it was sent, as some servers do.
        for fault in [
            Fault::status(401),
            Fault::Garbage,
            Fault::ResetMidStream { after_chunks: 1 },
            Fault::status_with_body(
                401,
                format!("{{\"error\":{{\"message\":\"Incorrect API key provided: {key}\"}}}}"),
            ),
        ] {
            let double = ModelDouble::start(Behaviour::answer("abc").fault(fault.clone()));
            let (_, result) = chat(&model(&double, provider, Some(key_env))).await;
            let error = result.expect_err("a fault");
            assert!(
                !error.to_string().contains(key) && !format!("{error:?}").contains(key),
                "{provider:?} {fault:?}: {error}"
            );
        }
    }
}

// --- answers too big or never ending (issue 11: memory stays bounded) ----------------------

/// One FIM call (native: prefix and suffix) to `model`.
async fn fim(model: &ModelConfig) -> Result<ModelAnswer, ProviderError> {
    let prompt = pilotfish::prompt::FimPrompt {
        prompt: "def add(a, b):\n    return ".into(),
        suffix: Some("\n".into()),
        stop: vec!["\n".into()],
    };
    let call = pilotfish::providers::FimCall {
        prompt: &prompt,
        max_tokens: 64,
        time_budget: None,
        other_files: &[],
    };
    Providers::new().fim(model, call).await
}

/// The FIM wires: OpenAI `/v1/completions`, Ollama `/api/generate`, llama.cpp `/infill`.
const FIM_PROVIDERS: [Provider; 3] = [Provider::Openai, Provider::Ollama, Provider::Llamacpp];

fn assert_too_large(what: &str, result: &Result<ModelAnswer, ProviderError>) {
    let limit = format!("{} MB", pilotfish::providers::MAX_ANSWER_BYTES >> 20);
    match result {
        Err(ProviderError::Malformed { detail, .. } | ProviderError::Stream { detail, .. })
            if detail.contains("larger than") && detail.contains(&limit) => {}
        other => panic!("{what}: expected an answer-too-large error, got {other:?}"),
    }
}

/// A 100 MB answer is dropped at the limit, not read whole: the connection is closed long
/// before the double has written it all.
#[tokio::test]
async fn a_100_mb_answer_is_an_error_at_the_limit_for_every_wire() {
    const HUNDRED_MB: usize = 100 << 20;
    set_key("PILOTFISH_IT_HUGE_KEY", "k");
    for provider in FIM_PROVIDERS {
        let double = ModelDouble::start(Behaviour::failing(Fault::Huge { bytes: HUNDRED_MB }));
        let mut model = model(&double, provider, None);
        model.fim = Some("native".into());
        assert_too_large(&format!("fim {provider:?}"), &fim(&model).await);
        assert!(
            double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
            "fim {provider:?}: the connection is dropped at the limit: {}",
            double.summary()
        );
    }
    for (provider, key) in each_provider("PILOTFISH_IT_HUGE_KEY") {
        let double = ModelDouble::start(Behaviour::failing(Fault::Huge { bytes: HUNDRED_MB }));
        let (pieces, result) = chat(&model(&double, provider, key)).await;
        assert_too_large(&format!("chat {provider:?}"), &result);
        let passed_on: usize = pieces.iter().map(String::len).sum();
        assert!(
            passed_on <= pilotfish::providers::MAX_ANSWER_BYTES,
            "chat {provider:?}: {passed_on} bytes of text"
        );
        assert!(
            double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
            "chat {provider:?}: {}",
            double.summary()
        );
    }
}

/// An answer that never ends (streamed back to back, or a JSON body that never closes) stops
/// at the same limit, well before the model's timeout.
#[tokio::test]
async fn an_answer_that_never_ends_is_an_error_at_the_limit_for_every_wire() {
    set_key("PILOTFISH_IT_ENDLESS_KEY", "k");
    for provider in FIM_PROVIDERS {
        let double = ModelDouble::start(Behaviour::failing(Fault::Endless));
        let mut model = model(&double, provider, None);
        model.fim = Some("native".into());
        model.timeout_ms = 30_000;
        assert_too_large(&format!("fim {provider:?}"), &fim(&model).await);
    }
    for (provider, key) in each_provider("PILOTFISH_IT_ENDLESS_KEY") {
        let double = ModelDouble::start(Behaviour::failing(Fault::Endless));
        let mut model = model(&double, provider, key);
        model.timeout_ms = 30_000;
        let (pieces, result) = chat(&model).await;
        assert_too_large(&format!("chat {provider:?}"), &result);
        assert!(!pieces.is_empty(), "chat {provider:?}: text was passed on");
        assert!(
            double.wait_for_async(|d| d.aborted() == 1, WAIT).await,
            "chat {provider:?}: {}",
            double.summary()
        );
    }
}

/// A server that stops part-way through the body (after promising all of it) is a timeout
/// at the model's `timeout_ms` — for a chat, the text that arrived, marked cut where the
/// stream went quiet — and the connection is dropped. The timeout is short here because
/// hitting it is the point.
#[tokio::test]
async fn a_hang_mid_answer_times_out_for_every_wire() {
    set_key("PILOTFISH_IT_HANG_MID_KEY", "k");
    let fault = Fault::HangMidStream { after_chunks: 1 };
    for provider in FIM_PROVIDERS {
        let double = ModelDouble::start(Behaviour::answer("a + b").fault(fault.clone()));
        let mut model = model(&double, provider, None);
        model.fim = Some("native".into());
        model.timeout_ms = 300;
        let result = fim(&model).await;
        assert!(
            matches!(result, Err(ProviderError::Timeout { .. })),
            "fim {provider:?}: {result:?}"
        );
        assert!(double.wait_for_async(|d| d.aborted() == 1, WAIT).await);
    }
    for (provider, key) in each_provider("PILOTFISH_IT_HANG_MID_KEY") {
        let double = ModelDouble::start(Behaviour::answer("abcdef").chunks(3).fault(fault.clone()));
        let mut model = model(&double, provider, key);
        model.timeout_ms = 300;
        let (pieces, result) = chat(&model).await;
        assert_eq!(pieces, ["ab"], "chat {provider:?}");
        assert!(
            matches!(&result, Ok(answer) if answer.text == "ab" && answer.cut == Some(Cut::Stalled { ms: 300 })),
            "chat {provider:?}: {result:?}"
        );
        assert!(double.wait_for_async(|d| d.aborted() == 1, WAIT).await);
    }
}

/// An answer that never ends but never grows big either (a piece every 20 ms) is stopped by
/// nothing but time — short here, because hitting it is the point: a FIM call fails at the
/// model's timeout; a chat, which has begun, writes on for a quarter second a token asked
/// for, then keeps what arrived, marked cut at that limit — and the connection is dropped
/// there.
#[tokio::test]
async fn an_answer_that_trickles_forever_ends_at_the_timeout_for_every_wire() {
    set_key("PILOTFISH_IT_TRICKLE_KEY", "k");
    let fault = Fault::Trickle {
        every: Duration::from_millis(20),
    };
    for provider in FIM_PROVIDERS {
        let double = ModelDouble::start(Behaviour::failing(fault.clone()));
        let mut model = model(&double, provider, None);
        model.fim = Some("native".into());
        model.timeout_ms = 300;
        let result = fim(&model).await;
        assert!(
            matches!(result, Err(ProviderError::Timeout { ms: 300, .. })),
            "fim {provider:?}: {result:?}"
        );
        assert!(double.wait_for_async(|d| d.aborted() == 1, WAIT).await);
    }
    for (provider, key) in each_provider("PILOTFISH_IT_TRICKLE_KEY") {
        let double = ModelDouble::start(Behaviour::failing(fault.clone()));
        let mut model = model(&double, provider, key);
        model.timeout_ms = 300;
        let started = Instant::now();
        let (pieces, result) = chat_asking(&model, 2).await;
        let took = started.elapsed();
        assert!(!pieces.is_empty(), "chat {provider:?}: text was passed on");
        assert!(
            matches!(&result, Ok(answer) if answer.text == pieces.concat() && answer.cut == Some(Cut::Timeout { ms: 800 })),
            "chat {provider:?}: {result:?}"
        );
        // 300 ms to begin and 500 ms to write two tokens: cut at 0.8 s, not at the timeout.
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(3),
            "chat {provider:?}: {took:?}"
        );
        assert!(double.wait_for_async(|d| d.aborted() == 1, WAIT).await);
    }
}

/// A 100 MB error body costs no more than its first 64 KB: the message is still one line.
#[tokio::test]
async fn a_huge_error_body_is_read_only_in_part() {
    let double = ModelDouble::start(Behaviour::failing(Fault::status_with_body(
        500,
        "x".repeat(20 << 20),
    )));
    let (_, result) = chat(&model(&double, Provider::Openai, None)).await;
    match result {
        Err(ProviderError::Status {
            status: 500,
            message,
            ..
        }) => assert!(message.len() < 1024, "{} bytes", message.len()),
        other => panic!("{other:?}"),
    }
}

/// `Providers::fim_streamed` on each FIM wire (OpenAI `/v1/completions` SSE with `text`
/// chunks, llama.cpp `/infill` SSE with `content` pieces, Ollama `/api/generate` NDJSON with
/// `response` lines): the request asks for a stream, the pieces arrive in order and make the
/// whole answer, with the time to its first token.
#[tokio::test]
async fn fim_streams_pieces_in_order_on_each_wire() {
    use pilotfish::prompt::FimPrompt;
    use pilotfish::providers::FimCall;
    let text = "for x in xs:\n        total += x\n";
    for (provider, suffix, path) in [
        (Provider::Openai, None, "/v1/completions"),
        (Provider::Llamacpp, Some("\n".to_string()), "/infill"),
        (Provider::Ollama, Some("\n".to_string()), "/api/generate"),
    ] {
        let double = ModelDouble::start(Behaviour::answer(text).chunks(4));
        let model = model(&double, provider, None);
        let prompt = FimPrompt {
            prompt: "def f(xs):\n    ".into(),
            suffix,
            stop: Vec::new(),
        };
        let call = FimCall {
            prompt: &prompt,
            max_tokens: 64,
            time_budget: None,
            other_files: &[],
        };
        let mut pieces = Vec::new();
        let answer = Providers::new()
            .fim_streamed(&model, call, &mut |p| pieces.push(p.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{provider:?}: {e}"));
        assert_eq!(answer.text, text, "{provider:?}");
        assert!(pieces.len() > 1, "{provider:?}: {pieces:?}");
        assert_eq!(pieces.concat(), text, "{provider:?}");
        assert!(answer.first_token.is_some(), "{provider:?}");
        let call = double.last_model_call().expect("a call");
        assert_eq!(call.path, path, "{provider:?}");
        assert!(call.wants_stream(), "{provider:?}: {}", call.body);
    }
}

/// A server that closes a kept connection (llama-server, after each streamed answer) makes
/// the next request on it fail with nothing read; it is sent again on a fresh connection, for
/// every kind of call on every wire. On the old code the second call of each pair failed with
/// "connection closed before message completed".
#[tokio::test]
async fn a_request_on_a_connection_the_server_closed_is_sent_again() {
    set_key("PILOTFISH_IT_KEPT_CONNECTION_KEY", "sk-kept-connection");
    let double = ModelDouble::start(Behaviour::answer(ANSWER).drops_kept_connections());
    let providers = Providers::new();
    let messages = [ChatMessage::user("fn main() {}")];
    let chat_call = a_chat(&messages);
    let prompt = pilotfish::prompt::FimPrompt {
        prompt: "def add(a, b):\n    return ".into(),
        suffix: Some("\n".into()),
        stop: Vec::new(),
    };
    let fim_call = pilotfish::providers::FimCall {
        prompt: &prompt,
        max_tokens: 64,
        time_budget: None,
        other_files: &[],
    };
    for (provider, key) in each_provider("PILOTFISH_IT_KEPT_CONNECTION_KEY") {
        let model = model(&double, provider, key);
        for round in 0..2 {
            let what = format!("{provider:?} chat, call {round}");
            let answer = providers.chat(&model, chat_call, &mut |_| {}).await;
            assert_eq!(answer.map(|a| a.text).as_deref(), Ok(ANSWER), "{what}");
            providers
                .warm(&model)
                .await
                .unwrap_or_else(|e| panic!("{what}, warm: {e}"));
        }
    }
    for provider in FIM_PROVIDERS {
        let model = model(&double, provider, None);
        for round in 0..2 {
            let what = format!("{provider:?} FIM, call {round}");
            let streamed = providers.fim_streamed(&model, fim_call, &mut |_| {}).await;
            assert_eq!(streamed.map(|a| a.text).as_deref(), Ok(ANSWER), "{what}");
            let whole = providers.fim(&model, fim_call).await;
            assert_eq!(
                whole.map(|a| a.text).as_deref(),
                Ok(ANSWER),
                "{what}, whole"
            );
        }
    }
    // Every call after the first went out on a kept connection first.
    assert!(double.dropped() >= 20, "{} dropped", double.dropped());
}

/// A connection closed with no answer at once is one the server had closed before the
/// request (sent again: above); one closed after the server had the request for a while is
/// a server that read it and died on it — a crash mid-answer, a proxy's timeout — and the
/// call is not made again (for a cloud model it would be paid again).
#[tokio::test]
async fn a_request_the_server_dropped_while_working_on_it_is_not_sent_again() {
    let providers = Providers::new();
    let messages = [ChatMessage::user("fn main() {}")];
    let call = a_chat(&messages);
    let worked = ModelDouble::start(
        Behaviour::failing(Fault::CloseUnanswered).delay(Duration::from_millis(1500)),
    );
    let answer = providers
        .chat(&model(&worked, Provider::Openai, None), call, &mut |_| {})
        .await;
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(worked.requests(), 1, "{}", worked.summary());
    // Closed at once, every time: sent as often as the pool may hold closed connections
    // and once more (eight and one: `SENDS_ON_CLOSED_CONNECTIONS`), then it is the call's
    // failure.
    let at_once = ModelDouble::start(Behaviour::failing(Fault::CloseUnanswered));
    let answer = providers
        .chat(&model(&at_once, Provider::Openai, None), call, &mut |_| {})
        .await;
    assert!(answer.is_err(), "{answer:?}");
    assert_eq!(at_once.requests(), 9, "{}", at_once.summary());
}

/// OpenAI's reasoning models (o1, o3, GPT-5…) refuse `max_tokens` and any temperature but
/// their default, with a 400 that says so; other OpenAI-compatible servers may not know
/// `max_completion_tokens`. A chat goes out the common way, is sent again as each refusal
/// asks, and the model's next chat goes out that way at once. (lsp-ai and many other clients
/// failed on every call: "Unsupported parameter: 'max_tokens' is not supported with this
/// model. Use 'max_completion_tokens' instead.")
#[tokio::test]
async fn a_chat_is_sent_the_way_a_reasoning_model_asks() {
    let double = ModelDouble::start(Behaviour::answer(ANSWER));
    let providers = Providers::new();
    let messages = [ChatMessage::user("fn main() {}")];
    let call = a_chat(&messages);
    let reasoning = ModelConfig {
        model: "gpt-5-mini".into(),
        ..model(&double, Provider::Openai, None)
    };
    for round in 0..2 {
        let before = double.requests();
        let answer = providers.chat(&reasoning, call, &mut |_| {}).await;
        assert_eq!(
            answer.map(|a| a.text).as_deref(),
            Ok(ANSWER),
            "round {round}: {}",
            double.summary()
        );
        let sent = double.requests() - before;
        // The first: refused for `max_tokens`, then for the temperature, then answered.
        assert_eq!(sent, if round == 0 { 3 } else { 1 }, "round {round}");
        let body = double.last_model_call().expect("a chat").body;
        assert_eq!(body["max_completion_tokens"], json!(300), "{body}");
        assert!(body.get("max_tokens").is_none(), "{body}");
        assert!(body.get("temperature").is_none(), "{body}");
    }
    // Any other model is asked the common way, in one request.
    let before = double.requests();
    let plain = model(&double, Provider::Openai, None);
    let answer = providers.chat(&plain, call, &mut |_| {}).await;
    assert_eq!(answer.map(|a| a.text).as_deref(), Ok(ANSWER));
    assert_eq!(double.requests() - before, 1);
    let body = double.last_model_call().expect("a chat").body;
    assert_eq!(body["max_tokens"], json!(300), "{body}");
    assert_eq!(body["temperature"], json!(0.2), "{body}");
}

/// A 400 that asks for nothing Pilotfish can change is the call's failure, sent once.
#[tokio::test]
async fn a_refusal_that_asks_for_nothing_new_is_not_sent_again() {
    let double = ModelDouble::start(Behaviour::failing(Fault::status_with_body(
        400,
        r#"{"error":{"message":"Unsupported value: 'messages[0].role' does not support 'system' with this model.","type":"invalid_request_error"}}"#,
    )));
    let providers = Providers::new();
    let messages = [ChatMessage::user("fn main() {}")];
    let call = ChatCall {
        system: "be brief",
        ..a_chat(&messages)
    };
    let answer = providers
        .chat(&model(&double, Provider::Openai, None), call, &mut |_| {})
        .await;
    assert!(
        matches!(answer, Err(ProviderError::Status { status: 400, .. })),
        "{answer:?}"
    );
    assert_eq!(double.requests(), 1, "{}", double.summary());
}

/// A model OpenAI serves only through its Responses API (o1-pro, o3-pro, GPT-5-Codex) refuses
/// the Chat API with a 404 that says so: the chat is sent to `{url}/responses` instead, as
/// that API asks it (the system prompt as `instructions`, `max_output_tokens`), streamed or
/// whole, cut at the limit or not, and the model is asked there at once from then on.
#[tokio::test]
async fn a_model_served_only_through_the_responses_api_is_asked_there() {
    let providers = Providers::new();
    let messages = [ChatMessage::user("fn main() {}")];
    let call = ChatCall {
        system: "be brief",
        ..a_chat(&messages)
    };
    for streams in [true, false] {
        let answering = |text: &str| {
            let behaviour = Behaviour::answer(text);
            if streams {
                behaviour
            } else {
                behaviour.never_streams()
            }
        };
        let double = ModelDouble::start(answering(ANSWER));
        let codex = ModelConfig {
            model: "gpt-5-codex".into(),
            ..model(&double, Provider::Openai, None)
        };
        for round in 0..2 {
            let what = format!("streams {streams}, round {round}");
            let before = double.requests();
            let answer = providers.chat(&codex, call, &mut |_| {}).await;
            let answer = answer.unwrap_or_else(|e| panic!("{what}: {e}: {}", double.summary()));
            assert_eq!(answer.text, ANSWER, "{what}");
            assert!(answer.tokens_out.is_some(), "{what}: usage read");
            assert_eq!(answer.cut, None, "{what}");
            // The first: refused at the Chat API, then for the temperature, then answered.
            let sent = double.requests() - before;
            assert_eq!(sent, if round == 0 { 3 } else { 1 }, "{what}");
            let last = double.last_model_call().expect("a call");
            assert_eq!(last.path, "/v1/responses", "{what}");
            assert_eq!(last.body["instructions"], json!("be brief"), "{what}");
            assert_eq!(last.body["max_output_tokens"], json!(300), "{what}");
            assert_eq!(
                last.body["input"],
                json!([{ "role": "user", "content": "fn main() {}" }]),
                "{what}"
            );
            assert!(last.body.get("temperature").is_none(), "{what}");
        }
        // A one-token probe (`pilotfish check`) asks for the 16 tokens the API takes at
        // least, and is answered.
        let probe = ChatCall {
            max_tokens: 1,
            ..call
        };
        let answer = providers.chat(&codex, probe, &mut |_| {}).await;
        assert!(answer.is_ok(), "streams {streams}: {answer:?}");
        let last = double.last_model_call().expect("a call");
        assert_eq!(
            last.body["max_output_tokens"],
            json!(16),
            "streams {streams}"
        );
        // Cut at the output limit: `response.incomplete`.
        double.set_behaviour(answering(&"word ".repeat(100)));
        let short = ChatCall {
            max_tokens: 20,
            ..call
        };
        let answer = providers.chat(&codex, short, &mut |_| {}).await;
        assert_eq!(
            answer.map(|a| a.cut),
            Ok(Some(Cut::TokenLimit)),
            "streams {streams}: {}",
            double.summary()
        );
    }
}
