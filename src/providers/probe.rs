//! Probes for `pilotfish check`: which models a server says it has.

use std::time::Duration;

use serde_json::Value;

use super::{ProviderError, check_status, join, read_body, send, transport_error, with_key};
use crate::config::{ModelConfig, Provider};

impl super::Providers {
    /// The model names the server lists (Ollama `/api/tags`, OpenAI-compatible `/models`);
    /// `None` where the API has no such list (llama.cpp serves one model, Anthropic's list
    /// needs a key and is not worth a call, an OpenAI-compatible server may answer 404).
    pub async fn list_models(
        &self,
        model: &ModelConfig,
    ) -> Result<Option<Vec<String>>, ProviderError> {
        let (url, field) = match model.provider {
            Provider::Ollama => (join(&model.url, "api/tags"), "models"),
            Provider::Openai => (join(&model.url, "models"), "data"),
            Provider::Llamacpp | Provider::Anthropic => return Ok(None),
        };
        let request = self
            .http
            .get(&url)
            .timeout(Duration::from_millis(model.timeout_ms.min(5_000)));
        let response = send(with_key(request, model))
            .await
            .map_err(|e| transport_error(&url, model, e))?;
        let response = match check_status(&url, response).await {
            Ok(response) => response,
            Err(e) if lists_no_models(model, &e) => return Ok(None),
            Err(e) => return Err(e.without_key(model)),
        };
        let body = read_body(&url, model, response).await?;
        let parsed: Value = serde_json::from_str(&body).map_err(|e| ProviderError::Malformed {
            url: url.clone(),
            detail: format!("not JSON: {e}"),
        })?;
        let names = parsed
            .get(field)
            .and_then(Value::as_array)
            .map(|items| {
                items
                    .iter()
                    .filter_map(|m| {
                        m.get("name")
                            .or_else(|| m.get("id"))
                            .or_else(|| m.get("model"))
                    })
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Some(names))
    }
}

/// Whether `error`, from `model`'s model list, only says that the server keeps none: an
/// OpenAI-compatible server need not serve `/models` (Mistral's Codestral endpoint), and one
/// that answers 404 there is up.
pub(super) fn lists_no_models(model: &ModelConfig, error: &ProviderError) -> bool {
    model.provider == Provider::Openai && matches!(error, ProviderError::Status { status: 404, .. })
}

/// Whether `wanted` is among `listed`, allowing Ollama's implicit `:latest` tag.
pub fn model_listed(listed: &[String], wanted: &str) -> bool {
    listed.iter().any(|name| {
        name == wanted
            || name.strip_suffix(":latest") == Some(wanted)
            || wanted.strip_suffix(":latest") == Some(name.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listed_names() {
        let listed = vec![
            "qwen2.5-coder:1.5b".to_string(),
            "llama3:latest".to_string(),
        ];
        assert!(model_listed(&listed, "qwen2.5-coder:1.5b"));
        assert!(model_listed(&listed, "llama3"));
        assert!(!model_listed(&listed, "qwen2.5-coder:7b"));
    }
}
