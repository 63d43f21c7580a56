//! Runs one probe, bounded by its timeout: a command inside the container (through the
//! single-threaded `container-exec` helper, which joins the container with libcontainer's tenant
//! builder), an HTTP(S) GET, or a TCP connect. HTTP and TCP probes without a `host` connect to
//! the pod from inside its network namespace (its loopback: pods have no other interface yet);
//! with a `host`, from the node, as the kubelet does. Nothing here can block longer than the
//! timeout plus a small margin.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Outcome;

/// Where a network probe connects from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetFrom {
    /// The node's own network namespace.
    Host,
    /// A network namespace file (the pod sandbox's `/proc/<pid>/ns/net`).
    Netns(PathBuf),
}

/// Most of a probe's output kept for its failure message.
const OUTPUT_LIMIT: usize = 10 * 1024;

/// Runs `cmd` in the container `id` (libcontainer state under `state_root`).
pub fn exec(agent_bin: &Path, state_root: &Path, id: &str, cmd: &[String], timeout: Duration) -> Outcome {
    if cmd.is_empty() {
        return Outcome::Failure("exec probe has no command".into());
    }
    let out = match tempfile::tempfile() {
        Ok(f) => f,
        Err(e) => return Outcome::Failure(format!("cannot capture the probe's output: {e}")),
    };
    let spawned = Command::new(agent_bin)
        .arg("container-exec")
        .arg("--root")
        .arg(state_root)
        .arg("--id")
        .arg(id)
        .arg("--timeout-ms")
        .arg(timeout.as_millis().to_string())
        .arg("--")
        .args(cmd)
        .stdin(Stdio::null())
        .stdout(out.try_clone().map(Stdio::from).unwrap_or(Stdio::null()))
        .stderr(out.try_clone().map(Stdio::from).unwrap_or(Stdio::null()))
        .spawn();
    let mut child = match spawned {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("cannot start the exec helper: {e}")),
    };
    // The helper enforces the timeout itself; this is the backstop should it hang.
    let deadline = Instant::now() + timeout + Duration::from_secs(5);
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let output = read_start(out);
    match status.and_then(|s| s.code()) {
        Some(0) => Outcome::Success,
        Some(crate::runtime::exec::TIMED_OUT) | None => {
            Outcome::Failure(format!("command {cmd:?} timed out after {}s", timeout.as_secs()))
        }
        Some(code) => {
            let output = output.trim();
            if output.is_empty() {
                Outcome::Failure(format!("command {cmd:?} exited with {code}"))
            } else {
                Outcome::Failure(format!("command {cmd:?} exited with {code}: {output}"))
            }
        }
    }
}

fn read_start(mut f: std::fs::File) -> String {
    use std::io::Seek;
    let mut buf = Vec::new();
    let _ = f.seek(std::io::SeekFrom::Start(0));
    let _ = f.take(OUTPUT_LIMIT as u64).read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Connects to `host:port`.
pub fn tcp(from: &NetFrom, host: &str, port: u16, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    match in_net(from, || connect(host, port, deadline)) {
        Ok(_) => Outcome::Success,
        Err(e) => Outcome::Failure(format!("dial tcp {}: {e}", join_host_port(host, port))),
    }
}

/// What an HTTP probe asks for.
#[derive(Debug, Clone)]
pub struct HttpGet<'a> {
    pub https: bool,
    pub host: &'a str,
    pub port: u16,
    pub path: &'a str,
    pub headers: &'a [(String, String)],
}

/// GETs the URL; 200 to 399 is a success (redirects are not followed, which the kubelet also
/// counts as a success for other hosts).
pub fn http(from: &NetFrom, req: &HttpGet, timeout: Duration) -> Outcome {
    let deadline = Instant::now() + timeout;
    let url = format!(
        "{}://{}{}",
        if req.https { "https" } else { "http" },
        join_host_port(req.host, req.port),
        req.path
    );
    let result = in_net(from, || {
        let stream = connect(req.host, req.port, deadline)?;
        let request = request_bytes(req);
        let head = if req.https {
            tls_exchange(stream, req.host, &request, deadline)?
        } else {
            plain_exchange(stream, &request, deadline)?
        };
        parse_status(&head)
    });
    match result {
        Ok(code) if (200..400).contains(&code) => Outcome::Success,
        Ok(code) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
        Err(e) => Outcome::Failure(format!("Get {url:?}: {e}")),
    }
}

fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn request_bytes(req: &HttpGet) -> Vec<u8> {
    let path = if req.path.is_empty() { "/" } else { req.path };
    let mut r = format!("GET {path} HTTP/1.1\r\n");
    let has = |name: &str| req.headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(name));
    if !has("host") {
        r.push_str(&format!("Host: {}\r\n", join_host_port(req.host, req.port)));
    }
    if !has("user-agent") {
        r.push_str("User-Agent: kube-probe/flotilla\r\n");
    }
    if !has("accept") {
        r.push_str("Accept: */*\r\n");
    }
    for (n, v) in req.headers {
        // Header names and values cannot carry line breaks (validation refuses them too).
        if !n.contains(['\r', '\n']) && !v.contains(['\r', '\n']) {
            r.push_str(&format!("{n}: {v}\r\n"));
        }
    }
    r.push_str("Connection: close\r\n\r\n");
    r.into_bytes()
}

