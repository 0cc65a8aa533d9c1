//! LlmActor: chat completions from any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama, a
//! llama.cpp server, the bundled local model). Requests are built and replies decoded with
//! `async-openai`'s typed protocol (with a lenient fallback for servers that omit required
//! fields); the transport is plain `reqwest` so that the retry policy is ours: every request
//! runs under a timeout; 429, 5xx, timeouts, connection errors and garbled bodies are retried
//! with exponential backoff and "equal jitter" (a random 0.5-1x of the delay), waiting at
//! least what a `Retry-After` header asks; requests in flight are capped by a semaphore.
//!
//! Replies are constrained as far as the server allows: a strict `json_schema` derived from the
//! search space ([`ists::schema`]) first; if the server refuses it (4xx), `json_object`; then
//! plain text, from which the parser extracts the JSON. The downgrade is remembered for the
//! rest of the search so each later request does not pay for the refusal again.

use crate::capped::{read_capped, response_chunks, Capped};
use crate::messages::{ChatMessage, Complete, LlmError, Purpose, Reply, Role, Usage};
use actix::prelude::*;
use async_openai::error::OpenAIError;
use async_openai::types::{
    ChatCompletionRequestAssistantMessageArgs, ChatCompletionRequestMessage,
    ChatCompletionRequestSystemMessageArgs, ChatCompletionRequestUserMessageArgs,
    CreateChatCompletionRequest, CreateChatCompletionRequestArgs, CreateChatCompletionResponse,
    ResponseFormat as OpenAiFormat,
};
use ists::config::{LlmSettings, ResponseFormat};
use ists::space::{ArchSpec, HyperSpace, SpaceKind};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Semaphore;

/// The most tokens one reply is counted for, whatever the server reports.
const MAX_REPLY_TOKENS: u64 = 1 << 32;

/// Response bodies larger than this are refused while reading (a runaway or hostile server).
pub const MAX_RESPONSE_BYTES: usize = 8 * 1024 * 1024;

/// The longest wait a `Retry-After` header can impose; longer asks are cut to this.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Format levels, in fallback order.
const SCHEMA: u8 = 0;
const OBJECT: u8 = 1;
const TEXT: u8 = 2;

pub struct LlmActor {
    http: reqwest::Client,
    settings: Arc<LlmSettings>,
    space: SpaceKind,
    /// The joint space's choices (resolved): they shape the schemas' `hyper` object.
    hyper: HyperSpace,
    key: Option<String>,
    permits: Arc<Semaphore>,
    /// The current format level, shared by all requests (downgrades are sticky).
    level: Arc<AtomicU8>,
    /// Whether chain-of-thought schemas still rule out designs: cleared (for good) when the
    /// server refuses such a schema, whose root is a choice between alternatives that some
    /// strict dialects do not accept; the plain schema is then used.
    exclusion: Arc<AtomicBool>,
}

impl LlmActor {
    /// Reads the key from the environment variable named in the settings (absent is fine for
    /// local servers that need none). `space` shapes the JSON schema of the replies.
    pub fn new(settings: LlmSettings, space: SpaceKind) -> LlmActor {
        let key = std::env::var(&settings.key_env)
            .ok()
            .filter(|k| !k.is_empty());
        // The timeout is applied per attempt around the whole exchange (see `attempt`); the
        // connect timeout only makes an unreachable host fail fast.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs_f64(settings.timeout_secs.min(10.0)))
            .build()
            .unwrap_or_default();
        let level = match settings.response_format {
            ResponseFormat::Auto | ResponseFormat::JsonSchema => SCHEMA,
            ResponseFormat::JsonObject => OBJECT,
            ResponseFormat::Text => TEXT,
        };
        LlmActor {
            http,
            permits: Arc::new(Semaphore::new(settings.max_concurrent.max(1))),
            settings: Arc::new(settings),
            space,
            hyper: HyperSpace::default(),
            key,
            level: Arc::new(AtomicU8::new(level)),
            exclusion: Arc::new(AtomicBool::new(true)),
        }
    }

