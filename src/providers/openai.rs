//! OpenAI-compatible servers (llama.cpp, vLLM, LM Studio, OpenRouter, …): `POST
//! {url}/completions` with `prompt` (+ `suffix` for native FIM).

use serde_json::{Value, json};

use super::{
    FimCall, ModelAnswer, ProviderError, check_status, join, read_body, sse_data, stops_for_api,
    transport_error, with_key,
};
use crate::config::ModelConfig;

pub(super) async fn fim(
    http: &reqwest::Client,
    model: &ModelConfig,
    call: FimCall<'_>,
) -> Result<ModelAnswer, ProviderError> {
    let url = join(&model.url, "completions");
    let mut body = json!({
        "model": model.model,
        "prompt": call.prompt.prompt,
        "max_tokens": call.max_tokens,
        "temperature": 0.0,
        "stream": false,
        "stop": stops_for_api(&call.prompt.stop, 4),
    });
    if let Some(suffix) = &call.prompt.suffix {
        body["suffix"] = json!(suffix);
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
    parse_completion(&text).map_err(|detail| ProviderError::Malformed { url, detail })
}

/// Reads a `/completions` answer: one JSON object, or (some servers stream regardless) SSE.
fn parse_completion(body: &str) -> Result<ModelAnswer, String> {
    let trimmed = body.trim_start();
    let objects: Vec<Value> = if trimmed.starts_with("data:") {
        sse_data(body)
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad SSE event: {e}"))?
    } else {
        vec![serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?]
    };
    let mut answer = ModelAnswer::default();
    let mut saw_choice = false;
    for obj in &objects {
        if let Some(choice) = obj.get("choices").and_then(|c| c.get(0)) {
            let text = choice
                .get("text")
                .and_then(Value::as_str)
                .ok_or("a choice without `text`")?;
            answer.text.push_str(text);
            saw_choice = true;
        }
        if let Some(usage) = obj.get("usage").filter(|u| u.is_object()) {
            answer.tokens_in = usage.get("prompt_tokens").and_then(Value::as_u64);
            answer.tokens_out = usage.get("completion_tokens").and_then(Value::as_u64);
        }
    }
    if !saw_choice {
        return Err("no `choices` in the answer".into());
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_json_sse_and_rejects_garbage() {
        let json = r#"{"choices":[{"text":"x + 1","index":0}],"usage":{"prompt_tokens":12,"completion_tokens":3}}"#;
        assert_eq!(
            parse_completion(json),
            Ok(ModelAnswer {
                text: "x + 1".into(),
                tokens_in: Some(12),
                tokens_out: Some(3)
            })
        );
        let sse = "data: {\"choices\":[{\"text\":\"a\"}]}\n\ndata: {\"choices\":[{\"text\":\"b\"}]}\n\ndata: [DONE]\n\n";
        assert_eq!(parse_completion(sse).unwrap().text, "ab");
        assert!(parse_completion("<html>oops</html>").is_err());
        assert!(parse_completion(r#"{"object":"error"}"#).is_err());
        assert!(parse_completion(r#"{"choices":[{"index":0}]}"#).is_err());
    }
}
