//! Crash safety: SIGKILL the hub again and again while clients apply objects as fast as they
//! can. After every restart, every acknowledged apply is there (at least as new as the last
//! acknowledged write of each name), `PRAGMA integrity_check` is ok, and the hub serves again.
//!
//! `FLOTILLA_CRASH_CYCLES` sets the number of kill cycles (200 by default; `bench/` runs more).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flotilla_tests::{tempdir, Hub};
use serde_json::json;

const WRITERS: usize = 3;
const NAMES_PER_WRITER: u64 = 40;

/// A small deterministic PRNG (xorshift), seeded from the clock and printed, so a failing run
/// can be replayed with FLOTILLA_CRASH_SEED.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

#[test]
fn sigkill_during_applies_loses_nothing_acknowledged() {
    let cycles: usize =
        std::env::var("FLOTILLA_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let seed: u64 =
        std::env::var("FLOTILLA_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| {
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
        });
    eprintln!("crash test: {cycles} cycles, FLOTILLA_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let tmp = tempdir();
    let dir = tmp.path().join("hub");
    // name -> (highest acknowledged sequence, highest sequence sent)
    let state: Arc<Mutex<HashMap<String, (u64, u64)>>> = Arc::new(Mutex::new(HashMap::new()));
    let mut seq_base = 0u64;
    let mut total_acked = 0usize;

    for cycle in 0..cycles {
        let hub = Hub::start(&dir);
        verify(&hub, &state, cycle);

        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for w in 0..WRITERS {
            let (url, token, state, stop) = (hub.url.clone(), hub.token.clone(), state.clone(), stop.clone());
            let start_seq = seq_base + 1;
            threads.push(std::thread::spawn(move || {
                let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
                let mut acked = 0;
                let mut seq = start_seq;
                while !stop.load(Ordering::SeqCst) {
                    let name = format!("w{w}-{}", seq % NAMES_PER_WRITER);
                    state.lock().unwrap().entry(name.clone()).or_insert((0, 0)).1 = seq;
                    let body = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"seq": seq.to_string()}});
                    let r = client
                        .patch(format!("{url}/api/v1/namespaces/default/configmaps/{name}"))
                        .bearer_auth(&token)
                        .json(&body)
                        .send();
                    match r {
                        Ok(resp) if resp.status().is_success() => {
                            let mut st = state.lock().unwrap();
                            let e = st.get_mut(&name).unwrap();
                            e.0 = e.0.max(seq);
                            acked += 1;
                        }
                        Ok(resp) => panic!("apply failed with {}: {}", resp.status(), resp.text().unwrap_or_default()),
                        Err(_) => break, // the hub is gone
                    }
                    seq += 1;
                }
                (acked, seq)
            }));
        }
        std::thread::sleep(Duration::from_millis(20 + rng.next() % 180));
        hub.kill(); // SIGKILL, mid-write
        stop.store(true, Ordering::SeqCst);
        for t in threads {
            let (acked, last) = t.join().unwrap();
            total_acked += acked;
            seq_base = seq_base.max(last);
        }
        // Writers of the next cycle use fresh, larger sequence numbers.
        seq_base += 1;
    }
    let hub = Hub::start(&dir);
    verify(&hub, &state, cycles);
    eprintln!("crash test: {total_acked} acknowledged applies over {cycles} SIGKILLs");
    assert!(total_acked > cycles, "the writers barely wrote anything ({total_acked})");
}

fn verify(hub: &Hub, state: &Arc<Mutex<HashMap<String, (u64, u64)>>>, cycle: usize) {
    let (code, list) = hub.http().get("/api/v1/namespaces/default/configmaps");
    assert_eq!(code, 200, "cycle {cycle}: the hub does not serve after restart");
    let stored: HashMap<String, u64> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap().to_string();
            let seq = o["data"]["seq"].as_str().and_then(|s| s.parse().ok()).unwrap_or(0);
            (name, seq)
        })
        .collect();
    for (name, (acked, sent)) in state.lock().unwrap().iter() {
        if *acked == 0 {
            continue;
        }
        let got = stored.get(name).copied();
        assert!(
            got.is_some_and(|g| g >= *acked && g <= *sent),
            "cycle {cycle}: {name} was acknowledged at seq {acked} (last sent {sent}) but the store has {got:?}"
        );
    }
    let conn = rusqlite::Connection::open_with_flags(
        hub.dir.join("flotilla.db"),
        rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
    )
    .unwrap();
    let check: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(check, "ok", "cycle {cycle}: integrity_check");
}
