//! Embedding the daemon in another Rust program: start it on a free loopback port, submit a
//! search in-process (the same validation as `POST /searches`), follow its events as they are
//! stored, print the result, and shut down (an unfinished search would drain and resume at the
//! next start on the same data directory).
//!
//! `cargo run --release --example embed_daemon`
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use futures::StreamExt;
use ists_actors::{settings, Daemon, DaemonSettings};
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let mut base = settings::load(Some(Path::new("config/tiny.toml")))?;
    base.final_train.top_k = 0;
    let data_dir = std::env::temp_dir().join(format!("ists-embed-{}", std::process::id()));
    let daemon = DaemonSettings {
        port: 0,
        data_dir: data_dir.clone(),
        ..DaemonSettings::default()
    };
    actix::System::new().block_on(async move {
        let handle = Daemon::new(base, daemon).start().await?;
        println!("daemon serving on http://{}", handle.addr());
        let shared = handle.shared().clone();
        let id = shared
            .submit(&serde_json::json!({"search": {"budget": 3}}))
            .await?;
        println!("submitted search {id}");
        // The stream ends once the search is finished and every event was delivered.
        let mut events = std::pin::pin!(shared.follow(&id, 0));
        while let Some(item) = events.next().await {
            if let Some(e) = item? {
                println!("{:>3} {:<15} {}", e.seq, e.kind, e.json);
            }
        }
        println!("{}", serde_json::to_string_pretty(&shared.search(&id)?)?);
        handle.shutdown().await;
        anyhow::Ok(())
    })?;
    println!("data directory: {}", data_dir.display());
    Ok(())
}
