//! What the double does with one request: records it, answers a probe with the scripted
//! health, or answers a model call with the scripted text (cut at the request's output-token
//! limit, as a real server does), delay and fault, whole or streamed.
//! It must not render a wire format itself (that is `wire` and the four wire modules) nor parse
//! HTTP (that is `http`).

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::Value;

use super::behaviour::{Answer, Context, Fault, Health};
use super::http::{Conn, Outcome, Parsed, http_chunk, response_head, send_json, send_raw};
use super::request::{Dialect, Endpoint, RecordedRequest};
use super::wire::{self, Finish, Usage};
use super::{Shared, anthropic, flood, openai};

/// What the double will do for one model call, decided when it arrives.
struct Plan {
    text: String,
    finish: Finish,
    delay: Duration,
    chunk_delay: Duration,
    /// Silence after the stream's opening events ([`Behaviour::reading`]).
    reading: Duration,
    reads_per_token: Duration,
    chunks: usize,
    fault: Option<Fault>,
    /// Whole answers, even to a request for a stream.
    never_streams: bool,
    /// Output tokens spent thinking, unseen, before the text.
    hidden_reasoning: u64,
    /// The model's context: a longer input is refused.
    context: Option<Context>,
}

pub(super) async fn respond(conn: &mut Conn, shared: &Shared, parsed: Parsed) -> Outcome {
    // A proxy's request names the whole URL (`POST http://host/path`): the double serves
    // it as the host would, which its `Host` header names.
    let target = parsed
        .target
        .strip_prefix("http://")
        .map_or(parsed.target.as_str(), |rest| {
            rest.find('/').map_or("/", |slash| &rest[slash..])
        });
    let (path, query) = match target.split_once('?') {
        Some((path, query)) => (path.to_owned(), Some(query.to_owned())),
        None => (target.to_owned(), None),
    };
    let endpoint = Endpoint::classify(&path);
    let body = serde_json::from_slice(&parsed.body).unwrap_or(Value::Null);
    let counters = &shared.counters;
    conn.model_call = false;

    // Record, and take what this request needs from the behaviour, under one short lock.
    let (request, answer, plan, models, health) = {
        let mut state = shared.lock();
        let request = RecordedRequest {
            seq: state.log.len(),
            method: parsed.method,
            path,
            query,
            headers: parsed.headers,
            body,
            raw_body: parsed.body,
            endpoint,
        };
        state.log.push(request.clone());
        let behaviour = &state.behaviour;
        let (answer, models, health) = (
            behaviour.answer.clone(),
            behaviour.models.clone(),
            behaviour.health,
        );
        let mut plan = Plan {
            text: String::new(),
            finish: Finish::Stop,
            delay: behaviour.delay,
            chunk_delay: behaviour.chunk_delay,
            reading: behaviour.reading,
            reads_per_token: behaviour.reads_per_token,
            chunks: behaviour.chunks.max(1),
            fault: None,
            never_streams: behaviour.never_streams,
            // Ollama's `think: false` stops a thinking model's thinking, and so does
            // llama-server's `chat_template_kwargs.enable_thinking: false`.
            hidden_reasoning: if request.body.get("think") == Some(&Value::Bool(false))
                || request.body["chat_template_kwargs"]["enable_thinking"] == Value::Bool(false)
            {
                0
            } else {
                behaviour.hidden_reasoning_tokens
            },
            context: behaviour.context,
        };
        if endpoint.is_model_call() && request.method == "POST" {
            // Counted with its record, under the same lock: a test that reads the record
            // (a call at some place) and then the counters never sees one without the other.
            counters.requests.fetch_add(1, Ordering::SeqCst);
            let earlier = state.log.iter().filter(|r| r.is_model_call()).count() - 1;
            if let Some((n, delay)) = behaviour.delay_after {
                if earlier >= n {
                    plan.delay = delay;
                }
            }
            plan.fault = state
                .script
                .pop_front()
                .or_else(|| state.behaviour.fault.clone());
        }
        (request, answer, plan, models, health)
    };

    if endpoint == Endpoint::Unknown {
        let body = wire::error_body(
            Dialect::OpenAi,
            404,
            &format!("no route for {}", request.path),
        );
        return send_json(conn, 404, &body, None).await;
    }
    if request.method == "HEAD" && endpoint.is_probe() {
        // Ollama's own client checks `HEAD /`; answer like GET, without a body.
        counters.probes.fetch_add(1, Ordering::SeqCst);
        let status = if health == Health::Up { 200 } else { 503 };
        let head = response_head(status, "text/plain; charset=utf-8", Some(0), None);
        return if conn.send(head.as_bytes()).await {
            Outcome::Completed
        } else {
            Outcome::Aborted
        };
    }
    if request.method != endpoint.method() {
        let body = wire::error_body(endpoint.dialect(), 405, "method not allowed");
        return send_json(conn, 405, &body, None).await;
    }
    if endpoint.is_probe() {
        counters.probes.fetch_add(1, Ordering::SeqCst);
        return answer_probe(conn, endpoint, &models, health).await;
    }

    conn.model_call = true;
    let mut plan = plan;
    let text = match &answer {
        Answer::Text(text) => text.clone(),
        Answer::With(f) => f(&request),
    };
    (plan.text, plan.finish) = wire::within_limit(&request, text, plan.hidden_reasoning);
    if plan.fault.is_some() {
        counters.faulted.fetch_add(1, Ordering::SeqCst);
    }
    let outcome = answer_model_call(conn, &request, plan).await;
    match outcome {
        // Counted by `Conn::finish`, before the client could see the end of the response.
        Outcome::Completed => {}
        Outcome::Aborted => {
            counters.aborted.fetch_add(1, Ordering::SeqCst);
        }
        // Counted before `serve_connection` resets the connection.
        Outcome::Reset => {
            counters.resets.fetch_add(1, Ordering::SeqCst);
        }
    }
    outcome
}

