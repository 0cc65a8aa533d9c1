//! RayEvaluator: evaluates each candidate as a Ray job through the Ray Jobs REST API. The job
//! runs this very binary (`ists eval ...`), which prints one `ISTS_RESULT {json}` line; the
//! actor polls the job and reads that line from its logs.
//!
//! Submission ids are deterministic (`ists-<search>-c<candidate>-a<attempt>`), so after a lost
//! connection or a restarted head the state is rebuilt by asking the head for those ids: a
//! job that succeeded is read back (never run again), one still running is awaited, one the
//! head forgot (history does not survive a head restart) is submitted again under the same
//! id, and a job that failed is recorded with its log tail. A duplicate submission id makes
//! Ray answer 500, which is why the actor always looks before it submits.

use crate::messages::{EvalOutcome, Evaluate};
use actix::prelude::*;
use ists::config::RaySettings;
use ists::train::{EvalStatus, ProxyReport};
use serde_json::{json, Value};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// The marker of the result line an `ists eval` job prints.
pub const RESULT_MARKER: &str = "ISTS_RESULT ";

/// Attempts (new submission ids) per candidate when a job fails for infrastructure reasons.
const MAX_ATTEMPTS: usize = 3;

/// Lower-case hex, for passing JSON through a shell command line unharmed.
pub fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Inverse of [`to_hex`].
pub fn from_hex(s: &str) -> Result<Vec<u8>, String> {
    if s.len() % 2 != 0 {
        return Err("hex text of odd length".into());
    }
    // On bytes, not `str` slices: a slice through a multi-byte character would panic.
    let digit = |i: usize, b: u8| match b {
        b'0'..=b'9' => Ok(b - b'0'),
        b'a'..=b'f' => Ok(b - b'a' + 10),
        b'A'..=b'F' => Ok(b - b'A' + 10),
        _ => Err(format!("bad hex at {i}: byte 0x{b:02x} is not a hex digit")),
    };
    s.as_bytes()
        .chunks_exact(2)
        .enumerate()
        .map(|(k, pair)| Ok(digit(2 * k, pair[0])? << 4 | digit(2 * k + 1, pair[1])?))
        .collect()
}

pub struct RayEvaluator {
    http: reqwest::Client,
    settings: RaySettings,
    /// Identifies the search in submission ids and job metadata.
    search: String,
    /// The search's settings as JSON (passed to every job).
    settings_json: String,
    binary: PathBuf,
    data_dir: PathBuf,
    permits: Arc<Semaphore>,
}

/// Ray job states we act on.
#[derive(Debug, Clone, PartialEq)]
enum JobState {
    Missing,
    Active,
    Succeeded,
    Failed(String),
}

impl RayEvaluator {
    pub fn new(
        settings: RaySettings,
        search: &str,
        search_settings: &ists::config::Settings,
    ) -> Result<RayEvaluator, String> {
        let binary = match &settings.binary {
            Some(b) => b.clone(),
            None => std::env::current_exe().map_err(|e| format!("locating this binary: {e}"))?,
        };
        let data_dir = match &settings.data_dir {
            Some(d) => d.clone(),
            None => std::path::absolute(&search_settings.data_dir)
                .map_err(|e| format!("evaluators.ray.data_dir: {e}"))?,
        };
        let search: String = search
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        Ok(RayEvaluator {
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(|e| e.to_string())?,
            permits: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            settings_json: serde_json::to_string(search_settings).map_err(|e| e.to_string())?,
            settings,
            search,
            binary,
            data_dir,
        })
    }
}

impl Actor for RayEvaluator {
    type Context = Context<Self>;
}

/// The part of the actor a job needs, cloned into its future.
#[derive(Clone)]
struct Job {
    http: reqwest::Client,
    base: String,
    settings: RaySettings,
    search: String,
    settings_json: String,
    binary: PathBuf,
    data_dir: PathBuf,
}

impl Job {
    /// The job id of one attempt; a promotion (more steps) is another job of the candidate.
    fn id(&self, candidate: usize, steps: Option<usize>, attempt: usize) -> String {
        match steps {
            None => format!("ists-{}-c{candidate}-a{attempt}", self.search),
            Some(n) => format!("ists-{}-c{candidate}-s{n}-a{attempt}", self.search),
        }
    }

