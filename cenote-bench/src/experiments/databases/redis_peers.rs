//! The Redis side of `cenote-bench databases`: each pool's get and the
//! three workloads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::ConnectionLike;

use super::postgres::fill;
use super::{drive, DbParams, Work};
use crate::harness::Outcome;
use crate::peers::Impl;

const KEY_100B: &str = "cenote:bench:100B";
const KEY_100K: &str = "cenote:bench:100KB";

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// The values the GETs read, written once.
async fn values(client: &redis::Client) -> Result<(), String> {
    let mut c = client
        .get_multiplexed_async_connection()
        .await
        .map_err(err)?;
    redis::pipe()
        .set(KEY_100B, vec![b'x'; 100])
        .ignore()
        .set(KEY_100K, vec![b'x'; 100 * 1024])
        .ignore()
        .query_async::<()>(&mut c)
        .await
        .map_err(err)
}

async fn work<C: ConnectionLike + Send>(c: &mut C, w: Work) -> Result<(), String> {
    let cmd = match w {
        Work::Ping => redis::cmd("PING"),
        Work::Get100B => redis::cmd("GET").arg(KEY_100B).clone(),
        Work::Get100K => redis::cmd("GET").arg(KEY_100K).clone(),
        _ => return Err(format!("{w:?} is not a Redis workload")),
    };
    let v: redis::Value = cmd.query_async(c).await.map_err(err)?;
    std::hint::black_box(v);
    Ok(())
}

pub(super) async fn run(imp: Impl, p: &DbParams) -> Result<Outcome, String> {
    let client = redis::Client::open(p.url.as_str()).map_err(err)?;
    values(&client).await?;
    let w = p.work;
    match imp {
        Impl::Cenote => {
            let pool = Arc::new(
                cenote_redis::Builder::new(&p.url)
                    .map_err(err)?
                    .capacity(p.size)
                    .build()
                    .map_err(err)?,
            );
            fill(p.size, || async { pool.get().await.map_err(err) }).await?;
            drive(p.tasks, p.ops, move |_| {
                let pool = pool.clone();
                async move {
                    let t0 = Instant::now();
                    let mut c = pool.get().await.map_err(err)?;
                    let waited = t0.elapsed();
                    work(&mut *c, w).await?;
                    Ok(waited)
                }
            })
            .await
        }
        Impl::DeadpoolRedis => {
            let pool = deadpool_redis::Config::from_url(p.url.clone())
                .builder()
                .map_err(err)?
                .max_size(p.size)
                .runtime(deadpool_redis::Runtime::Tokio1)
                .build()
                .map_err(err)?;
            fill(p.size, || async { pool.get().await.map_err(err) }).await?;
            drive(p.tasks, p.ops, move |_| {
                let pool = pool.clone();
                async move {
                    let t0 = Instant::now();
                    let mut c = pool.get().await.map_err(err)?;
                    let waited = t0.elapsed();
                    work(&mut c, w).await?;
                    Ok(waited)
                }
            })
            .await
        }
        Impl::Bb8Redis => {
            let mgr = bb8_redis::RedisConnectionManager::new(p.url.as_str()).map_err(err)?;
            let pool = bb8::Pool::builder()
                .max_size(u32::try_from(p.size).map_err(err)?)
                .build(mgr)
                .await
                .map_err(err)?;
            fill(p.size, || async { pool.get().await.map_err(err) }).await?;
            drive(p.tasks, p.ops, move |_| {
                let pool = pool.clone();
                async move {
                    let t0 = Instant::now();
                    let mut c = pool.get().await.map_err(err)?;
                    let waited = t0.elapsed();
                    work(&mut *c, w).await?;
                    Ok(waited)
                }
            })
            .await
        }
        Impl::Multiplexed => {
            let shared = client
                .get_multiplexed_async_connection()
                .await
                .map_err(err)?;
            drive(p.tasks, p.ops, move |_| {
                let mut c = shared.clone();
                async move {
                    work(&mut c, w).await?;
                    Ok(Duration::ZERO)
                }
            })
            .await
        }
        Impl::Dedicated => {
            let mut own = Vec::with_capacity(p.tasks);
            for _ in 0..p.tasks {
                own.push(
                    client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(err)?,
                );
            }
            let own = Arc::new(own);
            drive(p.tasks, p.ops, move |t| {
                let mut c = own[t].clone();
                async move {
                    work(&mut c, w).await?;
                    Ok(Duration::ZERO)
                }
            })
            .await
        }
        Impl::ConnectPerRequest => {
            drive(p.tasks, p.ops, move |_| {
                let client = client.clone();
                async move {
                    let t0 = Instant::now();
                    let mut c = client
                        .get_multiplexed_async_connection()
                        .await
                        .map_err(err)?;
                    let waited = t0.elapsed();
                    work(&mut c, w).await?;
                    Ok(waited)
                }
            })
            .await
        }
        other => Err(format!("{} does not run databases/redis", other.name())),
    }
}
