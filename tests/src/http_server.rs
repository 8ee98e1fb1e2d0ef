//! The harness's HTTP/1.1 server, behind the fake Slack and GitHub
//! ([`crate::http`]), the local API Gateway ([`crate::apigw`]), the Lambda
//! Runtime API ([`crate::lambda`]) and the fault proxy ([`crate::faults`]).
//!
//! It speaks what their clients send: HTTP/1.1 with keep-alive, bodies by
//! `Content-Length` or chunked, `Expect: 100-continue` (curl's large posts).
//! Heads are parsed by `httparse`. A handler answers a [`Request`] with a
//! [`Response`], or with `None` to close the connection without answering.
//! A handler still waiting when its client hangs up is dropped, as hyper's
//! server does, so a long poll from a process that died takes nothing.
//!
//! Why not hyper's server (through axum): `make run` builds the function
//! binaries and `kiln-local` in two cargo invocations, because the functions
//! must have exactly the Lambda zips' features. hyper's `server` feature in
//! the second invocation would give hyper, and every crate above it (the
//! AWS SDK among them), another feature set, and all of them would be
//! compiled twice. `make check-local-build` checks that the two share them.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// The largest request head read (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// The most headers a request may carry.
const MAX_HEADERS: usize = 128;

/// One request, as read from the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target: the path and the query string, if any.
    pub target: String,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Whether the client asked to close the connection after this request.
    pub close: bool,
}

impl Request {
    /// The first value of a header (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target
            .split_once('?')
            .map_or(self.target.as_str(), |(path, _)| path)
    }

    /// The raw query string, without `?`.
    pub fn query(&self) -> Option<&str> {
        self.target.split_once('?').map(|(_, query)| query)
    }
}

/// One response. `Content-Length` is added when it is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    /// An empty response with this status.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, body: &Value) -> Response {
        Response::new(status)
            .header("content-type", "application/json")
            .body(body.to_string())
    }

    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Response {
        self.body = body.into();
        self
    }

    /// The status line and headers, with a `Content-Length` of `length`
    /// (which may differ from the body's, for a proxy's truncated reply).
    pub fn head(&self, length: usize) -> String {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str(&format!("content-length: {length}\r\n\r\n"));
        head
    }

    /// Head and body in one write (one segment for small replies, so no
    /// Nagle or delayed-ACK wait). False if the connection broke.
    pub async fn write_to(&self, stream: &mut TcpStream) -> bool {
        let mut bytes = self.head(self.body.len()).into_bytes();
        bytes.extend_from_slice(&self.body);
        stream.write_all(&bytes).await.is_ok()
    }
}

/// Sends `request` on to `base` (`http://host:port`) and returns its
/// answer, or `None` when it gave none. Hop-by-hop headers are not passed
/// on either way; the body's length is set again when the answer is written.
pub async fn forward(client: &reqwest::Client, base: &str, request: &Request) -> Option<Response> {
    let method = reqwest::Method::from_bytes(request.method.as_bytes()).ok()?;
    let mut builder = client.request(method, format!("{base}{}", request.target));
    for (name, value) in &request.headers {
        if !matches!(
            name.as_str(),
            "host" | "content-length" | "transfer-encoding" | "connection" | "expect"
        ) {
            builder = builder.header(name.as_str(), value.as_str());
        }
    }
    let reply = builder.body(request.body.clone()).send().await.ok()?;
    let status = reply.status().as_u16();
    let headers = reply
        .headers()
        .iter()
        .filter(|(name, _)| {
            !matches!(
                name.as_str(),
                "content-length" | "transfer-encoding" | "connection" | "keep-alive"
            )
        })
        .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_string())))
        .collect();
    let body = reply.bytes().await.ok()?.to_vec();
    Some(Response {
        status,
        headers,
        body,
    })
}

/// Serves `handler` on `listener` until the returned task is aborted, which
/// also closes every open connection.
pub fn serve<H, F>(listener: TcpListener, handler: H) -> JoinHandle<()>
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Option<Response>> + Send + 'static,
{
    let handler = Arc::new(handler);
    tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            while connections.try_join_next().is_some() {}
            match listener.accept().await {
                Ok((stream, _)) => {
                    connections.spawn(serve_connection(stream, Arc::clone(&handler)));
                }
                // Out of file descriptors and the like: back off.
                Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
            }
        }
    })
}