async fn answer_probe(
    conn: &mut Conn,
    endpoint: Endpoint,
    models: &[String],
    health: Health,
) -> Outcome {
    if health == Health::Down {
        let body = wire::error_body(endpoint.dialect(), 503, "Loading model");
        return send_json(conn, 503, &body, None).await;
    }
    if health == Health::Unlisted && endpoint == Endpoint::OpenAiModels {
        let body = wire::error_body(endpoint.dialect(), 404, "Not Found");
        return send_json(conn, 404, &body, None).await;
    }
    match wire::probe_body(endpoint, models) {
        Some(body) => send_json(conn, 200, &body, None).await,
        None => {
            send_raw(
                conn,
                200,
                "text/plain; charset=utf-8",
                b"Ollama is running",
                None,
            )
            .await
        }
    }
}

async fn answer_model_call(conn: &mut Conn, request: &RecordedRequest, plan: Plan) -> Outcome {
    let dialect = request.endpoint.dialect();
    if !conn.pause(plan.delay).await {
        return Outcome::Aborted;
    }
    if request.body.is_null() {
        let body = wire::error_body(dialect, 400, "request body is not valid JSON");
        return send_json(conn, 400, &body, None).await;
    }
    if dialect == Dialect::Anthropic
        && let Some((status, message)) = anthropic::refusal(request)
    {
        let body = wire::error_body(dialect, status, message);
        return send_json(conn, status, &body, None).await;
    }
    if dialect == Dialect::OpenAi
        && let Some((status, body)) = openai::refusal(request)
    {
        return send_json(conn, status, &body, None).await;
    }
    if let Some(body) = plan
        .context
        .and_then(|context| wire::context_refusal(dialect, request, context))
    {
        return send_json(conn, 400, &body, None).await;
    }
    let streaming = request.wants_stream() && !plan.never_streams;
    let mut usage = Usage::estimate(request, &plan.text, plan.finish);
    usage.reading = plan.reads_per_token * u32::try_from(usage.input).unwrap_or(u32::MAX);
    usage.output += request
        .max_output_tokens()
        .map_or(plan.hidden_reasoning, |limit| {
            plan.hidden_reasoning.min(limit)
        });
    match plan.fault.clone() {
        Some(Fault::Status {
            status,
            body,
            retry_after_secs,
        }) => {
            let retry_after = retry_after_secs.map(|secs| secs.to_string());
            match body {
                Some(body) => {
                    let content_type = if serde_json::from_str::<Value>(&body).is_ok() {
                        "application/json"
                    } else {
                        "text/plain; charset=utf-8"
                    };
                    send_raw(conn, status, content_type, body.as_bytes(), retry_after).await
                }
                None => {
                    let body = wire::error_body(dialect, status, wire::default_message(status));
                    send_json(conn, status, &body, retry_after).await
                }
            }
        }
        Some(Fault::Hang) => {
            conn.hang().await;
            Outcome::Aborted
        }
        Some(Fault::CloseUnanswered) => Outcome::Aborted,
        Some(Fault::Garbage) => {
            let content_type = if !streaming {
                "application/json"
            } else if dialect == Dialect::Ollama {
                "application/x-ndjson"
            } else {
                "text/event-stream"
            };
            let garbage = b"<html><body>502 Bad Gateway \xff\xfe not json {{{</body></html>\n";
            send_raw(conn, 200, content_type, garbage, None).await
        }
        Some(Fault::StreamError { .. }) if !streaming => {
            let status = if dialect == Dialect::Anthropic {
                529
            } else {
                500
            };
            let body = wire::error_body(dialect, status, wire::default_message(status));
            send_json(conn, status, &body, None).await
        }
        Some(
            fault
            @ (Fault::ResetMidStream { after_chunks } | Fault::HangMidStream { after_chunks }),
        ) if !streaming => {
            let body = serde_json::to_vec(&wire::full_body(request, &plan.text, usage))
                .unwrap_or_default();
            let head = response_head(200, "application/json", Some(body.len()), None);
            let cut = if after_chunks == 0 { 0 } else { body.len() / 2 };
            if !conn.send(head.as_bytes()).await || !conn.send(&body[..cut]).await {
                return Outcome::Aborted;
            }
            if matches!(fault, Fault::HangMidStream { .. }) {
                conn.hang().await;
                return Outcome::Aborted;
            }
            Outcome::Reset
        }
        Some(Fault::Huge { bytes }) => flood::huge(conn, request, usage, streaming, bytes).await,
        Some(Fault::Endless) => {
            flood::endless(conn, request, usage, streaming, Duration::ZERO).await
        }
        Some(Fault::Trickle { every }) => {
            flood::endless(conn, request, usage, streaming, every).await
        }
        fault if streaming => stream_answer(conn, request, &plan, usage, fault).await,
        _ => {
            if !conn.pause(usage.reading).await {
                return Outcome::Aborted;
            }
            send_json(
                conn,
                200,
                &wire::full_body(request, &plan.text, usage),
                None,
            )
            .await
        }
    }
}