/// Runs `f` in the network namespace `from` names: on a thread of its own that enters the
/// namespace (a network namespace is per thread), so the caller's thread never changes.
fn in_net<T: Send>(from: &NetFrom, f: impl FnOnce() -> std::io::Result<T> + Send) -> std::io::Result<T> {
    match from {
        NetFrom::Host => f(),
        NetFrom::Netns(path) => std::thread::scope(|s| {
            s.spawn(|| {
                let ns = std::fs::File::open(path)?;
                nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET).map_err(std::io::Error::from)?;
                f()
            })
            .join()
            .unwrap_or_else(|_| Err(std::io::Error::other("the probe thread panicked")))
        }),
    }
}

fn remaining(deadline: Instant) -> std::io::Result<Duration> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "i/o timeout"))
    } else {
        Ok(left)
    }
}

fn connect(host: &str, port: u16, deadline: Instant) -> std::io::Result<TcpStream> {
    let addrs: Vec<SocketAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => (host, port).to_socket_addrs()?.collect(),
    };
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, remaining(deadline)?) {
            Ok(s) => return Ok(s),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Sends the request and reads the response head (up to the blank line, or the limit).
fn plain_exchange(mut s: TcpStream, request: &[u8], deadline: Instant) -> std::io::Result<Vec<u8>> {
    s.set_write_timeout(Some(remaining(deadline)?))?;
    s.write_all(request)?;
    read_head(&mut s, |s, d| s.set_read_timeout(Some(d)), deadline)
}

fn read_head<S: Read>(
    s: &mut S,
    set_timeout: impl Fn(&S, Duration) -> std::io::Result<()>,
    deadline: Instant,
) -> std::io::Result<Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    while head.len() < OUTPUT_LIMIT && !head.windows(4).any(|w| w == b"\r\n\r\n") {
        set_timeout(s, remaining(deadline)?)?;
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(head)
}

fn tls_exchange(tcp: TcpStream, host: &str, request: &[u8], deadline: Instant) -> std::io::Result<Vec<u8>> {
    let config = tls_config().map_err(std::io::Error::other)?;
    let name = rustls::pki_types::ServerName::try_from(host.to_string()).map_err(std::io::Error::other)?;
    let conn = rustls::ClientConnection::new(config, name).map_err(std::io::Error::other)?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    tls.sock.set_write_timeout(Some(remaining(deadline)?))?;
    tls.sock.set_read_timeout(Some(remaining(deadline)?))?;
    tls.write_all(request)?;
    read_head(&mut tls, |s, d| s.sock.set_read_timeout(Some(d)), deadline)
}

/// HTTPS probes do not verify the server's certificate, like the kubelet's
/// (`InsecureSkipVerify`): a probe asks whether the application answers, not who it is.
fn tls_config() -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = Arc::new(NoVerify(provider.clone()));
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth(),
    ))
}

#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The status code of `HTTP/1.x NNN ...`.
fn parse_status(head: &[u8]) -> std::io::Result<u16> {
    let line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    match (parts.next(), parts.next().and_then(|c| c.parse::<u16>().ok())) {
        (Some(v), Some(code)) if v.starts_with("HTTP/") => Ok(code),
        _ if head.is_empty() => Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "EOF")),
        _ => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("malformed HTTP response {:?}", line.chars().take(80).collect::<String>()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn serve_once(response: &'static [u8]) -> u16 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = s.write_all(response);
            }
        });
        port
    }

    fn get(port: u16) -> Outcome {
        let req = HttpGet { https: false, host: "127.0.0.1", port, path: "/healthz", headers: &[] };
        http(&NetFrom::Host, &req, Duration::from_secs(2))
    }

    #[test]
    fn http_status_codes_decide() {
        assert_eq!(get(serve_once(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")), Outcome::Success);
        assert_eq!(get(serve_once(b"HTTP/1.0 302 Found\r\nLocation: /x\r\n\r\n")), Outcome::Success);
        assert_eq!(
            get(serve_once(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")),
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        assert!(
            matches!(get(serve_once(b"garbage\r\n\r\n")), Outcome::Failure(m) if m.contains("malformed"))
        );
    }

    #[test]
    fn a_silent_server_times_out_and_a_closed_port_fails() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t0 = Instant::now();
        let req = HttpGet { https: false, host: "127.0.0.1", port, path: "/", headers: &[] };
        let out = http(&NetFrom::Host, &req, Duration::from_millis(300));
        assert!(matches!(out, Outcome::Failure(_)), "{out:?}");
        assert!(t0.elapsed() < Duration::from_secs(2), "bounded by the timeout");
        drop(l);
        let out = tcp(&NetFrom::Host, "127.0.0.1", port, Duration::from_secs(1));
        assert!(matches!(&out, Outcome::Failure(m) if m.contains("dial tcp 127.0.0.1")), "{out:?}");
    }

    #[test]
    fn requests_carry_the_probe_headers() {
        let headers =
            vec![("X-Probe".to_string(), "yes".to_string()), ("Host".to_string(), "app".to_string())];
        let req = HttpGet { https: false, host: "127.0.0.1", port: 80, path: "", headers: &headers };
        let text = String::from_utf8(request_bytes(&req)).unwrap();
        assert!(text.starts_with("GET / HTTP/1.1\r\n"));
        assert!(text.contains("X-Probe: yes\r\n") && text.contains("Host: app\r\n"));
        assert!(!text.contains("Host: 127.0.0.1"), "an explicit Host header wins");
    }
}
