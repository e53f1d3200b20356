//! Each toxic against a local echo server.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use cenote_fault_proxy::{Proxy, Toxics};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An echo server on a free port.
async fn echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0; 64 * 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

async fn round_trip(s: &mut TcpStream, msg: &[u8]) -> std::io::Result<Vec<u8>> {
    s.write_all(msg).await?;
    let mut got = vec![0; msg.len()];
    s.read_exact(&mut got).await?;
    Ok(got)
}

async fn setup() -> (Proxy, TcpStream) {
    let proxy = Proxy::start(echo().await).await.unwrap();
    let s = TcpStream::connect(proxy.addr()).await.unwrap();
    (proxy, s)
}

#[tokio::test]
async fn passes_bytes_untouched_by_default() {
    let (_p, mut s) = setup().await;
    assert_eq!(round_trip(&mut s, b"hello").await.unwrap(), b"hello");
}

#[tokio::test]
async fn latency_delays_each_chunk() {
    let (p, mut s) = setup().await;
    round_trip(&mut s, b"x").await.unwrap();
    p.set(Toxics::none().latency(Duration::from_millis(100)));
    let t0 = Instant::now();
    round_trip(&mut s, b"x").await.unwrap();
    // Both directions: 200 ms.
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn bandwidth_caps_the_rate() {
    let (p, mut s) = setup().await;
    p.set(Toxics::none().bandwidth(100_000));
    let t0 = Instant::now();
    round_trip(&mut s, &[7; 20_000]).await.unwrap();
    // 20 kB at 100 kB/s takes 200 ms each way; the two ways overlap.
    assert!(
        t0.elapsed() >= Duration::from_millis(190),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn a_black_hole_never_answers_and_only_where_set() {
    let (p, mut s) = setup().await;
    round_trip(&mut s, b"x").await.unwrap();
    let mut other = TcpStream::connect(p.addr()).await.unwrap();
    round_trip(&mut other, b"y").await.unwrap();
    let first = p.connections()[0];
    p.set_for(first, Toxics::none().black_hole());
    let r = tokio::time::timeout(Duration::from_millis(200), round_trip(&mut s, b"x")).await;
    assert!(r.is_err(), "answered through a black hole");
    assert_eq!(round_trip(&mut other, b"y").await.unwrap(), b"y");
}

#[tokio::test]
async fn reset_peer_resets_the_client() {
    let (p, mut s) = setup().await;
    round_trip(&mut s, b"x").await.unwrap();
    p.reset_all();
    let mut buf = [0; 1];
    let r = s.read(&mut buf).await;
    assert_eq!(r.map_err(|e| e.kind()), Err(ErrorKind::ConnectionReset));
}

#[tokio::test]
async fn limit_data_cuts_the_stream() {
    let (p, mut s) = setup().await;
    p.set(Toxics::none().limit_data(10));
    assert_eq!(round_trip(&mut s, b"12345").await.unwrap(), b"12345");
    // 10 bytes passed: the next ones cut it.
    let r = round_trip(&mut s, b"67890").await;
    assert!(r.is_err(), "{r:?}");
}

#[tokio::test]
async fn slow_close_holds_the_close_back() {
    let proxy = Proxy::start(echo().await).await.unwrap();
    proxy.set(Toxics::none().slow_close(Duration::from_millis(200)));
    let mut s = TcpStream::connect(proxy.addr()).await.unwrap();
    round_trip(&mut s, b"x").await.unwrap();
    let t0 = Instant::now();
    s.shutdown().await.unwrap();
    let mut buf = [0; 1];
    assert_eq!(s.read(&mut buf).await.unwrap(), 0);
    // The close went to the server late, and its close came back late too.
    assert!(
        t0.elapsed() >= Duration::from_millis(200),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test]
async fn down_refuses_and_up_accepts_again() {
    let (p, mut s) = setup().await;
    round_trip(&mut s, b"x").await.unwrap();
    p.down();
    let mut buf = [0; 1];
    assert!(matches!(s.read(&mut buf).await, Err(_) | Ok(0)));
    let e = TcpStream::connect(p.addr()).await.unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
    p.up().unwrap();
    let mut s = TcpStream::connect(p.addr()).await.unwrap();
    assert_eq!(round_trip(&mut s, b"back").await.unwrap(), b"back");
}
