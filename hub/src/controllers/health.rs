//! Health of the control loops, for `flotilla-hub status`: every loop records when it finishes
//! a round, and a component (the scheduler, the controller manager) is Healthy while each of
//! its loops runs and finished a round within its resync period plus a margin. `assess` is
//! pure; the registry only keeps the records.
//!
//! A loop is watched by spawning it through [`Health::watch`]: the loop's [`super::Rounds`]
//! (or a loop of its own that calls [`round_done`]) reports its rounds through a task-local,
//! so the loops' signatures carry nothing for it; a loop that returns or panics is recorded
//! as stopped.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::components::Component;

/// How much longer than its resync period a loop may go without finishing a round (a round
/// under load, its settling) before it counts as stuck.
pub const STALL_MARGIN: Duration = Duration::from_secs(60);

/// What the registry knows about one loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoopRecord {
    /// The component it belongs to (`scheduler`, `controller-manager`).
    pub component: &'static str,
    /// A round starts at least this often.
    pub resync: Duration,
    /// When it was spawned.
    pub started: Instant,
    /// When it last finished a round.
    pub last_round: Option<Instant>,
    /// Why it no longer runs (it returned, or panicked).
    pub stopped: Option<&'static str>,
}

/// The components `status` always lists, watched or not.
pub const COMPONENTS: [&str; 2] = ["scheduler", "controller-manager"];

/// Pure: each of [`COMPONENTS`] from the records of its loops (by loop name) at `now`.
pub fn assess(loops: &BTreeMap<&'static str, LoopRecord>, now: Instant) -> Vec<Component> {
    COMPONENTS
        .into_iter()
        .map(|component| {
            let mine: Vec<(&str, &LoopRecord)> =
                loops.iter().filter(|(_, r)| r.component == component).map(|(n, r)| (*n, r)).collect();
            if mine.is_empty() {
                return Component { name: component, healthy: false, message: "not running".into() };
            }
            let problems: Vec<String> = mine
                .iter()
                .filter_map(|(name, r)| {
                    if let Some(why) = r.stopped {
                        return Some(format!("{name} loop stopped ({why})"));
                    }
                    let since = now.saturating_duration_since(r.last_round.unwrap_or(r.started));
                    (since > r.resync + STALL_MARGIN).then(|| {
                        format!(
                            "{name} loop finished no round for {} s (it should every {} s)",
                            since.as_secs(),
                            r.resync.as_secs().max(1)
                        )
                    })
                })
                .collect();
            if problems.is_empty() {
                let message =
                    if mine.len() == 1 { "ok".to_string() } else { format!("ok ({} loops)", mine.len()) };
                Component { name: component, healthy: true, message }
            } else {
                Component { name: component, healthy: false, message: problems.join("; ") }
            }
        })
        .collect()
}

/// The shared registry of loop records. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Health {
    loops: Arc<Mutex<BTreeMap<&'static str, LoopRecord>>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A record is plain data: a panic while it was held leaves it usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

tokio::task_local! {
    static BEAT: Beat;
}

/// One watched loop's handle on its record.
#[derive(Clone)]
struct Beat {
    health: Health,
    name: &'static str,
}

impl Beat {
    fn update(&self, f: impl FnOnce(&mut LoopRecord)) {
        if let Some(r) = lock(&self.health.loops).get_mut(self.name) {
            f(r);
        }
    }
}

/// Marks the loop's record stopped when its future is dropped: after it returned, or when it
/// panicked (tokio drops a panicked task's future after catching the panic) or was cancelled.
struct StopGuard {
    beat: Beat,
    returned: bool,
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        let why = if self.returned { "it returned" } else { "it panicked or was cancelled" };
        self.beat.update(|r| r.stopped = Some(why));
    }
}

impl Health {
    /// Runs `fut` as the loop `name` of `component`, which starts a round at least every
    /// `resync`.
    pub fn watch<F>(
        &self,
        component: &'static str,
        name: &'static str,
        resync: Duration,
        fut: F,
    ) -> impl Future<Output = F::Output> + Send + 'static
    where
        F: Future + Send + 'static,
    {
        lock(&self.loops).insert(
            name,
            LoopRecord { component, resync, started: Instant::now(), last_round: None, stopped: None },
        );
        let beat = Beat { health: self.clone(), name };
        async move {
            let mut guard = StopGuard { beat: beat.clone(), returned: false };
            let out = BEAT.scope(beat, fut).await;
            guard.returned = true;
            out
        }
    }

