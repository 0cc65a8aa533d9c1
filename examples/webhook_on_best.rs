//! Extending the daemon without touching any existing actor: a webhook notifier that POSTs a
//! JSON message whenever a search finds a new best candidate. It is an ordinary actor handling
//! `EventMsg`; the daemon makes one per search through `Daemon::subscribe_each`. For the demo a
//! small receiver on 127.0.0.1:0 stands in for the webhook's endpoint and prints what arrives.
//!
//! `cargo run --release --example webhook_on_best`
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and examples may panic on failure

use actix::prelude::*;
use actix_web::{web, App, HttpResponse, HttpServer};
use futures::StreamExt;
use ists_actors::messages::{Event, EventMsg};
use ists_actors::{settings, Daemon, DaemonSettings};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// POSTs `{"search", "candidate", "score"}` to `url` on every new best.
struct WebhookNotifier {
    search: String,
    url: String,
    client: reqwest::Client,
}

impl Actor for WebhookNotifier {
    type Context = Context<Self>;
}

impl Handler<EventMsg> for WebhookNotifier {
    type Result = ();
    fn handle(&mut self, msg: EventMsg, ctx: &mut Context<Self>) {
        if let Event::NewBest { candidate, score } = msg.event {
            let body = serde_json::json!({
                "search": self.search, "candidate": candidate, "score": score
            });
            let req = self
                .client
                .post(&self.url)
                .header("Content-Type", "application/json")
                .body(body.to_string());
            // Delivery runs beside the search; a failed hook is logged, never fatal.
            ctx.spawn(
                async move {
                    if let Err(e) = req.send().await {
                        eprintln!("webhook failed: {e}");
                    }
                }
                .into_actor(self),
            );
        }
    }
}

fn main() -> anyhow::Result<()> {
    let mut base = settings::load(Some(Path::new("config/tiny.toml")))?;
    base.final_train.top_k = 0;
    let daemon = DaemonSettings {
        port: 0,
        data_dir: std::env::temp_dir().join(format!("ists-webhook-{}", std::process::id())),
        ..DaemonSettings::default()
    };
    actix::System::new().block_on(async move {
        let received = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = received.clone();
        let receiver = HttpServer::new(move || {
            let sink = sink.clone();
            App::new().route(
                "/hook",
                web::post().to(move |body: String| {
                    let sink = sink.clone();
                    async move {
                        println!("webhook received: {body}");
                        sink.lock().map(|mut v| v.push(body)).ok();
                        HttpResponse::NoContent().finish()
                    }
                }),
            )
        })
        .workers(1)
        .bind(("127.0.0.1", 0))?;
        let url = format!("http://{}/hook", receiver.addrs()[0]);
        actix::spawn(receiver.run());

        let handle = Daemon::new(base, daemon)
            .subscribe_each(Arc::new(move |search: &str| {
                WebhookNotifier {
                    search: search.to_string(),
                    url: url.clone(),
                    client: reqwest::Client::new(),
                }
                .start()
                .recipient()
            }))
            .start()
            .await?;
        let shared = handle.shared().clone();
        let id = shared
            .submit(&serde_json::json!({"search": {"budget": 4}}))
            .await?;
        let mut events = std::pin::pin!(shared.follow(&id, 0));
        while let Some(item) = events.next().await {
            item?;
        }
        // Give the last hook a moment to land.
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let n = received.lock().map(|v| v.len()).unwrap_or(0);
        println!("search {id} finished; {n} new-best notifications delivered");
        handle.shutdown().await;
        anyhow::Ok(())
    })
}
