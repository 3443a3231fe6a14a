//! llama.cpp's server: `POST {url}/infill` with `input_prefix`/`input_suffix` and the other
//! files' context in `input_extra`, the server applying the model's own FIM tokens (and,
//! for models trained on repositories, its file-separator tokens); `t_max_predict_ms`
//! bounds generation time. Whole (one JSON object) or streamed (SSE pieces).

use serde_json::{Value, json};

use super::stream::{ChatWire, SseAnswer, SseWire, WireError, event_json};
use super::{
    Cut, FimCall, ModelAnswer, PromptRead, ProviderError, error_text, one_line, post_json, with_key,
};
use crate::config::ModelConfig;

pub(super) async fn fim(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    call: FimCall<'_>,
) -> Result<ModelAnswer, ProviderError> {
    let body = infill_body(model, &call, false)?;
    let text = post_json(http, model, url, &body).await?;
    parse_infill(url, &text)
}

/// The streamed `/infill` request and the decoder of its answer, for `stream_chat`.
pub(super) fn fim_streamed(
    http: &reqwest::Client,
    model: &ModelConfig,
    url: &str,
    call: &FimCall<'_>,
) -> Result<(reqwest::RequestBuilder, Box<dyn ChatWire>), ProviderError> {
    let body = infill_body(model, call, true)?;
    let request = with_key(http.post(url), model).json(&body);
    Ok((request, Box::<SseWire<InfillStream>>::default()))
}

/// The SSE stream of `/infill`: `{"content": …, "stop": false}` pieces, the last one
/// `stop: true` with the token counts.
#[derive(Debug, Default)]
pub(super) struct InfillStream {
    done: bool,
    tokens_in: Option<u64>,
    tokens_out: Option<u64>,
    cut: bool,
    prompt_read: Option<PromptRead>,
}

impl SseAnswer for InfillStream {
    fn event(
        &mut self,
        _name: &str,
        data: &str,
        text: &mut dyn FnMut(&str),
    ) -> Result<(), WireError> {
        let obj = event_json("", data)?;
        if let Some(error) = obj.get("error").filter(|e| !e.is_null()) {
            return Err(WireError::Model {
                status: None,
                message: one_line(&error_text(error)),
            });
        }
        if let Some(piece) = obj.get("content").and_then(Value::as_str) {
            text(piece);
        }
        if obj.get("stop").and_then(Value::as_bool) == Some(true) {
            self.done = true;
            self.tokens_in = obj.get("tokens_evaluated").and_then(Value::as_u64);
            self.tokens_out = obj.get("tokens_predicted").and_then(Value::as_u64);
            self.cut = cut_at_limit(&obj);
            self.prompt_read = PromptRead::of(&obj);
        }
        Ok(())
    }

    fn is_done(&self) -> bool {
        self.done
    }

    fn usage(&self) -> (Option<u64>, Option<u64>) {
        (self.tokens_in, self.tokens_out)
    }

    fn prompt_read(&self) -> Option<PromptRead> {
        self.prompt_read
    }

    fn cut_at_limit(&self) -> bool {
        self.cut
    }
}

/// The `/infill` request body; `/infill` applies the model's own template, so the prompt
/// must be native (a prefix and a suffix).
fn infill_body(
    model: &ModelConfig,
    call: &FimCall<'_>,
    stream: bool,
) -> Result<Value, ProviderError> {
    let Some(suffix) = &call.prompt.suffix else {
        return Err(ProviderError::Unsupported(format!(
            "model {:?}: llama.cpp's /infill applies the model's own FIM template; set fim = \"native\"",
            model.model
        )));
    };
    let mut body = json!({
        "input_prefix": call.prompt.prompt,
        "input_suffix": suffix,
        "input_extra": call
            .other_files
            .iter()
            .map(|f| json!({ "filename": f.name, "text": &*f.text }))
            .collect::<Vec<_>>(),
        "n_predict": call.max_tokens,
        "temperature": 0.0,
        "stop": call.prompt.stop,
        "cache_prompt": true,
        "stream": stream,
    });
    if let Some(budget) = call.time_budget {
        body["t_max_predict_ms"] = json!(budget.as_millis() as u64);
    }
    Ok(body)
}

/// Reads a whole (not streamed) `/infill` answer.
fn parse_infill(url: &str, text: &str) -> Result<ModelAnswer, ProviderError> {
    let url = url.to_string();
    let obj: Value = serde_json::from_str(text).map_err(|e| ProviderError::Malformed {
        url: url.clone(),
        detail: format!("not JSON: {e}"),
    })?;
    let content =
        obj.get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| ProviderError::Malformed {
                url: url.clone(),
                detail: "no `content` in the answer".into(),
            })?;
    Ok(ModelAnswer {
        text: content.to_string(),
        tokens_in: obj.get("tokens_evaluated").and_then(Value::as_u64),
        tokens_out: obj.get("tokens_predicted").and_then(Value::as_u64),
        first_token: None,
        cut: cut_at_limit(&obj).then_some(Cut::TokenLimit),
        prompt_read: PromptRead::of(&obj),
    })
}

/// Whether llama-server's last object says the answer stopped at a limit: `stop_type`
/// `limit` (n_predict reached) or `truncated` (the context filled up first).
fn cut_at_limit(obj: &Value) -> bool {
    obj.get("stop_type").and_then(Value::as_str) == Some("limit")
        || obj.get("truncated").and_then(Value::as_bool) == Some(true)
}