/// Streams the answer as SSE or NDJSON in HTTP chunked encoding; `fault` may cut it short.
async fn stream_answer(
    conn: &mut Conn,
    request: &RecordedRequest,
    plan: &Plan,
    usage: Usage,
    fault: Option<Fault>,
) -> Outcome {
    let pieces = wire::split_pieces(&plan.text, plan.chunks);
    let events = wire::stream_events(request, &pieces, usage);
    let head = response_head(200, events.content_type, None, None);
    if !conn.send(head.as_bytes()).await {
        return Outcome::Aborted;
    }
    for event in &events.preamble {
        if !conn.send(&http_chunk(event)).await {
            return Outcome::Aborted;
        }
    }
    if !conn.pause(plan.reading + usage.reading).await {
        return Outcome::Aborted;
    }
    let cut_after = match fault {
        Some(
            Fault::ResetMidStream { after_chunks }
            | Fault::StreamError { after_chunks }
            | Fault::HangMidStream { after_chunks },
        ) => Some(after_chunks),
        _ => None,
    };
    for (index, event) in events.content.iter().enumerate() {
        if cut_after == Some(index) {
            break;
        }
        if index > 0 && !conn.pause(plan.chunk_delay).await {
            return Outcome::Aborted;
        }
        if !conn.send(&http_chunk(event)).await {
            return Outcome::Aborted;
        }
    }
    match fault {
        Some(Fault::ResetMidStream { .. }) => return Outcome::Reset,
        Some(Fault::HangMidStream { .. }) => {
            conn.hang().await;
            return Outcome::Aborted;
        }
        Some(Fault::StreamError { .. }) => {
            let event = wire::stream_error_event(request.endpoint.dialect());
            if !conn.send(&http_chunk(&event)).await {
                return Outcome::Aborted;
            }
        }
        _ => {
            if !conn.pause(plan.chunk_delay).await {
                return Outcome::Aborted;
            }
            for event in &events.epilogue {
                if !conn.send(&http_chunk(event)).await {
                    return Outcome::Aborted;
                }
            }
        }
    }
    conn.finish(b"0\r\n\r\n").await
}
