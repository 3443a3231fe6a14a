//! What a test scripts: the answer text, delays before the head and between stream chunks,
//! faults (for every call or a script of the next calls), the models listed and the health
//! reported by probes. Plain data; it must not know any wire format.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::RecordedRequest;

/// Computes the answer text from the request (for tests that answer per prompt).
pub type AnswerFn = Arc<dyn Fn(&RecordedRequest) -> String + Send + Sync>;

/// What the model "generates".
#[derive(Clone)]
pub enum Answer {
    /// The same text for every request.
    Text(String),
    /// Text computed from each request.
    With(AnswerFn),
}

impl fmt::Debug for Answer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Answer::Text(text) => f.debug_tuple("Text").field(text).finish(),
            Answer::With(_) => f.write_str("With(<closure>)"),
        }
    }
}

/// A way for a model server to misbehave. Faults apply to model calls only, never to probes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this HTTP status. `body: None` means an error body in the provider's own
    /// format (e.g. Anthropic's `{"type":"error","error":{"type":"overloaded_error",..}}`).
    Status {
        status: u16,
        body: Option<String>,
        retry_after_secs: Option<u64>,
    },
    /// Never answer; wait until the client gives up (which then counts as an abort).
    Hang,
    /// Read the request, wait out the behaviour's `delay`, and close the connection with no
    /// answer at all (a server that crashes while it works on a request).
    CloseUnanswered,
    /// `200 OK` with a body that is not JSON (nor SSE/NDJSON of JSON).
    Garbage,
    /// Send the head and `after_chunks` content chunks (a prefix of the body when not streaming),
    /// then reset the connection (TCP RST) without finishing the response.
    ResetMidStream { after_chunks: usize },
    /// Streaming: send `after_chunks` content chunks, then an in-band error in the provider's
    /// format (Anthropic `event: error` with `overloaded_error`, OpenAI/llama.cpp `data:
    /// {"error":..}`, Ollama `{"error":..}`) and end the stream. Not streaming: answer 529 for
    /// Anthropic, 500 for the others.
    StreamError { after_chunks: usize },
    /// Send the head and `after_chunks` content chunks (half the body when not streaming, after
    /// a `Content-Length` promising all of it), then send nothing more until the client leaves.
    HangMidStream { after_chunks: usize },
    /// `200 OK` and an answer that never ends: content chunks back to back with no pause
    /// (`chunk_delay` is ignored), never the last event; when not streaming, a chunked JSON
    /// body whose text field never closes. Until the client leaves.
    Endless,
    /// `200 OK` and an answer that never ends, one small piece (an event, or a byte of the
    /// text when not streaming) every `every`: a model looping on a token. It never goes quiet
    /// and never grows big, so only the model's timeout ends it. Until the client leaves.
    Trickle { every: Duration },
    /// `200 OK` and a well-formed answer of about `bytes` bytes on the wire (its text is
    /// filler), written in 64 KB pieces as the client reads, never held whole in memory.
    Huge { bytes: usize },
}

impl Fault {
    /// This status with the provider's own error body.
    pub fn status(status: u16) -> Self {
        Fault::Status {
            status,
            body: None,
            retry_after_secs: None,
        }
    }

    /// This status with exactly this body.
    pub fn status_with_body(status: u16, body: impl Into<String>) -> Self {
        Fault::Status {
            status,
            body: Some(body.into()),
            retry_after_secs: None,
        }
    }

    /// `429 Too Many Requests` with `Retry-After: secs`.
    pub fn rate_limited(retry_after_secs: u64) -> Self {
        Fault::Status {
            status: 429,
            body: None,
            retry_after_secs: Some(retry_after_secs),
        }
    }

    /// Anthropic's `529` overloaded (its body is `overloaded_error` on the Anthropic endpoint).
    pub fn overloaded() -> Self {
        Fault::status(529)
    }
}

/// Whether probes (`/health`, `/api/tags`, `/v1/models`, `GET /`) report the server as up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    Up,
    /// Probes answer `503` in the provider's format (llama.cpp's "Loading model").
    Down,
    /// Up, but with no list of models: `GET /v1/models` answers 404 (an OpenAI-compatible
    /// server that does not list them).
    Unlisted,
}

/// Everything the double does, settable at start and replaceable while it runs
/// ([`ModelDouble::set_behaviour`]). Build it with the chained methods.
#[derive(Clone, Debug)]
pub struct Behaviour {
    pub answer: Answer,
    /// Wait before the response head is written (time to first byte).
    pub delay: Duration,
    /// Model calls after the first `n` wait this long instead of `delay` (a model that turns
    /// slow, e.g. for the background calls that follow a request).
    pub delay_after: Option<(usize, Duration)>,
    /// Wait between content chunks when streaming.
    pub chunk_delay: Duration,
    /// Streaming: wait this long after the stream's opening events (an OpenAI-compatible
    /// chat's empty role event) before the first content chunk — llama-server sends that
    /// event at once, then nothing while it reads the prompt.
    pub reading: Duration,
    /// The time the server takes to read each prompt token (a CPU's llama-server: ~20 ms):
    /// an answer waits the request's input tokens times this before its first word (after
    /// a stream's opening events), and the server says so (llama.cpp's `timings.prompt_ms`,
    /// on its OpenAI-compatible answers too, as llama-server does; Ollama's
    /// `prompt_eval_duration`).
    pub reads_per_token: Duration,
    /// How many content chunks a streamed answer is split into (at least 1).
    pub chunks: usize,
    /// Applied to every model call not covered by `script`.
    pub fault: Option<Fault>,
    /// Applied to the next model calls, one each, in order; then `fault` (or a normal answer).
    pub script: Vec<Fault>,
    /// Model names listed by `/api/tags` and `/v1/models`.
    pub models: Vec<String>,
    pub health: Health,
    /// Answer with one JSON object even when the client asks for a stream (a proxy that
    /// buffers, or a server that does not stream).
    pub never_streams: bool,
    /// Answer one request per connection, and keep it open: a request that comes on it next
    /// is read and the connection closed, unanswered, never said (no `Connection: close`).
    /// Counted in [`super::ModelDouble::dropped`]. The losing side of a race, made certain:
    /// llama-server closes the connection after each streamed answer, and a request sent at
    /// once can go out on it before the client has seen the close.
    pub drops_kept_connections: bool,
    /// Output tokens a reasoning model spends thinking before its text, unseen (OpenAI's
    /// o-series and GPT-5; Ollama's thinking models, which send it apart from the answer, in
    /// a field no client here reads): they count towards the request's output limit, which
    /// may end the answer before any text, and in the usage's output tokens. A request with
    /// Ollama's `think: false` or llama-server's `chat_template_kwargs.enable_thinking:
    /// false` gets none.
    pub hidden_reasoning_tokens: u64,
    /// The model's context as the server runs it: a model call whose input is longer is
    /// refused before any generation ([`Context`]).
    pub context: Option<Context>,
}

