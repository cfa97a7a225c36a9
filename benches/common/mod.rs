//! What both benchmarks share: one keep-alive HTTP/1.1 connection driven by hyper's bare
//! client. No pool and no URL parsing per request, so the client's own cost per request stays
//! small next to the server's on a machine whose cores the client shares with the server (a
//! heavier client flattens every ratio towards 1 and charges its cost to the GraphQL side).
#![allow(clippy::unwrap_used)]

use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// The request side of one connection.
pub type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// Opens a connection to `addr` (host:port) with TCP_NODELAY; its driver runs as a task.
pub async fn connect(addr: &str) -> Sender {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    sender
}
