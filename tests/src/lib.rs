//! Helpers for Flotilla's end-to-end tests: locating the real binaries and the test corpora.
//!
//! The binaries are built by `cargo build --workspace --bins` before `cargo test` (the README's
//! test command does both); a missing binary fails the test with that instruction.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

pub mod device;
pub mod fleet;

/// `target/<profile>/` of the running test executable.
fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test-binary>
    exe.parent().and_then(Path::parent).expect("test executable lives in target/<profile>/deps").to_path_buf()
}

/// Path of a workspace binary (`flotilla-hub`, `flotilla-agent`).
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the end-to-end tests",
        path.display()
    );
    path
}

/// `tests/corpus/<sub>`.
pub fn corpus(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus").join(sub)
}

/// Runs `flotilla-hub` with `args` in `cwd`, feeding `stdin`.
pub fn hub(args: &[&str], cwd: &Path, stdin: Option<&[u8]>) -> Output {
    run(&bin("flotilla-hub"), args, cwd, stdin)
}

pub fn run(program: &Path, args: &[&str], cwd: &Path, stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(input).expect("write stdin");
    }
    child.wait_with_output().expect("wait for child")
}

/// A `flotilla-hub serve` process on a free loopback port with its own data directory. It is
/// killed (SIGKILL) when dropped.
pub struct Hub {
    pub child: std::process::Child,
    pub dir: PathBuf,
    pub url: String,
    pub token: String,
    pub log: PathBuf,
    /// The `serve` arguments it was started with (a restart passes them again).
    pub args: Vec<String>,
}

impl Hub {
    /// Starts a hub in `dir` (kept across restarts) and waits until it is ready.
    pub fn start(dir: &Path) -> Hub {
        Self::start_with(dir, &[])
    }

    pub fn start_with(dir: &Path, extra: &[&str]) -> Hub {
        let client_file = dir.join("client.json");
        let _ = std::fs::remove_file(&client_file);
        let log = dir.with_extension("log");
        let log_file =
            std::fs::OpenOptions::new().create(true).append(true).open(&log).expect("hub log file");
        let child = Command::new(bin("flotilla-hub"))
            .args(["--data-dir", dir.to_str().expect("utf-8 path"), "serve", "--listen", "127.0.0.1:0"])
            // A free port for the embedded broker unless the caller picks one.
            .args(if extra.contains(&"--mqtt-listen") {
                &[][..]
            } else {
                &["--mqtt-listen", "127.0.0.1:0"][..]
            })
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("log"))
            .stderr(log_file)
            .spawn()
            .expect("start flotilla-hub serve");
        let args = extra.iter().map(|a| a.to_string()).collect();
        let mut hub =
            Hub { child, dir: dir.to_path_buf(), url: String::new(), token: String::new(), log, args };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = hub.child.try_wait() {
                panic!("flotilla-hub exited early ({status}); log:\n{}", hub.log_text());
            }
            if let Ok(text) = std::fs::read_to_string(&client_file) {
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    hub.url = v["server"].as_str().unwrap_or_default().to_string();
                    hub.token = std::fs::read_to_string(dir.join("admin.token"))
                        .unwrap_or_default()
                        .trim()
                        .to_string();
                    if hub.ready() {
                        return hub;
                    }
                }
            }
            assert!(
                std::time::Instant::now() < deadline,
                "hub not ready within 30 s; log:\n{}",
                hub.log_text()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    fn ready(&self) -> bool {
        // Readiness only: an HTTPS hub's certificate is checked by the tests that care.
        let client = reqwest::blocking::Client::builder()
            .danger_accept_invalid_certs(true)
            .build()
            .expect("HTTP client");
        let url = format!("{}/readyz", self.url);
        client.get(url).send().map(|r| r.status().is_success()).unwrap_or(false)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Runs the CLI against this hub.
    pub fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut full = vec!["--data-dir", self.dir.to_str().expect("utf-8 path")];
        full.extend_from_slice(args);
        run(&bin("flotilla-hub"), &full, &self.dir, stdin)
    }

    /// An authenticated HTTP client and the base URL.
    pub fn http(&self) -> HubHttp {
        HubHttp { client: reqwest::blocking::Client::new(), url: self.url.clone(), token: self.token.clone() }
    }

    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGKILL, then a new hub on the same data directory with the same arguments.
    pub fn crash_and_restart(self) -> Hub {
        let (dir, args) = (self.dir.clone(), self.args.clone());
        self.kill();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        Hub::start_with(&dir, &args)
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill").args(["-TERM", &self.child.id().to_string()]).status();
        self.child.wait().expect("wait for hub")
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Raw HTTP access to the API, for checking status codes and bodies.
pub struct HubHttp {
    pub client: reqwest::blocking::Client,
    pub url: String,
    pub token: String,
}

impl HubHttp {
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        content_type: &str,
    ) -> (u16, serde_json::Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, format!("{}{path}", self.url)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.header("content-type", content_type).body(b.to_string());
        }
        let resp = req.send().expect("request");
        let code = resp.status().as_u16();
        let text = resp.text().unwrap_or_default();
        (code, serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)))
    }

    pub fn get(&self, path: &str) -> (u16, serde_json::Value) {
        self.request("GET", path, None, "")
    }

    pub fn send_json(&self, method: &str, path: &str, body: &serde_json::Value) -> (u16, serde_json::Value) {
        self.request(method, path, Some(&body.to_string()), "application/json")
    }
}

/// A small CA and a server certificate for 127.0.0.1 and localhost signed by it, as an
/// operator would make them with openssl.
pub struct Pki {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

pub fn test_pki(dir: &Path) -> Pki {
    let p = |f: &str| dir.join(f).to_str().expect("utf-8").to_string();
    let (ca_key, ca, key, csr, cert, ext) =
        (p("ca.key"), p("ca.crt"), p("hub.key"), p("hub.csr"), p("hub.crt"), p("ext.cnf"));
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
        .expect("ext");
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let steps: Vec<Vec<&str>> = vec![
        [
            &["req", "-x509"][..],
            &ec,
            &["-days", "2", "-subj", "/CN=flotilla-test-ca", "-keyout", &ca_key, "-out", &ca],
        ]
        .concat(),
        [&["req"][..], &ec, &["-subj", "/CN=localhost", "-keyout", &key, "-out", &csr]].concat(),
        vec![
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &ca,
            "-CAkey",
            &ca_key,
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &cert,
        ],
    ];
    for args in steps {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl is needed for the TLS tests: apt-get install openssl");
        assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Pki { ca: ca.into(), cert: cert.into(), key: key.into() }
}

/// A fresh temporary directory for one test.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("flotilla-e2e-").tempdir().expect("temp dir")
}