    /// Runs `f` until it succeeds or the head stayed unreachable for `reconnect_secs`.
    async fn retrying<T, F, Fut>(&self, what: &str, mut f: F) -> Result<T, String>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, reqwest::Error>>,
    {
        let deadline = Instant::now() + Duration::from_secs_f64(self.settings.reconnect_secs);
        let (base, max) = (Duration::from_millis(200), Duration::from_secs(5));
        let mut n = 0;
        loop {
            match f().await {
                Ok(v) => return Ok(v),
                Err(e) if Instant::now() < deadline => {
                    let wait = crate::retry::backoff(base, max, n, None);
                    n += 1;
                    tracing::warn!("ray head: {what}: {e}; retrying in {wait:?}");
                    tokio::time::sleep(wait).await;
                }
                Err(e) => return Err(format!("ray head unreachable ({what}): {e}")),
            }
        }
    }

    async fn state(&self, id: &str) -> Result<JobState, String> {
        let url = format!("{}/api/jobs/{id}", self.base);
        let (code, body) = self
            .retrying("job status", || async {
                let r = self.http.get(&url).send().await?;
                let code = r.status();
                Ok((code, r.text().await?))
            })
            .await?;
        if code.as_u16() == 404 {
            return Ok(JobState::Missing);
        }
        if !code.is_success() {
            // Ray answers some "not found" cases with 500 and a message.
            if body.contains("does not exist") || body.contains("not found") {
                return Ok(JobState::Missing);
            }
            return Err(format!("GET {url}: HTTP {code}: {}", tail(&body, 300)));
        }
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}"))?;
        Ok(match v["status"].as_str().unwrap_or("") {
            "SUCCEEDED" => JobState::Succeeded,
            "FAILED" | "STOPPED" => {
                JobState::Failed(v["message"].as_str().unwrap_or("").to_string())
            }
            _ => JobState::Active,
        })
    }

    async fn logs(&self, id: &str) -> Result<String, String> {
        let url = format!("{}/api/jobs/{id}/logs", self.base);
        let body = self
            .retrying("job logs", || async {
                self.http.get(&url).send().await?.text().await
            })
            .await?;
        let v: Value = serde_json::from_str(&body).map_err(|e| format!("GET {url}: {e}"))?;
        Ok(v["logs"].as_str().unwrap_or("").to_string())
    }

    async fn submit(
        &self,
        id: &str,
        candidate: usize,
        steps: Option<usize>,
        arch: &str,
    ) -> Result<(), String> {
        let steps = steps.map(|n| format!(" --steps {n}")).unwrap_or_default();
        let entrypoint = format!(
            "{} eval --settings-hex {} --arch-hex {} --candidate {candidate} --data-dir {}{steps}",
            shell_quote(&self.binary.display().to_string()),
            to_hex(self.settings_json.as_bytes()),
            to_hex(arch.as_bytes()),
            shell_quote(&self.data_dir.display().to_string()),
        );
        let body = json!({
            "entrypoint": entrypoint,
            "submission_id": id,
            "entrypoint_num_cpus": self.settings.entrypoint_num_cpus,
            "entrypoint_num_gpus": self.settings.entrypoint_num_gpus,
            "metadata": {"ists_search": self.search, "ists_candidate": candidate.to_string()},
        });
        let url = format!("{}/api/jobs/", self.base);
        let (code, text) = self
            .retrying("submit", || async {
                let r = self.http.post(&url).json(&body).send().await?;
                let code = r.status();
                Ok((code, r.text().await?))
            })
            .await?;
        if code.is_success() {
            return Ok(());
        }
        // A submission whose answer was lost may exist already: that is fine.
        if matches!(
            self.state(id).await?,
            JobState::Active | JobState::Succeeded
        ) {
            return Ok(());
        }
        Err(format!("POST {url}: HTTP {code}: {}", tail(&text, 300)))
    }

    async fn stop(&self, id: &str) {
        let url = format!("{}/api/jobs/{id}/stop", self.base);
        let _ = self.http.post(&url).send().await;
    }

    async fn result(&self, id: &str) -> EvalOutcome {
        match self.logs(id).await {
            Err(e) => failed("ray_logs", e),
            Ok(logs) => match logs
                .lines()
                .rev()
                .find_map(|l| l.strip_prefix(RESULT_MARKER))
            {
                Some(json) => match serde_json::from_str::<ProxyReport>(json.trim()) {
                    Ok(r) => EvalOutcome::Report(r),
                    Err(e) => failed("ray_bad_result", format!("{e}: {}", tail(json, 300))),
                },
                None => failed(
                    "ray_no_result",
                    format!("no result line; log tail: {}", tail(&logs, 800)),
                ),
            },
        }
    }

    async fn evaluate(&self, candidate: usize, steps: Option<usize>, arch: String) -> EvalOutcome {
        let started = Instant::now();
        for attempt in 0..MAX_ATTEMPTS {
            let id = self.id(candidate, steps, attempt);
            let mut state = match self.state(&id).await {
                Ok(s) => s,
                Err(e) => return failed("ray_unreachable", e),
            };
            if state == JobState::Missing {
                if let Err(e) = self.submit(&id, candidate, steps, &arch).await {
                    return failed("ray_submit", e);
                }
                state = JobState::Active;
            }
            while state == JobState::Active {
                if started.elapsed().as_secs_f64() > self.settings.job_timeout_secs {
                    self.stop(&id).await;
                    return EvalOutcome::Report(ProxyReport {
                        status: EvalStatus::TimedOut {
                            step: 0,
                            seconds: started.elapsed().as_secs_f64(),
                        },
                        val_mae: None,
                        first_loss: f64::NAN,
                        last_loss: f64::NAN,
                        steps: 0,
                        params: 0,
                        seconds: started.elapsed().as_secs_f64(),
                    });
                }
                tokio::time::sleep(Duration::from_millis(self.settings.poll_ms.max(10))).await;
                state = match self.state(&id).await {
                    Ok(JobState::Missing) => {
                        // The head restarted and forgot the job: submit it again, same id.
                        tracing::warn!(%id, "job vanished (head restarted?); resubmitting");
                        if let Err(e) = self.submit(&id, candidate, steps, &arch).await {
                            return failed("ray_submit", e);
                        }
                        JobState::Active
                    }
                    Ok(s) => s,
                    Err(e) => return failed("ray_unreachable", e),
                };
            }
            match state {
                JobState::Succeeded => return self.result(&id).await,
                JobState::Failed(msg) => {
                    let logs = self.logs(&id).await.unwrap_or_default();
                    // A job that ran and exited non-zero is the candidate's failure; only a
                    // job that never started (message without logs) earns another attempt.
                    if !logs.trim().is_empty() || attempt + 1 == MAX_ATTEMPTS {
                        return failed(
                            "ray_job_failed",
                            format!("{msg}; log tail: {}", tail(&logs, 800)),
                        );
                    }
                }
                _ => {}
            }
        }
        failed("ray_job_failed", "no attempt succeeded".into())
    }
}

