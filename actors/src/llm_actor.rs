//! LlmActor: chat completions from any OpenAI-compatible endpoint through `async-openai`
//! (base URL, model and key from the settings and the environment). Requests run concurrently
//! up to a cap, each under a timeout; 429 and 5xx answers are retried with exponential backoff
//! by the client until the timeout is spent.

use crate::messages::{Complete, LlmError, Reply, Usage};
use actix::prelude::*;
use async_openai::config::OpenAIConfig;
use async_openai::error::OpenAIError;
use async_openai::types::{
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequestArgs,
};
use async_openai::Client;
use ists::config::LlmSettings;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

pub struct LlmActor {
    client: Client<OpenAIConfig>,
    settings: LlmSettings,
    permits: Arc<Semaphore>,
}

impl LlmActor {
    /// Reads the key from the environment variable named in the settings (absent is fine for
    /// local servers that need none).
    pub fn new(settings: LlmSettings) -> LlmActor {
        let key = std::env::var(&settings.key_env).unwrap_or_default();
        let config = OpenAIConfig::new()
            .with_api_base(settings.base_url.trim_end_matches('/'))
            .with_api_key(key);
        let timeout = Duration::from_secs_f64(settings.timeout_secs);
        let backoff = backoff::ExponentialBackoffBuilder::new()
            .with_initial_interval(Duration::from_millis(200))
            .with_max_elapsed_time(Some(timeout))
            .build();
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .build()
            .unwrap_or_default();
        let client = Client::with_config(config)
            .with_backoff(backoff)
            .with_http_client(http);
        let permits = Arc::new(Semaphore::new(settings.max_concurrent.max(1)));
        LlmActor {
            client,
            settings,
            permits,
        }
    }
}

impl Actor for LlmActor {
    type Context = Context<Self>;
}

fn to_openai(
    m: &crate::messages::ChatMessage,
) -> Result<ChatCompletionRequestMessage, OpenAIError> {
    Ok(match m.role.as_str() {
        "system" => ChatCompletionRequestSystemMessageArgs::default()
            .content(m.content.clone())
            .build()?
            .into(),
        "assistant" => ChatCompletionRequestAssistantMessageArgs::default()
            .content(m.content.clone())
            .build()?
            .into(),
        _ => ChatCompletionRequestUserMessageArgs::default()
            .content(m.content.clone())
            .build()?
            .into(),
    })
}

fn classify(e: OpenAIError) -> LlmError {
    match e {
        OpenAIError::Reqwest(r) if r.is_timeout() => LlmError::Timeout(0.0),
        OpenAIError::Reqwest(r) => LlmError::Connection(r.to_string()),
        OpenAIError::ApiError(a) => LlmError::Server(a.message),
        other => LlmError::Server(other.to_string()),
    }
}

impl Handler<Complete> for LlmActor {
    type Result = ResponseFuture<Result<Reply, LlmError>>;
    fn handle(&mut self, msg: Complete, _: &mut Context<Self>) -> Self::Result {
        let client = self.client.clone();
        let s = self.settings.clone();
        let permits = self.permits.clone();
        Box::pin(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| LlmError::Connection(e.to_string()))?;
            let messages = msg
                .0
                .messages
                .iter()
                .map(to_openai)
                .collect::<Result<Vec<_>, _>>()
                .map_err(classify)?;
            let request = CreateChatCompletionRequestArgs::default()
                .model(s.model.clone())
                .messages(messages)
                .temperature(s.temperature)
                .max_tokens(s.max_tokens)
                .build()
                .map_err(classify)?;
            let t0 = Instant::now();
            let chat = client.chat();
            let fut = chat.create(request);
            let resp =
                match tokio::time::timeout(Duration::from_secs_f64(s.timeout_secs), fut).await {
                    Err(_) => return Err(LlmError::Timeout(s.timeout_secs)),
                    Ok(r) => r.map_err(|e| match classify(e) {
                        LlmError::Timeout(_) => LlmError::Timeout(t0.elapsed().as_secs_f64()),
                        other => other,
                    })?,
                };
            let text = resp
                .choices
                .first()
                .and_then(|c| c.message.content.clone())
                .ok_or(LlmError::NoContent)?;
            let usage = resp
                .usage
                .map(|u| Usage {
                    prompt_tokens: u.prompt_tokens as u64,
                    completion_tokens: u.completion_tokens as u64,
                    cached_tokens: u
                        .prompt_tokens_details
                        .and_then(|d| d.cached_tokens)
                        .unwrap_or(0) as u64,
                })
                .unwrap_or_default();
            Ok(Reply {
                text,
                usage,
                latency_secs: t0.elapsed().as_secs_f64(),
            })
        })
    }
}
