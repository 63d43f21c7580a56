//! The CLI's HTTP client: finds the server and token (flags, environment, or the hub's data
//! directory on the same machine), sends requests, and turns `Status` errors into messages.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::files::{CLIENT_FILE, TOKEN_FILE};

/// Where to reach the hub and how to authenticate.
#[derive(Debug, Clone, Default)]
pub struct Connection {
    pub server: Option<String>,
    pub token: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub data_dir: PathBuf,
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Client({})", self.base)
    }
}

/// An API error: the HTTP code and the server's message (with one line per invalid field).
#[derive(Debug)]
pub struct ApiFailure {
    pub code: StatusCode,
    pub message: String,
}

impl std::fmt::Display for ApiFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.as_u16())
    }
}

impl std::error::Error for ApiFailure {}

impl ApiFailure {
    /// Whether `e` is the hub's answer with this status code.
    pub fn is(e: &anyhow::Error, code: reqwest::StatusCode) -> bool {
        e.downcast_ref::<ApiFailure>().is_some_and(|f| f.code == code)
    }
}

/// Bodies are JSON; an apply reports what it did.
pub struct Written {
    pub object: Value,
    pub outcome: String,
}

impl Client {
    pub fn connect(c: &Connection) -> anyhow::Result<Client> {
        let saved = read_client_file(&c.data_dir);
        let base = c
            .server
            .clone()
            .or_else(|| {
                saved.as_ref().and_then(|s| s.get("server")).and_then(Value::as_str).map(str::to_string)
            })
            .unwrap_or_else(|| "http://127.0.0.1:7443".to_string());
        let token = match &c.token {
            Some(t) => t.clone(),
            None => {
                let path = c.data_dir.join(TOKEN_FILE);
                std::fs::read_to_string(&path)
                    .map(|t| t.trim().to_string())
                    .map_err(|e| anyhow!("no token: pass --token or set FLOTILLA_TOKEN, or run this on the hub's machine as a user who can read {} ({e})", path.display()))?
            }
        };
        let ca = c.ca_file.clone().or_else(|| {
            saved
                .as_ref()
                .and_then(|s| s.get("certificateAuthority"))
                .and_then(Value::as_str)
                .map(PathBuf::from)
        });
        let mut builder = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(10));
        if let Some(ca) = ca {
            let pem = std::fs::read(&ca)
                .with_context(|| format!("reading certificate authority {}", ca.display()))?;
            let cert =
                reqwest::Certificate::from_pem(&pem).with_context(|| format!("parsing {}", ca.display()))?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().context("building the HTTP client")?;
        Ok(Client { http, base: base.trim_end_matches('/').to_string(), token })
    }

    pub fn server(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> anyhow::Result<reqwest::Response> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        req.send().await.with_context(|| {
            format!("cannot reach the hub at {}: is `flotilla-hub serve` running?", self.base)
        })
    }

    async fn check(resp: reqwest::Response) -> anyhow::Result<reqwest::Response> {
        if resp.status().is_success() {
            return Ok(resp);
        }
        let code = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        let message = body.get("message").and_then(Value::as_str).unwrap_or("request failed").to_string();
        Err(ApiFailure { code, message }.into())
    }

    pub async fn get(&self, path: &str) -> anyhow::Result<Value> {
        let resp = Self::check(self.send(Method::GET, path, None).await?).await?;
        resp.json().await.context("reading the response")
    }

    pub async fn write(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Written> {
        let resp = Self::check(self.send(method, path, body).await?).await?;
        let outcome = resp
            .headers()
            .get("x-flotilla-outcome")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let object = resp.json().await.context("reading the response")?;
        Ok(Written { object, outcome })
    }

    /// Reads the object at `path`, lets `edit` change it and writes it back, retried when
    /// someone else changed it meanwhile (the write carries the resourceVersion read). `edit`
    /// says whether it changed anything; nothing is written when it did not. Returns the
    /// written object, or `None` when there was nothing to write.
    pub async fn edit(
        &self,
        path: &str,
        mut edit: impl FnMut(&mut Value) -> anyhow::Result<bool>,
    ) -> anyhow::Result<Option<Value>> {
        for _ in 0..5 {
            let mut obj = self.get(path).await?;
            if !edit(&mut obj)? {
                return Ok(None);
            }
            match self.write(Method::PUT, path, Some(&obj)).await {
                Ok(w) => return Ok(Some(w.object)),
                Err(e) if ApiFailure::is(&e, reqwest::StatusCode::CONFLICT) => continue,
                Err(e) => return Err(e),
            }
        }
        anyhow::bail!("{path} kept changing while it was being edited; try again")
    }

    /// Copies a plain-text response body to `out` as it arrives (`logs`, `logs -f`).
    pub async fn copy_to(&self, path: &str, out: &mut (impl std::io::Write + ?Sized)) -> anyhow::Result<()> {
        let resp = Self::check(self.send(Method::GET, path, None).await?).await?;
        let mut stream = resp.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| anyhow!("the log stream ended early: {}", root_cause(&e)))?;
            out.write_all(&chunk)?;
            out.flush()?;
        }
        Ok(())
    }

    /// Streams watch events to `on_event` until the server ends the stream.
    pub async fn watch(
        &self,
        path: &str,
        mut on_event: impl FnMut(Value) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let resp = Self::check(self.send(Method::GET, path, None).await?).await?;
        let mut stream = resp.bytes_stream();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(chunk) = stream.next().await {
            buf.extend_from_slice(&chunk.context("reading the watch stream")?);
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                let ev: Value = serde_json::from_slice(&line).context("a watch event is not JSON")?;
                if ev.get("type").and_then(Value::as_str) == Some("ERROR") {
                    let msg = ev.pointer("/object/message").and_then(Value::as_str).unwrap_or("watch error");
                    bail!("{msg}");
                }
                on_event(ev)?;
            }
        }
        Ok(())
    }
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

fn read_client_file(dir: &Path) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(CLIENT_FILE)).ok()?;
    serde_json::from_str(&text).ok()
}