    /// The joint space's choices (resolved), for the reply schemas; the default asks for no
    /// hyperparameters.
    pub fn with_hyper(mut self, hyper: HyperSpace) -> LlmActor {
        self.hyper = hyper;
        self
    }
}

impl Actor for LlmActor {
    type Context = Context<Self>;
}

/// The `response_format` field for a level and a request's hints; a chain-of-thought schema
/// rules out the empty design and those in `excluded`.
fn response_format(
    level: u8,
    space: SpaceKind,
    hyper: &HyperSpace,
    purpose: &Purpose,
    excluded: &[ArchSpec],
) -> Option<Value> {
    use ists::schema::with_hyper;
    match level {
        SCHEMA => {
            let (name, schema) = match purpose {
                // Reasoning fields before each decision: the thought is written, then the edges.
                Purpose::Cot => (
                    "architecture_steps",
                    ists::schema::cot_schema_excluding(space, hyper, excluded),
                ),
                Purpose::TotStep {
                    node, alternatives, ..
                } => (
                    "step_alternatives",
                    with_hyper(
                        ists::schema::alternatives_schema(space, *node, (*alternatives).max(1)),
                        hyper,
                        Some(*node),
                    ),
                ),
                Purpose::TotValue { partials, .. } => {
                    ("partial_values", ists::schema::value_schema(partials.len()))
                }
            };
            Some(json!({"type": "json_schema",
                        "json_schema": {"name": name, "strict": true, "schema": schema}}))
        }
        OBJECT => Some(json!({"type": "json_object"})),
        _ => None,
    }
}

/// The settings of one request: sibling requests (other beam entries of a tree-of-thought
/// depth) sample a little hotter, repairs too, and a configured seed is offset by the request id,
/// so that identical prompts do not collapse into one answer.
fn per_request(s: &LlmSettings, hints: &crate::messages::Hints) -> LlmSettings {
    let mut s = s.clone();
    let bump = 0.1 * hints.branch.min(5) as f32 + if hints.repair.is_some() { 0.4 } else { 0.0 };
    if bump > 0.0 {
        s.temperature = (s.temperature + bump).min(1.5);
    }
    s.seed = s.seed.map(|x| x.wrapping_add(hints.request_id));
    s
}

/// What one attempt ended with.
enum Attempt {
    Done(Reply),
    /// Worth retrying after a delay (at least `after`, if the server said so).
    Retry {
        kind: &'static str,
        err: LlmError,
        after: Option<Duration>,
    },
    /// The server refused the request as malformed: maybe the response format.
    Refused(LlmError),
    Fatal(LlmError),
}

/// Parses `Retry-After`: delta-seconds or an HTTP date.
pub fn retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs).min(MAX_RETRY_AFTER));
    }
    let when = httpdate::parse_http_date(v).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or_default()
            .min(MAX_RETRY_AFTER),
    )
}

/// Backoff before retry `n` (0-based) with the settings' base and cap ([`crate::retry`]).
pub fn backoff(s: &LlmSettings, n: usize, after: Option<Duration>) -> Duration {
    let secs = |v: f64| Duration::from_secs_f64(v.max(0.0));
    crate::retry::backoff(secs(s.retry_base_secs), secs(s.retry_max_secs), n, after)
}

fn error_message(body: &[u8]) -> String {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let msg = v
        .as_ref()
        .and_then(|v| v["error"]["message"].as_str().or(v["error"].as_str()))
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(300).collect());
    msg.trim().to_string()
}

/// Reads a body up to [`MAX_RESPONSE_BYTES`].
async fn read_limited(resp: reqwest::Response) -> Result<Vec<u8>, LlmError> {
    read_capped(response_chunks(resp), MAX_RESPONSE_BYTES)
        .await
        .map_err(|e| match e {
            Capped::TooLarge => LlmError::TooLarge(MAX_RESPONSE_BYTES),
            Capped::Read(e) => LlmError::Connection(e.to_string()),
        })
}

