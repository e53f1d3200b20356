//! [`Client`]: requests to any origin, each over a connection of its
//! origin's pool; the stale-connection retry (`retry.rs`); blocking calls
//! for plain threads.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use cenote::resources::{GetError, Pool, QueueOrder};
use http::{header, HeaderValue, Request, Response, Uri, Version};
use tokio::runtime::{Handle, Runtime};

use crate::body::{Body, ResponseBody};
use crate::builder::{BuildError, Builder};
use crate::conn::{ConnectConfig, Connector, Lent};
use crate::error::Error;
use crate::metrics::OriginMetrics;
use crate::origin::{Origin, OriginKey};
use crate::origins::{OriginPool, Origins};
use crate::retry;

/// The per-origin limits and timeouts (see [`Builder`]).
pub(crate) struct Config {
    pub(crate) max_connections: usize,
    pub(crate) max_idle: usize,
    pub(crate) idle_timeout: Duration,
    pub(crate) acquire_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) request_timeout: Option<Duration>,
}

/// An HTTP/1.1 client with a bounded pool of keep-alive connections per
/// origin. Cheap to clone (one shared pool set); usable from tasks and,
/// through the `_blocking` methods, from plain threads.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Config,
    connect: Arc<ConnectConfig>,
    origins: Origins,
    handle: Handle,
    /// The client's own runtime, when built outside any.
    own: Option<Runtime>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.origins.close_all();
        if let Some(rt) = self.own.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("origins", &self.inner.origins.len())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A [`Builder`] with the defaults.
    pub fn builder() -> Builder {
        Builder::default()
    }

    pub(crate) fn start(
        cfg: Config,
        connect: Arc<ConnectConfig>,
        max_origins: usize,
        runtime: Option<Handle>,
    ) -> Result<Client, BuildError> {
        let (handle, own) = match runtime.or_else(|| Handle::try_current().ok()) {
            Some(h) => (h, None),
            None => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("cenote-http")
                    .enable_all()
                    .build()
                    .map_err(BuildError::Runtime)?;
                (rt.handle().clone(), Some(rt))
            }
        };
        Ok(Client {
            inner: Arc::new(Inner {
                cfg,
                connect,
                origins: Origins::new(max_origins),
                handle,
                own,
            }),
        })
    }

    /// Sends `req` (an absolute `http://` or `https://` URI) and returns
    /// the response once its head arrives; its body holds the connection
    /// until read to the end (see [`ResponseBody`]).
    pub async fn request(&self, req: Request<Body>) -> Result<Response<ResponseBody>, Error> {
        match self.inner.cfg.request_timeout {
            Some(t) => tokio::time::timeout(t, self.send(req))
                .await
                .map_err(|_| Error::TimedOut(t))?,
            None => self.send(req).await,
        }
    }

    /// `GET uri`.
    pub async fn get(&self, uri: &str) -> Result<Response<ResponseBody>, Error> {
        self.request(get(uri)?).await
    }

    /// [`request`](Self::request) from a plain thread, the whole body read.
    /// Fails with [`Error::BlockingInRuntime`] on a runtime's thread.
    pub fn request_blocking(&self, req: Request<Body>) -> Result<Response<Bytes>, Error> {
        if Handle::try_current().is_ok() {
            return Err(Error::BlockingInRuntime);
        }
        self.inner.handle.block_on(async {
            let (parts, body) = self.request(req).await?.into_parts();
            Ok(Response::from_parts(parts, body.bytes().await?))
        })
    }

    /// `GET uri` from a plain thread, the whole body read.
    pub fn get_blocking(&self, uri: &str) -> Result<Response<Bytes>, Error> {
        self.request_blocking(get(uri)?)
    }

    /// The pool of `origin` (`http://host:port`), if it has one: its
    /// counts and stats.
    pub fn pool(&self, origin: &str) -> Option<Pool<Connector>> {
        let origin = Origin::of(&origin.parse::<Uri>().ok()?).ok()?;
        self.inner.origins.find(&origin).map(|p| p.pool.clone())
    }

    /// How many origins have a pool.
    pub fn origins(&self) -> usize {
        self.inner.origins.len()
    }

    /// Closes every pool: idle connections now, lent ones when their
    /// responses end. Later requests open new pools.
    pub fn close_idle(&self) {
        self.inner.origins.close_all();
    }

    /// The request, on a connection of its origin; sent again on another
    /// connection if it never left, or once if a stale keep-alive
    /// connection cut it off and it may be replayed (`retry.rs`).
    async fn send(&self, mut req: Request<Body>) -> Result<Response<ResponseBody>, Error> {
        // The absolute URI stays here (for errors); the wire gets the
        // origin form.
        let uri = std::mem::take(req.uri_mut());
        let key = OriginKey::of(&uri)?;
        *req.uri_mut() = uri
            .path_and_query()
            .map_or(Uri::from_static("/"), |pq| pq.clone().into());
        let method = req.method().clone();
        let mut retried = false;
        let mut host_set = req.headers().contains_key(header::HOST);
        // Connections found closed before the request went out: each is
        // destroyed, so this ends; the bound is for a server that closes
        // every new connection at once.
        let mut unsent = 0;
        let limit = self.inner.cfg.max_connections + 1;
        // After a stale connection: how long it had sat idle.
        let mut stale_after: Option<Duration> = None;
        loop {
            let (mut lent, op) = self.lend(&key).await?;
            if let Some(stale) = stale_after {
                // The retry goes on a connection idle less than half as
                // long as the one the server closed (one that idled as long
                // may be closing too); older ones are closed on the way.
                if lent.reused() && lent.idle_for() >= stale / 2 {
                    lent.discard();
                    continue;
                }
            }
            if !host_set {
                req.headers_mut().insert(header::HOST, op.host.clone());
                host_set = true;
            }
            let replay = (lent.reused() && !retried).then(|| retry::replay_of(&req));
            if let Err(source) = lent.conn().sender.ready().await {
                drop(lent);
                unsent += 1;
                if unsent > limit {
                    return Err(Error::Request {
                        method,
                        uri: Box::new(uri),
                        retried,
                        source,
                    });
                }
                op.metrics.retried_unsent();
                continue;
            }
            let sent = lent.conn().sender.try_send_request(req).await;
            let mut e = match sent {
                Ok(resp) => return Ok(respond(resp, lent)),
                Err(e) => e,
            };
            let idle_for = lent.idle_for();
            drop(lent);
            if let Some(back) = e.take_message() {
                req = back;
                unsent += 1;
                if unsent <= limit {
                    op.metrics.retried_unsent();
                    continue;
                }
            }
            let source = e.into_error();
            if retry::is_stale(&source) {
                match replay {
                    Some(Ok(copy)) => {
                        req = copy;
                        retried = true;
                        stale_after = Some(idle_for);
                        op.metrics.retried_stale();
                        continue;
                    }
                    Some(Err(why)) => {
                        return Err(Error::NotRetried {
                            method,
                            uri: Box::new(uri),
                            why,
                            source,
                        })
                    }
                    None => {}
                }
            }
            return Err(Error::Request {
                method,
                uri: Box::new(uri),
                retried,
                source,
            });
        }
    }

    /// A connection of `origin`'s pool (made if it has none), waited for
    /// FIFO within the acquire timeout.
    async fn lend(&self, key: &OriginKey<'_>) -> Result<(Lent, Arc<OriginPool>), Error> {
        let mut tries = 0;
        loop {
            let op = self.inner.origins.pool(key, |o| self.new_pool(o))?;
            let t0 = Instant::now();
            match op.pool.get().await {
                Ok(conn) => {
                    let lent = Lent::new(
                        conn,
                        op.metrics.clone(),
                        self.inner.cfg.max_idle,
                        t0.elapsed(),
                    );
                    return Ok((lent, op));
                }
                // Evicted (past the origin cap) between the lookup and
                // the get: the next lookup makes it again.
                Err(GetError::Closed) if tries == 0 => tries += 1,
                Err(source) => {
                    return Err(Error::Pool {
                        origin: key.to_origin().to_string(),
                        source,
                    })
                }
            }
        }
    }

    fn new_pool(&self, origin: &Origin) -> Result<OriginPool, Error> {
        let metrics = Arc::new(OriginMetrics::new(origin));
        let cfg = &self.inner.cfg;
        let manager = Connector::new(origin.clone(), self.inner.connect.clone(), metrics.clone());
        let pool = Pool::builder(manager)
            .name(origin.to_string())
            .capacity(cfg.max_connections)
            .acquire_timeout(cfg.acquire_timeout)
            .create_timeout(cfg.connect_timeout)
            .idle_timeout(Some(cfg.idle_timeout))
            .max_lifetime(None)
            // The most recently used connection first: the one least
            // likely to have met the server's keep-alive timeout.
            .queue_order(QueueOrder::Lifo)
            .runtime(self.inner.handle.clone())
            .build()
            .map_err(|source| Error::Start {
                origin: origin.to_string(),
                source,
            })?;
        let host = HeaderValue::from_str(&origin.host_header())
            .expect("a host from a parsed URI is a valid header value");
        Ok(OriginPool {
            pool,
            metrics,
            host,
        })
    }
}

/// `GET uri`, the request.
fn get(uri: &str) -> Result<Request<Body>, Error> {
    Ok(Request::get(uri).body(Body::empty())?)
}

/// The response, its body holding `lent` until its end (or returning it at
/// once when there is no body).
fn respond(resp: Response<hyper::body::Incoming>, mut lent: Lent) -> Response<ResponseBody> {
    lent.conn().keep_alive = keeps_alive(&resp);
    let (parts, incoming) = resp.into_parts();
    let lent = if http_body::Body::is_end_stream(&incoming) {
        lent.reusable_after_end();
        None
    } else {
        Some(lent)
    };
    Response::from_parts(parts, ResponseBody::new(incoming, lent))
}

/// Whether the server keeps the connection after this response.
fn keeps_alive<B>(resp: &Response<B>) -> bool {
    let says = |token: &str| {
        resp.headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    match resp.version() {
        Version::HTTP_10 => says("keep-alive"),
        _ => !says("close"),
    }
}