    /// The components' health now.
    pub fn components(&self) -> Vec<Component> {
        assess(&lock(&self.loops), Instant::now())
    }
}

/// Called by a watched loop when it finishes a round (a no-op outside [`Health::watch`]).
pub fn round_done() {
    let _ = BEAT.try_with(|b| b.update(|r| r.last_round = Some(Instant::now())));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(component: &'static str, resync: u64, started: Instant) -> LoopRecord {
        LoopRecord {
            component,
            resync: Duration::from_secs(resync),
            started,
            last_round: None,
            stopped: None,
        }
    }

    /// (what, the loops' records by name, each component's (healthy, message)).
    type Case<'a> = (&'a str, Vec<(&'static str, LoopRecord)>, [(bool, &'a str); 2]);

    fn check(cases: Vec<Case>, now: Instant) {
        for (what, loops, expected) in cases {
            let loops: BTreeMap<_, _> = loops.into_iter().collect();
            let got: Vec<(bool, String)> =
                assess(&loops, now).into_iter().map(|c| (c.healthy, c.message)).collect();
            let expected: Vec<(bool, String)> = expected.iter().map(|(h, m)| (*h, m.to_string())).collect();
            assert_eq!(got, expected, "{what}");
        }
    }

    #[test]
    fn components_are_healthy_while_their_loops_finish_rounds() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_secs(600);
        let at = |secs_before_now: u64| Some(now - Duration::from_secs(secs_before_now));
        let ran =
            |component, resync, ago| LoopRecord { last_round: at(ago), ..record(component, resync, t0) };
        check(
            vec![
                ("nothing watched", vec![], [(false, "not running"), (false, "not running")]),
                (
                    "recent rounds",
                    vec![
                        ("scheduling", ran("scheduler", 5, 3)),
                        ("deployments", ran("controller-manager", 5, 1)),
                        ("volume-binding", ran("controller-manager", 10, 12)),
                    ],
                    [(true, "ok"), (true, "ok (2 loops)")],
                ),
                (
                    "just started, no round yet",
                    vec![
                        ("scheduling", record("scheduler", 5, now - Duration::from_secs(1))),
                        ("jobs", record("controller-manager", 2, now)),
                    ],
                    [(true, "ok"), (true, "ok")],
                ),
                (
                    "a stuck round and a loop that ended",
                    vec![
                        ("scheduling", ran("scheduler", 5, 66)),
                        (
                            "jobs",
                            LoopRecord { stopped: Some("it returned"), ..ran("controller-manager", 2, 1) },
                        ),
                        ("cronjobs", ran("controller-manager", 5, 2)),
                    ],
                    [
                        (false, "scheduling loop finished no round for 66 s (it should every 5 s)"),
                        (false, "jobs loop stopped (it returned)"),
                    ],
                ),
                (
                    "never a round since its start",
                    vec![
                        ("scheduling", record("scheduler", 5, t0)),
                        ("jobs", ran("controller-manager", 2, 0)),
                    ],
                    [
                        (false, "scheduling loop finished no round for 600 s (it should every 5 s)"),
                        (true, "ok"),
                    ],
                ),
            ],
            now,
        );
    }

    #[tokio::test]
    async fn watched_loops_record_rounds_and_their_end() {
        let health = Health::default();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let task =
            tokio::spawn(health.watch("scheduler", "scheduling", Duration::from_secs(5), async move {
                round_done();
                let _ = wait.await;
            }));
        let ok = tokio::spawn(health.watch("controller-manager", "jobs", Duration::from_secs(2), async {
            round_done();
            std::future::pending::<()>().await
        }));
        let failing =
            tokio::spawn(health.watch("controller-manager", "cronjobs", Duration::from_secs(2), async {
                panic!("a bug in a loop");
            }));
        assert!(failing.await.is_err());
        tokio::task::yield_now().await;
        assert_eq!(lock(&health.loops)["cronjobs"].stopped, Some("it panicked or was cancelled"));
        let _ = go.send(());
        task.await.unwrap();
        let c = health.components();
        assert_eq!((c[0].healthy, c[0].message.as_str()), (false, "scheduling loop stopped (it returned)"));
        assert_eq!(
            (c[1].healthy, c[1].message.as_str()),
            (false, "cronjobs loop stopped (it panicked or was cancelled)")
        );
        assert!(lock(&health.loops)["jobs"].last_round.is_some());
        ok.abort();
    }
}