fn failed(kind: &str, message: String) -> EvalOutcome {
    EvalOutcome::Failed {
        kind: kind.into(),
        message,
    }
}

fn tail(s: &str, n: usize) -> String {
    let chars: Vec<char> = s.chars().collect();
    chars[chars.len().saturating_sub(n)..].iter().collect()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl Handler<Evaluate> for RayEvaluator {
    type Result = ResponseFuture<EvalOutcome>;
    fn handle(&mut self, msg: Evaluate, _: &mut Context<Self>) -> Self::Result {
        let job = Job {
            http: self.http.clone(),
            base: self.settings.address.trim_end_matches('/').to_string(),
            settings: self.settings.clone(),
            search: self.search.clone(),
            settings_json: self.settings_json.clone(),
            binary: self.binary.clone(),
            data_dir: self.data_dir.clone(),
        };
        let permits = self.permits.clone();
        Box::pin(async move {
            let Ok(_permit) = permits.acquire_owned().await else {
                return failed("ray_closed", "evaluator closed".into());
            };
            job.evaluate(msg.candidate, msg.steps, msg.arch.to_json())
                .await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_quoting() {
        let s = r#"{"a":"it's \"x\""}"#;
        assert_eq!(from_hex(&to_hex(s.as_bytes())).unwrap(), s.as_bytes());
        assert!(from_hex("abc").is_err());
        assert!(from_hex("zz").is_err());
        // Non-ASCII text of even byte length: an error, never a panic on a char boundary.
        assert!(from_hex("aéb").is_err());
        assert!(from_hex("éé").is_err());
        assert!(from_hex("+1").is_err(), "a sign is not a hex digit");
        assert_eq!(from_hex("0aFf").unwrap(), vec![0x0a, 0xff]);
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
        assert_eq!(tail("abcdef", 3), "def");
    }
}
