//! The HTTP clients measured, behind one `get`: cenote-http, hyper-util's
//! legacy `Client`, reqwest, and a new connection per request.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::peers::Impl;

type HyperUtil = hyper_util::client::legacy::Client<HttpConnector, Empty<Bytes>>;

#[derive(Clone)]
pub enum Client {
    Cenote(cenote_http::Client),
    HyperUtil(Box<HyperUtil>),
    /// hyper-util with a semaphore of `cap` permits held from the request
    /// until its body is read.
    HyperUtilCapped(Box<HyperUtil>, Arc<tokio::sync::Semaphore>),
    Reqwest(reqwest::Client),
    ConnectPerRequest,
}

impl Client {
    /// `imp`'s client, capped at `cap` connections per origin where it
    /// has a cap (hyper-util and reqwest have none; hyper-util-capped
    /// caps requests in flight, and so roughly its connections).
    pub fn new(imp: Impl, cap: usize) -> Result<Client, String> {
        Ok(match imp {
            Impl::Cenote => Client::Cenote(
                cenote_http::Client::builder()
                    .max_connections_per_origin(cap)
                    .acquire_timeout(Duration::from_secs(30))
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            Impl::HyperUtil => Client::HyperUtil(Box::new(hyper_util())),
            Impl::HyperUtilCapped => Client::HyperUtilCapped(
                Box::new(hyper_util()),
                Arc::new(tokio::sync::Semaphore::new(cap)),
            ),
            Impl::Reqwest => Client::Reqwest(
                reqwest::Client::builder()
                    .tcp_nodelay(true)
                    .build()
                    .map_err(|e| e.to_string())?,
            ),
            Impl::ConnectPerRequest => Client::ConnectPerRequest,
            other => return Err(format!("{} is not an HTTP client", other.name())),
        })
    }

    /// `GET url`, the whole body read; its length.
    pub async fn get(&self, url: &str) -> Result<usize, String> {
        match self {
            Client::Cenote(c) => {
                let r = c.get(url).await.map_err(|e| e.to_string())?;
                Ok(r.into_body()
                    .bytes()
                    .await
                    .map_err(|e| e.to_string())?
                    .len())
            }
            Client::HyperUtil(c) => hyper_util_get(c, url).await,
            Client::HyperUtilCapped(c, cap) => {
                let _permit = cap.acquire().await.map_err(|e| e.to_string())?;
                hyper_util_get(c, url).await
            }
            Client::Reqwest(c) => {
                let r = c.get(url).send().await.map_err(|e| format!("{e:?}"))?;
                Ok(r.bytes().await.map_err(|e| format!("{e:?}"))?.len())
            }
            Client::ConnectPerRequest => connect_and_get(url).await,
        }
    }
}

fn hyper_util() -> HyperUtil {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(connector)
}

async fn hyper_util_get(c: &HyperUtil, url: &str) -> Result<usize, String> {
    let uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let r = c.get(uri).await.map_err(|e| format!("{e:?}"))?;
    let body = r.into_body().collect().await.map_err(|e| e.to_string())?;
    Ok(body.to_bytes().len())
}

/// Connect, one GET, close.
async fn connect_and_get(url: &str) -> Result<usize, String> {
    Ok(fetch(url).await?.len())
}

/// Connect, one GET, close; the body.
async fn fetch(url: &str) -> Result<Bytes, String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e: http::uri::InvalidUri| e.to_string())?;
    let addr = format!(
        "{}:{}",
        uri.host().unwrap_or("127.0.0.1"),
        uri.port_u16().unwrap_or(80)
    );
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(conn);
    let req = http::Request::get(uri.path())
        .header(
            http::header::HOST,
            uri.authority().map_or("", |a| a.as_str()),
        )
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let r = send.send_request(req).await.map_err(|e| e.to_string())?;
    let body = r
        .into_body()
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    drop(send);
    driver.abort();
    Ok(body)
}

impl Client {
    /// `GET url` on a new connection, the body as text.
    pub async fn get_text(&self, url: &str) -> Result<String, String> {
        let body = fetch(url).await?;
        Ok(String::from_utf8_lossy(&body).into_owned())
    }
}