/// Binds 127.0.0.1 on a free port.
pub async fn bind_loopback() -> std::io::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
    let addr = listener.local_addr()?;
    Ok((listener, addr))
}

async fn serve_connection<H, F>(mut stream: TcpStream, handler: Arc<H>)
where
    H: Fn(Request) -> F + Send + Sync + 'static,
    F: Future<Output = Option<Response>> + Send + 'static,
{
    let _ = stream.set_nodelay(true);
    let mut buffer = Vec::new();
    while let Some(request) = read_request(&mut stream, &mut buffer).await {
        let close = request.close;
        let answer = tokio::select! {
            answer = handler(request) => answer,
            () = hung_up(&stream) => return,
        };
        let Some(mut response) = answer else {
            return;
        };
        if close {
            response = response.header("connection", "close");
        }
        if !response.write_to(&mut stream).await || close {
            return;
        }
    }
}

/// Resolves when the client closes its side while a handler works. Bytes
/// that arrive meanwhile (a pipelined request) are left for the next read.
async fn hung_up(stream: &TcpStream) {
    let mut probe = [0u8; 1];
    match stream.peek(&mut probe).await {
        Ok(0) | Err(_) => {}
        Ok(_) => std::future::pending().await,
    }
}

/// Reads one request (head and body) from a keep-alive connection. `None`
/// when the client closed it or sent something unreadable.
pub async fn read_request(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Request> {
    let (head_length, mut request) = loop {
        let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
        let mut head = httparse::Request::new(&mut slots);
        match head.parse(buffer) {
            Ok(httparse::Status::Complete(length)) => {
                let headers: Vec<(String, String)> = head
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_ascii_lowercase(),
                            String::from_utf8_lossy(h.value).trim().to_string(),
                        )
                    })
                    .collect();
                let request = Request {
                    method: head.method?.to_string(),
                    target: head.path?.to_string(),
                    close: closes(head.version?, &headers),
                    headers,
                    body: Vec::new(),
                };
                break (length, request);
            }
            Ok(httparse::Status::Partial) if buffer.len() <= MAX_HEAD => {
                read_more(stream, buffer).await?;
            }
            Ok(httparse::Status::Partial) | Err(_) => return None,
        }
    };
    buffer.drain(..head_length);
    if request
        .header("expect")
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        && buffer.is_empty()
    {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .ok()?;
    }
    request.body = if request
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        read_chunked(stream, buffer).await?
    } else {
        let length: usize = match request.header("content-length") {
            Some(value) => value.parse().ok()?,
            None => 0,
        };
        while buffer.len() < length {
            read_more(stream, buffer).await?;
        }
        buffer.drain(..length).collect()
    };
    Some(request)
}

/// HTTP/1.0 closes unless asked to keep alive; HTTP/1.1 keeps alive unless
/// asked to close.
fn closes(version: u8, headers: &[(String, String)]) -> bool {
    let connection = headers
        .iter()
        .find(|(name, _)| name == "connection")
        .map(|(_, value)| value.to_ascii_lowercase());
    match connection.as_deref() {
        Some("close") => true,
        Some("keep-alive") => false,
        _ => version == 0,
    }
}

