//! Seed 004's HTTP client pool, made real: a local HTTP/1.1 server (started
//! here, each answer taking 300 to 1100 ms), a client with at most 2
//! connections to it and a 3 s acquire timeout, and 4 workers. Two wait
//! for a connection while two are served; the waiting shows.
//!
//! `cargo run -p cenote-http --example http_client_pool`

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (addr, opened) = serve().await?;
    let client = cenote_http::Client::builder()
        .max_connections_per_origin(2)
        .acquire_timeout(Duration::from_secs(3))
        .build()?;
    let url = format!("http://{addr}/work");
    println!("HTTP client pool: 2 connections to {addr}, 4 workers");
    let t0 = Instant::now();
    let workers: Vec<_> = (1..=4)
        .map(|id| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let asked = t0.elapsed();
                let resp = client.get(&url).await?;
                let answer = resp.into_body().text().await?;
                println!(
                    "worker {id}: asked at {:>4} ms, answered at {:>4} ms: {answer}",
                    asked.as_millis(),
                    t0.elapsed().as_millis()
                );
                Ok::<_, cenote_http::Error>(())
            })
        })
        .collect();
    // While two workers are served, two wait for a connection.
    tokio::time::sleep(Duration::from_millis(100)).await;
    if let Some(pool) = client.pool(&url) {
        println!(
            "at 100 ms: {} connections in use, {} workers waiting",
            pool.in_use(),
            pool.waiting()
        );
    }
    for w in workers {
        w.await??;
    }
    println!(
        "the server saw {} connections opened for 4 requests",
        opened.load(Relaxed)
    );
    Ok(())
}

/// The server: each answer takes 300 to 1100 ms (the seed's "HTTP work").
async fn serve() -> std::io::Result<(std::net::SocketAddr, Arc<AtomicU64>)> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let opened = Arc::new(AtomicU64::new(0));
    let counted = opened.clone();
    tokio::spawn(async move {
        let served = Arc::new(AtomicU64::new(0));
        while let Ok((stream, _)) = listener.accept().await {
            let conn = counted.fetch_add(1, Relaxed) + 1;
            let served = served.clone();
            let svc = hyper::service::service_fn(move |_req| {
                let n = served.fetch_add(1, Relaxed);
                async move {
                    let ms = 300 + (n * 523) % 800;
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    let body = format!("request {} on connection {conn}, {ms} ms of work", n + 1);
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc),
            );
        }
    });
    Ok((addr, opened))
}