fn parse_completion(body: &[u8]) -> Result<(String, Usage), LlmError> {
    // The typed response first; servers that leave out fields the OpenAI schema requires
    // (id, created, ...) still work through the untyped reading below.
    if let Ok(r) = serde_json::from_slice::<CreateChatCompletionResponse>(body) {
        let text = r
            .choices
            .first()
            .and_then(|c| c.message.content.clone())
            .filter(|t| !t.trim().is_empty())
            .ok_or(LlmError::NoContent)?;
        let usage = r
            .usage
            .map(|u| Usage {
                prompt_tokens: u64::from(u.prompt_tokens).min(MAX_REPLY_TOKENS),
                completion_tokens: u64::from(u.completion_tokens).min(MAX_REPLY_TOKENS),
                cached_tokens: u
                    .prompt_tokens_details
                    .and_then(|d| d.cached_tokens)
                    .unwrap_or(0) as u64,
            })
            .unwrap_or_default();
        return Ok((text, usage));
    }
    let v: Value =
        serde_json::from_slice(body).map_err(|e| LlmError::BadResponse(e.to_string()))?;
    let choice = v["choices"]
        .get(0)
        .ok_or_else(|| LlmError::BadResponse("no choices".into()))?;
    let text = choice["message"]["content"]
        .as_str()
        .filter(|t| !t.trim().is_empty())
        .ok_or(LlmError::NoContent)?
        .to_string();
    let u = &v["usage"];
    // A count above 2^32 is no real reply's: capped, so a hostile server cannot make the
    // totals (sums over a whole search, in u64 and SQLite's i64) wrap.
    let n = |x: &Value| x.as_u64().unwrap_or(0).min(MAX_REPLY_TOKENS);
    let usage = Usage {
        prompt_tokens: n(&u["prompt_tokens"]),
        completion_tokens: n(&u["completion_tokens"]),
        cached_tokens: n(&u["prompt_tokens_details"]["cached_tokens"]),
    };
    Ok((text, usage))
}

async fn attempt(
    http: &reqwest::Client,
    s: &LlmSettings,
    key: Option<&str>,
    body: Vec<u8>,
) -> Attempt {
    let url = format!("{}/chat/completions", s.base_url.trim_end_matches('/'));
    let mut req = http
        .post(url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body);
    if let Some(k) = key {
        req = req.bearer_auth(k);
    }
    let exchange = async {
        let resp = req.send().await?;
        let status = resp.status();
        let after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(retry_after);
        Ok::<_, reqwest::Error>((status, after, read_limited(resp).await))
    };
    let timeout = Duration::from_secs_f64(s.timeout_secs);
    let (status, after, body) = match tokio::time::timeout(timeout, exchange).await {
        Err(_) => {
            return Attempt::Retry {
                kind: "timeout",
                err: LlmError::Timeout(s.timeout_secs),
                after: None,
            }
        }
        Ok(Err(e)) => {
            return Attempt::Retry {
                kind: "connection",
                err: LlmError::Connection(e.to_string()),
                after: None,
            }
        }
        Ok(Ok(r)) => r,
    };
    let body = match body {
        Ok(b) => b,
        Err(e @ LlmError::TooLarge(_)) => return Attempt::Fatal(e),
        Err(e) => {
            return Attempt::Retry {
                kind: "connection",
                err: e,
                after: None,
            }
        }
    };
    if status.as_u16() == 429 {
        return Attempt::Retry {
            kind: "rate_limited",
            err: LlmError::RateLimited(error_message(&body)),
            after,
        };
    }
    if status.is_server_error() {
        return Attempt::Retry {
            kind: "server_error",
            err: LlmError::Server(format!("{status}: {}", error_message(&body))),
            after,
        };
    }
    if status.is_client_error() {
        return Attempt::Refused(LlmError::Refused {
            status: status.as_u16(),
            message: error_message(&body),
        });
    }
    match parse_completion(&body) {
        Ok((text, usage)) => Attempt::Done(Reply {
            text,
            usage,
            latency_secs: 0.0,
            retries: Vec::new(),
        }),
        // A cut or garbled body is a transport fault (a proxy dropped the end): retry.
        Err(err @ LlmError::BadResponse(_)) => Attempt::Retry {
            kind: "bad_response",
            err,
            after: None,
        },
        Err(err) => Attempt::Fatal(err),
    }
}

