//! Opening one connection: TCP (bounded by the connect timeout, with
//! keepalive and a TCP user timeout), the handshake, and the connection's
//! driver task, whose end says the socket is gone.

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

use crate::error::Error;

/// How to open a connection.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    pub(crate) info: ConnectionInfo,
    pub(crate) client_name: Option<String>,
    pub(crate) connect_timeout: Duration,
    /// The TCP user timeout: unacknowledged writes fail after it.
    pub(crate) user_timeout: Duration,
}

/// An open connection and the task that drives its socket.
pub(crate) struct Opened {
    pub(crate) conn: MultiplexedConnection,
    pub(crate) driver: JoinHandle<()>,
}

impl Target {
    /// Opens a connection; `response_timeout` bounds each of its replies
    /// (`None`: the caller bounds them).
    pub(crate) async fn open(&self, response_timeout: Option<Duration>) -> Result<Opened, Error> {
        let bounded = async {
            let stream = self.tcp().await?;
            let mut config = AsyncConnectionConfig::new();
            if let Some(t) = response_timeout {
                config = config.set_response_timeout(t);
            }
            let (mut conn, driver) =
                MultiplexedConnection::new_with_config(&self.info.redis, stream, config).await?;
            let driver = tokio::spawn(driver);
            if let Some(name) = &self.client_name {
                let named: redis::RedisResult<()> = redis::cmd("CLIENT")
                    .arg("SETNAME")
                    .arg(name)
                    .query_async(&mut conn)
                    .await;
                if let Err(e) = named {
                    driver.abort();
                    return Err(Error::Redis(e));
                }
            }
            Ok(Opened { conn, driver })
        };
        match tokio::time::timeout(self.connect_timeout, bounded).await {
            Ok(r) => r,
            Err(_) => Err(Error::TimedOut {
                what: "the connect and handshake",
                after: self.connect_timeout,
            }),
        }
    }

    async fn tcp(&self) -> Result<TcpStream, Error> {
        let ConnectionAddr::Tcp(host, port) = &self.info.addr else {
            return Err(Error::Config(format!(
                "only redis:// over TCP is supported, not {}",
                self.info.addr
            )));
        };
        let addr = format!("{host}:{port}");
        let stream = TcpStream::connect(&addr)
            .await
            .map_err(|source| Error::Connect {
                addr: addr.clone(),
                source,
            })?;
        let sock = socket2::SockRef::from(&stream);
        let keepalive = socket2::TcpKeepalive::new()
            .with_time(self.user_timeout.max(Duration::from_secs(1)))
            .with_interval(Duration::from_secs(1));
        let tuned = stream
            .set_nodelay(true)
            .and_then(|()| sock.set_tcp_keepalive(&keepalive));
        #[cfg(any(target_os = "linux", target_os = "android"))]
        let tuned = tuned.and_then(|()| sock.set_tcp_user_timeout(Some(self.user_timeout)));
        tuned.map_err(|source| Error::Connect { addr, source })?;
        Ok(stream)
    }
}