async fn read_chunked(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = loop {
            if let Some(pos) = find(buffer, b"\r\n") {
                break pos;
            }
            read_more(stream, buffer).await?;
        };
        let size_text = String::from_utf8_lossy(&buffer[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        buffer.drain(..line_end + 2);
        if size == 0 {
            // Trailers (none expected) end with an empty line.
            loop {
                if let Some(pos) = find(buffer, b"\r\n") {
                    buffer.drain(..pos + 2);
                    if pos == 0 {
                        return Some(body);
                    }
                    continue;
                }
                read_more(stream, buffer).await?;
            }
        }
        while buffer.len() < size + 2 {
            read_more(stream, buffer).await?;
        }
        body.extend(buffer.drain(..size));
        buffer.drain(..2);
    }
}

async fn read_more(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Option<()> {
    let mut chunk = [0u8; 16 * 1024];
    let n = stream.read(&mut chunk).await.ok()?;
    if n == 0 {
        return None;
    }
    buffer.extend_from_slice(&chunk[..n]);
    Some(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The reason phrase (clients ignore it; it is there for people reading a
/// capture).
fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        410 => "Gone",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    async fn echo_server() -> (JoinHandle<()>, SocketAddr) {
        let (listener, addr) = bind_loopback().await.unwrap();
        let task = serve(listener, |request: Request| async move {
            if request.path() == "/drop" {
                return None;
            }
            let summary = serde_json::json!({
                "method": request.method,
                "path": request.path(),
                "query": request.query(),
                "header": request.header("X-Test"),
                "body": String::from_utf8_lossy(&request.body),
            });
            Some(Response::json(201, &summary).header("x-answer", "yes"))
        });
        (task, addr)
    }

    /// Sends raw bytes on one connection and reads `answers` responses.
    async fn exchange(addr: SocketAddr, bytes: &[u8], answers: usize) -> Vec<(String, Value)> {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (read, mut write) = stream.into_split();
        write.write_all(bytes).await.unwrap();
        let mut reader = tokio::io::BufReader::new(read);
        let mut out = Vec::new();
        for _ in 0..answers {
            let mut status = String::new();
            reader.read_line(&mut status).await.unwrap();
            if status.starts_with("HTTP/1.1 100") {
                reader.read_line(&mut String::new()).await.unwrap();
                status.clear();
                reader.read_line(&mut status).await.unwrap();
            }
            let mut length = 0;
            loop {
                let mut line = String::new();
                reader.read_line(&mut line).await.unwrap();
                if line == "\r\n" {
                    break;
                }
                if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = value.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).await.unwrap();
            out.push((
                status.trim().to_string(),
                serde_json::from_slice(&body).unwrap(),
            ));
        }
        out
    }

    #[tokio::test]
    async fn keep_alive_chunked_and_continue() {
        let (_task, addr) = echo_server().await;
        let requests = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nX-Test: one\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: h\r\n\r\n\
POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n";
        let answers = exchange(addr, requests, 3).await;
        assert_eq!(answers[0].0, "HTTP/1.1 201 Created");
        assert_eq!(answers[0].1["path"], "/a");
        assert_eq!(answers[0].1["query"], "x=1");
        assert_eq!(answers[0].1["header"], "one");
        assert_eq!(answers[0].1["body"], "hello");
        assert_eq!(answers[1].1["method"], "GET");
        assert_eq!(answers[1].1["query"], Value::Null);
        assert_eq!(answers[2].1["body"], "abcde");

        let expect = b"POST /d HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok";
        let answers = exchange(addr, expect, 1).await;
        assert_eq!(answers[0].1["body"], "ok");
    }

    #[tokio::test]
    async fn none_closes_without_an_answer_and_bad_heads_close() {
        let (_task, addr) = echo_server().await;
        for bytes in [
            &b"GET /drop HTTP/1.1\r\n\r\n"[..],
            &b"NOT HTTP\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"[..],
        ] {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.write_all(bytes).await.unwrap();
            let mut rest = Vec::new();
            stream.read_to_end(&mut rest).await.unwrap();
            assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
        }
    }

    #[tokio::test]
    async fn a_waiting_handler_is_dropped_when_the_client_hangs_up() {
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        let dropped_tx = Arc::new(std::sync::Mutex::new(Some(dropped_tx)));
        let (listener, addr) = bind_loopback().await.unwrap();
        let _task = serve(listener, move |_request: Request| {
            let guard = DropSignal(dropped_tx.lock().unwrap().take());
            async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                None
            }
        });
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /wait HTTP/1.1\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(stream);
        tokio::time::timeout(Duration::from_secs(5), dropped_rx)
            .await
            .expect("the handler was not dropped")
            .unwrap();
    }

    struct DropSignal(Option<tokio::sync::oneshot::Sender<()>>);

    impl Drop for DropSignal {
        fn drop(&mut self) {
            if let Some(tx) = self.0.take() {
                let _ = tx.send(());
            }
        }
    }

    #[test]
    fn connection_header_and_version_decide_keep_alive() {
        let close = vec![("connection".to_string(), "Close".to_string())];
        let keep = vec![("connection".to_string(), "keep-alive".to_string())];
        assert!(closes(1, &close));
        assert!(!closes(1, &[]));
        assert!(closes(0, &[]));
        assert!(!closes(0, &keep));
    }
}