/// The request as `async-openai`'s typed request.
#[allow(deprecated)] // `max_tokens`: the field local servers (llama.cpp, vLLM) read.
fn typed_request(
    s: &LlmSettings,
    messages: &[ChatMessage],
    format: Option<Value>,
) -> Result<CreateChatCompletionRequest, String> {
    let msgs = messages
        .iter()
        .map(|m| -> Result<ChatCompletionRequestMessage, OpenAIError> {
            Ok(match m.role {
                Role::System => ChatCompletionRequestSystemMessageArgs::default()
                    .content(m.content.clone())
                    .build()?
                    .into(),
                Role::Assistant => ChatCompletionRequestAssistantMessageArgs::default()
                    .content(m.content.clone())
                    .build()?
                    .into(),
                Role::User => ChatCompletionRequestUserMessageArgs::default()
                    .content(m.content.clone())
                    .build()?
                    .into(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    let mut b = CreateChatCompletionRequestArgs::default();
    b.model(s.model.clone())
        .messages(msgs)
        .temperature(s.temperature)
        .max_tokens(s.max_tokens);
    if let Some(f) = format {
        let rf: OpenAiFormat = serde_json::from_value(f).map_err(|e| e.to_string())?;
        b.response_format(rf);
    }
    if let Some(seed) = s.seed {
        b.seed(seed as i64);
    }
    b.build().map_err(|e| e.to_string())
}

/// The request body, built once through `async-openai`'s typed request (the one request path).
fn request_body(
    s: &LlmSettings,
    messages: &[ChatMessage],
    format: Option<Value>,
) -> Result<Vec<u8>, LlmError> {
    let req = typed_request(s, messages, format).map_err(LlmError::BadRequest)?;
    serde_json::to_vec(&req).map_err(|e| LlmError::BadRequest(e.to_string()))
}

impl Handler<Complete> for LlmActor {
    type Result = ResponseFuture<Result<Reply, LlmError>>;
    fn handle(&mut self, msg: Complete, _: &mut Context<Self>) -> Self::Result {
        let http = self.http.clone();
        let s = per_request(&self.settings, &msg.0.hints);
        let key = self.key.clone();
        let permits = self.permits.clone();
        let level = self.level.clone();
        let exclusion = self.exclusion.clone();
        let space = self.space;
        let hyper = self.hyper.clone();
        Box::pin(async move {
            let _permit = permits
                .acquire_owned()
                .await
                .map_err(|e| LlmError::Connection(e.to_string()))?;
            let t0 = Instant::now();
            let mut retries = Vec::new();
            let mut failures = 0usize;
            loop {
                let lvl = level.load(Ordering::SeqCst);
                let hints = &msg.0.hints;
                let excluding = exclusion.load(Ordering::SeqCst)
                    && matches!(hints.purpose, Purpose::Cot)
                    && lvl == SCHEMA;
                let excluded = match excluding {
                    true => &hints.avoid[..hints.avoid.len().min(s.exclude_designs)],
                    false => &[],
                };
                let format = response_format(lvl, space, &hyper, &hints.purpose, excluded);
                let body = request_body(&s, &msg.0.messages, format)?;
                match attempt(&http, &s, key.as_deref(), body).await {
                    Attempt::Done(mut reply) => {
                        reply.latency_secs = t0.elapsed().as_secs_f64();
                        reply.retries = retries;
                        return Ok(reply);
                    }
                    Attempt::Retry { kind, err, after } => {
                        if failures >= s.max_retries {
                            return Err(err);
                        }
                        let wait = backoff(&s, failures, after);
                        tracing::warn!("llm: {err}; retry {} in {wait:.1?}", failures + 1);
                        failures += 1;
                        retries.push(kind.to_string());
                        tokio::time::sleep(wait).await;
                    }
                    Attempt::Refused(err) if !excluded.is_empty() => {
                        // The schema with exclusions first gives way to the plain one.
                        exclusion.store(false, Ordering::SeqCst);
                        tracing::warn!("llm: {err}; asking without ruling out shown designs");
                        retries.push("exclusion_fallback".to_string());
                    }
                    Attempt::Refused(err) => {
                        // Only `auto` falls back; an explicit format is the user's choice.
                        if s.response_format != ResponseFormat::Auto || lvl >= TEXT {
                            return Err(err);
                        }
                        // Another request may have downgraded already: never go back up.
                        let _ = level.compare_exchange(
                            lvl,
                            lvl + 1,
                            Ordering::SeqCst,
                            Ordering::SeqCst,
                        );
                        tracing::warn!("llm: {err}; falling back to a weaker response format");
                        retries.push("format_fallback".to_string());
                    }
                    Attempt::Fatal(err) => return Err(err),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_dates_and_caps_them() {
        assert_eq!(retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(retry_after("0.5"), Some(Duration::from_millis(500)));
        assert_eq!(retry_after("100000"), Some(MAX_RETRY_AFTER));
        assert_eq!(retry_after("-1"), None);
        assert_eq!(retry_after("soon"), None);
        let later = SystemTime::now() + Duration::from_secs(30);
        let d = retry_after(&httpdate::fmt_http_date(later)).unwrap();
        assert!(
            d > Duration::from_secs(27) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        let past = httpdate::fmt_http_date(SystemTime::now() - Duration::from_secs(30));
        assert_eq!(retry_after(&past), Some(Duration::ZERO));
    }

    #[test]
    fn backoff_uses_the_settings_base_and_cap() {
        let s = LlmSettings {
            retry_base_secs: 1.0,
            retry_max_secs: 5.0,
            ..LlmSettings::default()
        };
        for _ in 0..20 {
            let d0 = backoff(&s, 0, None).as_secs_f64();
            assert!((0.5..=1.0).contains(&d0), "{d0}");
            let d9 = backoff(&s, 9, None).as_secs_f64();
            assert!((2.5..=5.0).contains(&d9), "{d9}");
        }
    }

    /// A hostile server reports counts near u64::MAX: each reply is capped and the sums of a
    /// long search saturate instead of wrapping to small numbers.
    #[test]
    fn hostile_token_counts_are_capped_and_never_wrap() {
        let body = br#"{"choices":[{"message":{"content":"{}"}}],
            "usage":{"prompt_tokens":18446744073709551615,"completion_tokens":18446744073709551614}}"#;
        let (_, u) = parse_completion(body).unwrap();
        assert_eq!(u.prompt_tokens, MAX_REPLY_TOKENS);
        let mut total = Usage::default();
        for _ in 0..10 {
            total += u;
        }
        assert_eq!(total.prompt_tokens, 10 * MAX_REPLY_TOKENS);
        let mut big = Usage {
            prompt_tokens: u64::MAX - 1,
            completion_tokens: u64::MAX,
            cached_tokens: 0,
        };
        big += u;
        assert_eq!(
            (big.prompt_tokens, big.completion_tokens),
            (u64::MAX, u64::MAX)
        );
    }

    #[test]
    fn completions_are_parsed_with_cached_tokens() {
        let body = br#"{"choices":[{"message":{"content":"{}"}}],
            "usage":{"prompt_tokens":10,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}"#;
        let (text, u) = parse_completion(body).unwrap();
        assert_eq!(text, "{}");
        assert_eq!(
            (u.prompt_tokens, u.completion_tokens, u.cached_tokens),
            (10, 3, 4)
        );
        assert_eq!(
            parse_completion(br#"{"choices":[{"message":{"content":""}}]}"#).unwrap_err(),
            LlmError::NoContent
        );
        assert!(matches!(
            parse_completion(br#"{"choices":[{"message":{"content":"x"#),
            Err(LlmError::BadResponse(_))
        ));
    }
}
