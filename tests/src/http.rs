//! HTTP clients for tests: reqwest for ordinary requests, and a raw HTTP/1.1 connection
//! for what reqwest hides (connection reuse, chunked bodies, lying headers).

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// A reqwest client that never goes through a proxy.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder().no_proxy().build().expect("client")
}

/// The body of `GET url` (a `/metrics` scrape, say); fails the test when it cannot be read.
pub async fn get_text(url: &str) -> String {
    client().get(url).send().await.expect("GET").text().await.expect("text body")
}

/// One HTTP/1.1 connection, driven by hand.
#[derive(Debug)]
pub struct RawConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl RawResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON body")
    }
}

impl RawConn {
    pub async fn connect(addr: &str) -> Self {
        Self { stream: TcpStream::connect(addr).await.expect("connect"), buf: Vec::new() }
    }

    /// Sends raw bytes (a request head and/or body parts).
    pub async fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("write");
    }

    /// Sends `POST path` with `headers` and a Content-Length body.
    pub async fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) {
        let mut head = format!("POST {path} HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n", body.len());
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.write(head.as_bytes()).await;
        self.write(body).await;
    }

    /// Reads one response; `None` when the server closed the connection first.
    pub async fn read_response(&mut self) -> Option<RawResponse> {
        let head_end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if !self.fill().await {
                return None;
            }
        };
        let head = String::from_utf8(self.buf[..head_end].to_vec()).expect("ASCII head");
        self.buf.drain(..head_end + 4);
        let mut lines = head.split("\r\n");
        let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
            .collect();
        let len: usize = headers.iter().find(|(k, _)| k == "content-length").map_or(0, |(_, v)| v.parse().unwrap());
        while self.buf.len() < len {
            if !self.fill().await {
                return None;
            }
        }
        let body = self.buf.drain(..len).collect();
        Some(RawResponse { status, headers, body })
    }

    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 8192];
        match tokio::time::timeout(std::time::Duration::from_secs(30), self.stream.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("no response within 30 s"),
        }
    }
}
