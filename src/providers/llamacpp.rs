//! llama.cpp's server: `POST {url}/infill` with `input_prefix`/`input_suffix` and the other
//! files' context in `input_extra`, the server applying the model's own FIM tokens (and,
//! for models trained on repositories, its file-separator tokens); `t_max_predict_ms`
//! bounds generation time.

use serde_json::{Value, json};

use super::{Cut, FimCall, ModelAnswer, ProviderError, join, post_json};
use crate::config::ModelConfig;

pub(super) async fn fim(
    http: &reqwest::Client,
    model: &ModelConfig,
    call: FimCall<'_>,
) -> Result<ModelAnswer, ProviderError> {
    let url = join(&model.url, "infill");
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
        "stream": false,
    });
    if let Some(budget) = call.time_budget {
        body["t_max_predict_ms"] = json!(budget.as_millis() as u64);
    }
    let text = post_json(http, model, &url, &body).await?;
    let obj: Value = serde_json::from_str(&text).map_err(|e| ProviderError::Malformed {
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
        // `limit`: n_predict reached; `truncated`: the context filled up first.
        cut: (obj.get("stop_type").and_then(Value::as_str) == Some("limit")
            || obj.get("truncated").and_then(Value::as_bool) == Some(true))
        .then_some(Cut::TokenLimit),
    })
}
