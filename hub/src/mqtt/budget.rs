//! What one node may send (pure): a size cap per topic and a budget of bytes and messages per
//! node, refilled over time (token buckets). Checked before anything is decoded, in the
//! embedded broker's publish hook (so a flood never reaches the hub's queues) and again by the
//! hub for an external broker. Sized for a small hub: a node's legitimate traffic (a report on
//! change, a heartbeat every 10 s, a few events, a log being read) stays far below it; one
//! node flooding can cost the hub at most its burst.
//! `Throttle` says how often a refusal is logged: a flood of bad messages gives a line a
//! minute, with the count, not a line each.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use flotilla_shared::wire::topics::NodeTopic;

/// The largest message a node may publish on each of its topics.
pub fn max_size(topic: &NodeTopic) -> usize {
    match topic {
        // A report of 110 pods with their container statuses is ~200 KB.
        NodeTopic::Status => 1 << 20,
        NodeTopic::Events => 256 << 10,
        NodeTopic::Presence => 4 << 10,
        // 32 KiB chunks of log data and their framing.
        NodeTopic::LogResponse(_) => 64 << 10,
        // The hub's own topics: nodes never publish there.
        NodeTopic::Desired | NodeTopic::LogRequest => 0,
    }
}

/// The rates and bursts of a node's budget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub bytes_per_sec: f64,
    pub burst_bytes: f64,
    pub messages_per_sec: f64,
    pub burst_messages: f64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            bytes_per_sec: f64::from(1u32 << 20),
            burst_bytes: f64::from(8u32 << 20),
            messages_per_sec: 50.0,
            burst_messages: 500.0,
        }
    }
}

/// The verdict on one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Take,
    /// Larger than its topic allows.
    TooLarge {
        max: usize,
    },
    /// The node has spent its budget; it refills over time.
    OverBudget,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    bytes: f64,
    messages: f64,
    at: Instant,
}

/// Every node's budget.
#[derive(Debug, Default)]
pub struct Budget {
    limits: Limits,
    buckets: HashMap<String, Bucket>,
}

impl Budget {
    pub fn new(limits: Limits) -> Budget {
        Budget { limits, buckets: HashMap::new() }
    }

    /// Whether `node` may send `bytes` on `topic` at `now`; a message taken is paid for.
    pub fn admit(&mut self, node: &str, topic: &NodeTopic, bytes: usize, now: Instant) -> Verdict {
        let max = max_size(topic);
        if bytes > max {
            return Verdict::TooLarge { max };
        }
        let l = self.limits;
        let full = Bucket { bytes: l.burst_bytes, messages: l.burst_messages, at: now };
        let b = self.buckets.entry(node.to_string()).or_insert(full);
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.bytes = (b.bytes + elapsed * l.bytes_per_sec).min(l.burst_bytes);
        b.messages = (b.messages + elapsed * l.messages_per_sec).min(l.burst_messages);
        b.at = b.at.max(now);
        let cost = bytes as f64;
        if b.bytes < cost || b.messages < 1.0 {
            return Verdict::OverBudget;
        }
        b.bytes -= cost;
        b.messages -= 1.0;
        Verdict::Take
    }

    /// Forgets the budgets that are full again (they would start full anyway), so the map
    /// holds only nodes that sent a lot lately.
    pub fn prune(&mut self, now: Instant) {
        let l = self.limits;
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
            b.bytes + elapsed * l.bytes_per_sec < l.burst_bytes
                || b.messages + elapsed * l.messages_per_sec < l.burst_messages
        });
    }
}

/// How often a kind of refusal is logged per node.
#[derive(Debug, Default)]
pub struct Throttle {
    /// When each was last said (never: `None`), and how often refused since.
    said: HashMap<(String, &'static str), (Option<Instant>, u64)>,
}

/// Log a refusal at most this often per node and kind.
pub const SAY_EVERY: Duration = Duration::from_secs(60);

impl Throttle {
    /// Whether to log refusal `what` of `node` now: `Some(n)` with the number of refusals since
    /// the last line (this one included), `None` to stay quiet.
    pub fn say(&mut self, node: &str, what: &'static str, now: Instant) -> Option<u64> {
        let e = self.said.entry((node.to_string(), what)).or_insert((None, 0));
        e.1 += 1;
        if e.0.is_some_and(|t| now.saturating_duration_since(t) < SAY_EVERY) {
            return None;
        }
        let n = e.1;
        *e = (Some(now), 0);
        if self.said.len() > 10_000 {
            self.said.retain(|_, (t, _)| t.is_some_and(|t| now.saturating_duration_since(t) < SAY_EVERY));
        }
        Some(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVENTS: NodeTopic = NodeTopic::Events;

    #[test]
    fn each_topic_has_its_size_cap() {
        let mut b = Budget::default();
        let t = Instant::now();
        assert_eq!(b.admit("n", &NodeTopic::Status, 1 << 20, t), Verdict::Take);
        assert_eq!(b.admit("n", &NodeTopic::Status, (1 << 20) + 1, t), Verdict::TooLarge { max: 1 << 20 });
        assert_eq!(b.admit("n", &EVENTS, 300 << 10, t), Verdict::TooLarge { max: 256 << 10 });
        assert_eq!(b.admit("n", &NodeTopic::Desired, 1, t), Verdict::TooLarge { max: 0 });
        assert_eq!(b.admit("n", &NodeTopic::LogResponse("r".into()), 40 << 10, t), Verdict::Take);
    }

    #[test]
    fn a_flood_spends_the_burst_then_gets_the_rate() {
        let limits = Limits {
            bytes_per_sec: 1000.0,
            burst_bytes: 10_000.0,
            messages_per_sec: 10.0,
            burst_messages: 100.0,
        };
        let mut b = Budget::new(limits);
        let t = Instant::now();
        let taken = (0..50).filter(|_| b.admit("flood", &EVENTS, 1000, t) == Verdict::Take).count();
        assert_eq!(taken, 10, "the byte burst");
        assert_eq!(b.admit("other", &EVENTS, 1000, t), Verdict::Take, "other nodes keep theirs");
        assert_eq!(b.admit("flood", &EVENTS, 1000, t + Duration::from_millis(500)), Verdict::OverBudget);
        assert_eq!(b.admit("flood", &EVENTS, 1000, t + Duration::from_secs(1)), Verdict::Take, "refilled");
        // Small messages: the message count binds.
        let mut b = Budget::new(limits);
        let taken = (0..500).filter(|_| b.admit("chatty", &EVENTS, 1, t) == Verdict::Take).count();
        assert_eq!(taken, 100);
        // A clock that goes nowhere (or back) refills nothing and breaks nothing.
        assert_eq!(b.admit("chatty", &EVENTS, 1, t - Duration::from_secs(5)), Verdict::OverBudget);
        b.prune(t + Duration::from_secs(60));
        assert!(b.buckets.is_empty(), "full again: forgotten");
    }

    #[test]
    fn refusals_are_said_once_a_minute_with_their_count() {
        let mut th = Throttle::default();
        let t = Instant::now();
        assert_eq!(th.say("n", "bad", t), Some(1));
        let quiet = (0..9999).filter_map(|i| th.say("n", "bad", t + Duration::from_millis(i))).count();
        assert_eq!(quiet, 0, "10,000 refusals, one line");
        assert_eq!(th.say("m", "bad", t), Some(1), "per node");
        assert_eq!(th.say("n", "other", t), Some(1), "per kind");
        assert_eq!(th.say("n", "bad", t + SAY_EVERY), Some(10_000), "then the count");
    }
}
