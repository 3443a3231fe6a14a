//! Ollama: `POST {url}/api/generate` with `suffix` (native FIM) or `raw` (a rendered
//! template). Asks for one JSON object, and reads NDJSON too (a stream of partial answers).

use serde_json::{Value, json};

use super::{
    FimCall, ModelAnswer, ProviderError, check_status, join, one_line, read_body, transport_error,
    with_key,
};
use crate::config::ModelConfig;

pub(super) async fn fim(
    http: &reqwest::Client,
    model: &ModelConfig,
    call: FimCall<'_>,
) -> Result<ModelAnswer, ProviderError> {
    let url = join(&model.url, "api/generate");
    let mut body = json!({
        "model": model.model,
        "prompt": call.prompt.prompt,
        "stream": false,
        "keep_alive": "30m",
        "options": {
            "num_predict": call.max_tokens,
            "temperature": 0.0,
            "stop": call.prompt.stop,
        },
    });
    match &call.prompt.suffix {
        Some(suffix) => body["suffix"] = json!(suffix),
        None => body["raw"] = json!(true),
    }
    let request = http
        .post(&url)
        .timeout(std::time::Duration::from_millis(model.timeout_ms))
        .json(&body);
    let response = with_key(request, model)
        .send()
        .await
        .map_err(|e| transport_error(&url, model, e))?;
    let response = check_status(&url, response).await?;
    let text = read_body(&url, model, response).await?;
    parse_generate(&text).map_err(|detail| ProviderError::Malformed { url, detail })
}

/// Reads `/api/generate`: one object, or NDJSON lines each carrying part of `response`;
/// the last one (`done: true`) carries the token counts. An `error` line is an error.
fn parse_generate(body: &str) -> Result<ModelAnswer, String> {
    let mut answer = ModelAnswer::default();
    let mut saw_response = false;
    for line in body.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let obj: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        if let Some(error) = obj.get("error") {
            return Err(format!(
                "model error: {}",
                one_line(
                    &error
                        .as_str()
                        .map(String::from)
                        .unwrap_or_else(|| error.to_string())
                )
            ));
        }
        if let Some(part) = obj.get("response").and_then(Value::as_str) {
            answer.text.push_str(part);
            saw_response = true;
        }
        if obj.get("done").and_then(Value::as_bool) == Some(true) {
            answer.tokens_in = obj.get("prompt_eval_count").and_then(Value::as_u64);
            answer.tokens_out = obj.get("eval_count").and_then(Value::as_u64);
        }
    }
    if !saw_response {
        return Err("no `response` in the answer".into());
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_single_object_ndjson_and_errors() {
        let one =
            r#"{"model":"m","response":"foo()","done":true,"prompt_eval_count":30,"eval_count":4}"#;
        assert_eq!(
            parse_generate(one),
            Ok(ModelAnswer {
                text: "foo()".into(),
                tokens_in: Some(30),
                tokens_out: Some(4)
            })
        );
        let ndjson = "{\"response\":\"fo\",\"done\":false}\n{\"response\":\"o\",\"done\":false}\n{\"response\":\"\",\"done\":true,\"eval_count\":2}\n";
        let a = parse_generate(ndjson).unwrap();
        assert_eq!((a.text.as_str(), a.tokens_out), ("foo", Some(2)));
        assert!(
            parse_generate(r#"{"error":"model \"x\" not found"}"#)
                .unwrap_err()
                .contains("not found")
        );
        assert!(parse_generate("garbage").is_err());
        assert!(parse_generate("").is_err());
    }
}
