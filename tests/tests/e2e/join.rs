//! Joining a node with a token: `flotilla-hub token create` on an HTTPS hub, `flotilla-agent
//! join` checks the hub's CA against the token, writes its configuration (0600) and the agent
//! then connects with it. Tokens are single-use and expire; a token whose CA hash does not
//! match the hub (someone posing as it) is refused before anything is sent.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use flotilla_tests::device::{wait_for, Agent, Device};
use flotilla_tests::{bin, test_pki, Hub};
use serde_json::Value;

fn join(hub_url: &str, token: &str, node: &str, config: &Path) -> Output {
    Command::new(bin("flotilla-agent"))
        .args([
            "join",
            "--hub",
            hub_url,
            "--token",
            token,
            "--node",
            node,
            "--config",
            config.to_str().unwrap(),
        ])
        .output()
        .unwrap()
}

fn token(hub: &Hub, ttl: &str) -> String {
    let out = hub.cli(&["token", "create", "--ttl", ttl], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "succeeded: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_node_joins_with_a_single_use_token_that_pins_the_hubs_ca() {
    let tmp = flotilla_tests::tempdir();
    let pki = test_pki(tmp.path());
    let (cert, key, ca) = (pki.cert.to_str().unwrap(), pki.key.to_str().unwrap(), pki.ca.to_str().unwrap());
    let hub =
        Hub::start_with(&tmp.path().join("hub"), &["--tls-cert", cert, "--tls-key", key, "--tls-ca", ca]);
    assert!(hub.url.starts_with("https://"), "{}", hub.url);

    let t = token(&hub, "10m");
    let digest = Command::new("sha256sum").arg(&pki.ca).output().unwrap();
    let ca_hash = String::from_utf8_lossy(&digest.stdout).split(' ').next().unwrap().to_string();
    assert!(t.starts_with(&format!("FLT1.{ca_hash}.")), "the token pins the CA: {t}");

    // Someone posing as the hub (a token with another CA hash) is not trusted.
    let parts: Vec<&str> = t.split('.').collect();
    let forged = format!("FLT1.{}.{}.{}", "0".repeat(64), parts[2], parts[3]);
    let config = tmp.path().join("etc/flotilla/agent.json");
    assert!(err(&join(&hub.url, &forged, "pi-9", &config)).contains("does not match the token"));
    assert!(!config.exists());
    // Over plain HTTP a pinned token is refused.
    let http = hub.url.replacen("https://", "http://", 1);
    assert!(err(&join(&http, &t, "pi-9", &config)).contains("must be reached over https://"));
    assert!(err(&join(&hub.url, "K10abc::server:def", "pi-9", &config)).contains("not a Flotilla join token"));

    // A join the hub refuses (a name it does not accept) leaves the token usable.
    let refused = err(&join(&hub.url, &t, "flotilla-hub-x", &config));
    assert!(refused.contains("names starting with flotilla-hub are the hub's own"), "{refused}");
    assert!(!config.exists());

    // The real join: the configuration is written, readable by root only.
    let out = join(&hub.url, &t, "pi-9", &config);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::metadata(&config).unwrap().permissions().mode() & 0o777, 0o600);
    let cfg: Value = serde_json::from_slice(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(cfg["node"], "pi-9");
    assert!(cfg["broker"].as_str().unwrap().starts_with("mqtt://"), "{cfg}");

    // Single use; and a node that joined cannot be taken over with another token.
    assert!(err(&join(&hub.url, &t, "pi-10", &tmp.path().join("x.json"))).contains("not valid"));
    let t2 = token(&hub, "10m");
    assert!(err(&join(&hub.url, &t2, "pi-9", &tmp.path().join("x.json"))).contains("has joined already"));
    // Expired: tried once the expiry `token create` printed has passed.
    let out = hub.cli(&["token", "create", "--ttl", "1s"], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let short = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let until = stderr.split("until ").nth(1).and_then(|s| s.split_whitespace().next()).unwrap_or_default();
    let expires = time::OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("no expiry in {stderr:?}: {e}"));
    wait_for("the token's expiry", 10, &[hub.log.as_path()], || time::OffsetDateTime::now_utc() > expires);
    assert!(err(&join(&hub.url, &short, "pi-11", &tmp.path().join("y.json"))).contains("not valid"));
    // Tokens never reach a node's desired state, and the listing shows no secret in clear.
    let secrets = hub.cli(&["get", "secrets", "-n", "flotilla-system", "-o", "json"], None);
    assert!(!String::from_utf8_lossy(&secrets.stdout).contains(parts[3]));

    // The credentials work: the agent connects and the node turns Ready.
    if !nix::unistd::geteuid().is_root() {
        assert!(std::env::var_os("CI").is_none(), "the agent part needs root (CI runs it as root)");
        return;
    }
    let (state, run) = (tmp.path().join("agent"), tmp.path().join("run"));
    let _device = Device::new(&state, &run);
    let agent = Agent::start(&state, &run, &config, None);
    wait_for("pi-9 Ready", 60, &[hub.log.as_path(), agent.log.as_path()], || {
        let out = hub.cli(&["get", "node", "pi-9", "-o", "json"], None);
        serde_json::from_slice::<Value>(&out.stdout).is_ok_and(|n| {
            n["status"]["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
        })
    });
}