/// A context of `tokens` tokens, the input counted at `chars_per_token` characters a token
/// (a model's vocabulary may count more tokens than a client's estimate: Qwen's reads each
/// digit as one). A longer input is refused as llama-server refuses it (HTTP 400
/// `exceed_context_size_error` with `n_ctx` and `n_prompt_tokens`) on the OpenAI-compatible
/// and llama.cpp paths, and as Anthropic does on its own ("prompt is too long: N tokens > M
/// maximum"); Ollama cuts the prompt to its context unasked, so its paths take any length.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub tokens: u64,
    pub chars_per_token: u64,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            answer: Answer::Text(String::new()),
            delay: Duration::ZERO,
            delay_after: None,
            chunk_delay: Duration::ZERO,
            reading: Duration::ZERO,
            reads_per_token: Duration::ZERO,
            chunks: 3,
            fault: None,
            script: Vec::new(),
            models: vec!["test-model".to_owned()],
            health: Health::Up,
            never_streams: false,
            drops_kept_connections: false,
            hidden_reasoning_tokens: 0,
            context: None,
        }
    }
}

impl Behaviour {
    /// Answer every model call with `text`.
    pub fn answer(text: impl Into<String>) -> Self {
        Behaviour {
            answer: Answer::Text(text.into()),
            ..Behaviour::default()
        }
    }

    /// Answer each model call with `f(request)`.
    pub fn answer_with(f: impl Fn(&RecordedRequest) -> String + Send + Sync + 'static) -> Self {
        Behaviour {
            answer: Answer::With(Arc::new(f)),
            ..Behaviour::default()
        }
    }

    /// Answer a model call whose text before the cursor ends with `place` with `answer`,
    /// any other with `elsewhere`.
    pub fn answer_at(place: &'static str, answer: &'static str, elsewhere: &'static str) -> Self {
        Behaviour::answer_with(move |call| {
            if call.fim_prefix_text().ends_with(place) {
                answer.to_owned()
            } else {
                elsewhere.to_owned()
            }
        })
    }

    /// Every model call gets `fault`.
    pub fn failing(fault: Fault) -> Self {
        Behaviour::default().fault(fault)
    }

    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    /// Model calls after the first `n` wait `delay` before answering.
    pub fn delay_after(mut self, n: usize, delay: Duration) -> Self {
        self.delay_after = Some((n, delay));
        self
    }

    pub fn chunk_delay(mut self, delay: Duration) -> Self {
        self.chunk_delay = delay;
        self
    }

    pub fn reading(mut self, reading: Duration) -> Self {
        self.reading = reading;
        self
    }

    pub fn reads_at(mut self, per_token: Duration) -> Self {
        self.reads_per_token = per_token;
        self
    }

    pub fn chunks(mut self, chunks: usize) -> Self {
        self.chunks = chunks.max(1);
        self
    }

    pub fn fault(mut self, fault: Fault) -> Self {
        self.fault = Some(fault);
        self
    }

    /// The first `n` model calls get `fault`, the later ones the normal answer.
    pub fn fail_first(mut self, n: usize, fault: Fault) -> Self {
        self.script.extend(std::iter::repeat_n(fault, n));
        self
    }

    /// The next model calls get these faults, one each, in order.
    pub fn script(mut self, faults: impl IntoIterator<Item = Fault>) -> Self {
        self.script.extend(faults);
        self
    }

    pub fn models<S: Into<String>>(mut self, models: impl IntoIterator<Item = S>) -> Self {
        self.models = models.into_iter().map(Into::into).collect();
        self
    }

    pub fn health(mut self, health: Health) -> Self {
        self.health = health;
        self
    }

    /// Answers whole, never streamed, whatever the client asks.
    pub fn never_streams(mut self) -> Self {
        self.never_streams = true;
        self
    }

    /// Thinks `tokens` output tokens, unseen, before the text (see the field).
    pub fn hidden_reasoning(mut self, tokens: u64) -> Self {
        self.hidden_reasoning_tokens = tokens;
        self
    }

    /// Runs the model with a context of `tokens` tokens of `chars_per_token` characters
    /// ([`Context`]).
    pub fn context(mut self, tokens: u64, chars_per_token: u64) -> Self {
        self.context = Some(Context {
            tokens,
            chars_per_token,
        });
        self
    }

    /// Answers one request per connection (see the field).
    pub fn drops_kept_connections(mut self) -> Self {
        self.drops_kept_connections = true;
        self
    }
}
