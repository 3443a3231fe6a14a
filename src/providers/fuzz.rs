//! The fuzz check of the streamed answer decoders (see `crate::fuzzing`): each wire
//! (OpenAI-compatible SSE, OpenAI's Responses API SSE, Ollama NDJSON, Anthropic SSE,
//! llama.cpp `/infill` SSE), fed a body whole and in arbitrary pieces, as the network
//! delivers it, must give the same text pieces, the same ending, the same usage and the same
//! cut at the token limit, and never panic. Compiled only for the fuzz targets and the tests.

use super::stream::{ChatWire, SseWire, WireError};
use super::{anthropic, llamacpp, ollama, openai};

/// What one body gave through a fresh wire, read as `read_chat` reads it.
#[derive(Debug, PartialEq, Eq)]
struct Decoded {
    pieces: Vec<String>,
    ended: Result<(), WireError>,
    usage: (Option<u64>, Option<u64>),
    cut_at_limit: bool,
}

/// The wires, by the fuzzer's choice.
const WIRES: u8 = 5;

fn wire(provider: u8) -> Box<dyn ChatWire> {
    match provider % WIRES {
        0 => Box::<SseWire<openai::ChatStream>>::default(),
        1 => Box::<ollama::ChatStream>::default(),
        2 => Box::<SseWire<anthropic::ChatStream>>::default(),
        3 => Box::<SseWire<llamacpp::InfillStream>>::default(),
        _ => Box::<SseWire<openai::ResponsesStream>>::default(),
    }
}

/// Feeds `pieces` in order until the answer is done or an error ends it, then finishes.
fn decode<'a>(provider: u8, pieces: impl IntoIterator<Item = &'a [u8]>) -> Decoded {
    let mut wire = wire(provider);
    let mut out = Vec::new();
    let mut ended = Ok(());
    for piece in pieces {
        ended = wire.feed(piece, &mut |p| out.push(p.to_owned()));
        if ended.is_err() || wire.is_done() {
            break;
        }
    }
    if ended.is_ok() && !wire.is_done() {
        ended = wire.finish(&mut |p| out.push(p.to_owned()));
    }
    Decoded {
        pieces: out,
        ended,
        usage: wire.usage(),
        cut_at_limit: wire.cut_at_limit(),
    }
}

/// `body` decoded whole and cut into pieces of the sizes `cuts` gives (1 to 256 bytes, in
/// turn) decodes the same; panics otherwise.
pub(crate) fn check_chat_stream(provider: u8, body: &[u8], cuts: &[u8]) {
    let whole = decode(provider, [body]);
    let mut pieces = Vec::new();
    let mut rest = body;
    for &cut in cuts.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (piece, after) = rest.split_at((usize::from(cut) + 1).min(rest.len()));
        pieces.push(piece);
        rest = after;
    }
    if cuts.is_empty() {
        pieces.push(body);
    }
    let cut = decode(provider, pieces.iter().copied());
    assert_eq!(
        cut,
        whole,
        "provider {}: the same body in pieces",
        provider % WIRES
    );
    let byte_by_byte = decode(provider, body.chunks(1));
    assert_eq!(
        byte_by_byte,
        whole,
        "provider {}: byte by byte",
        provider % WIRES
    );
}
