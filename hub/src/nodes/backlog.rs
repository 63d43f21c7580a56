//! An ingest worker's backlog: what nodes sent, per node in arrival order, waiting for the
//! store. Status reports are complete (not deltas), so a node's newest report replaces the one
//! still waiting: however far the store falls behind, a node has at most one report, a few
//! presence announcements and a few event batches queued, and the MQTT dispatcher that fills
//! the backlog never waits (a dispatcher blocked on a full queue would also stall the hub's
//! own MQTT pings and every other node's heartbeats).

use std::collections::{HashMap, VecDeque};

use flotilla_shared::wire::{Event, Presence, StatusReport};

/// Presence announcements waiting per node; beyond it the oldest is dropped (only a flapping
/// connection sends more, and the newest ones decide).
pub(crate) const MAX_PRESENCE: usize = 4;
/// Event batches waiting per node; beyond it new batches are dropped (events are a record for
/// `describe`, not state: a node flooding them cannot grow the hub's memory).
pub(crate) const MAX_EVENT_BATCHES: usize = 8;

/// One thing a node sent.
#[derive(Debug, PartialEq)]
pub(crate) enum Item {
    Status(Box<StatusReport>),
    Presence(Presence),
    Events(Vec<Event>),
}

impl Item {
    fn same_kind(&self, other: &Item) -> bool {
        std::mem::discriminant(self) == std::mem::discriminant(other)
    }
}

/// What `push` did with an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pushed {
    Queued,
    /// It replaced an older status report of the same node.
    Replaced,
    /// An older presence announcement was dropped to make room.
    DroppedOldest,
    /// The item itself was dropped (too many event batches waiting).
    Dropped,
}

/// Nodes with something waiting, served first come, first served.
#[derive(Debug, Default)]
pub(crate) struct Backlog {
    nodes: HashMap<String, VecDeque<Item>>,
    order: VecDeque<String>,
}

impl Backlog {
    pub fn push(&mut self, node: &str, item: Item) -> Pushed {
        let queue = match self.nodes.get_mut(node) {
            Some(q) => q,
            None => {
                self.order.push_back(node.to_string());
                self.nodes.entry(node.to_string()).or_default()
            }
        };
        let waiting = queue.iter().filter(|i| i.same_kind(&item)).count();
        let pushed = match &item {
            // The newest report says everything an older one did; it goes to the back so that
            // it is still taken after a presence announcement that arrived before it.
            Item::Status(_) if waiting > 0 => {
                queue.retain(|i| !matches!(i, Item::Status(_)));
                Pushed::Replaced
            }
            Item::Presence(_) if waiting >= MAX_PRESENCE => {
                if let Some(at) = queue.iter().position(|i| matches!(i, Item::Presence(_))) {
                    queue.remove(at);
                }
                Pushed::DroppedOldest
            }
            Item::Events(_) if waiting >= MAX_EVENT_BATCHES => return Pushed::Dropped,
            _ => Pushed::Queued,
        };
        queue.push_back(item);
        pushed
    }

    /// The next node's items, all of them, in the order they are to be taken.
    pub fn pop(&mut self) -> Option<(String, VecDeque<Item>)> {
        while let Some(node) = self.order.pop_front() {
            if let Some(items) = self.nodes.remove(&node) {
                return Some((node, items));
            }
        }
        None
    }

    /// Items waiting, over all nodes.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.nodes.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flotilla_shared::wire::NodeInfo;

    fn status(node: &str, seq: u64) -> Item {
        Item::Status(Box::new(StatusReport {
            node: node.into(),
            seq,
            observed_generation: 0,
            time_ms: 0,
            info: NodeInfo::default(),
            conditions: vec![],
            pods: vec![],
            epoch: 0,
        }))
    }

    fn presence(node: &str, online: bool, session: u64) -> Item {
        Item::Presence(Presence {
            node: node.into(),
            online,
            boot_id: String::new(),
            agent_version: String::new(),
            session,
            time_ms: 0,
        })
    }

    fn events(n: usize) -> Item {
        Item::Events(
            (0..n)
                .map(|i| Event {
                    seq: i as u64,
                    pod: String::new(),
                    container: String::new(),
                    reason: "Started".into(),
                    message: String::new(),
                    warning: false,
                    time_ms: 0,
                })
                .collect(),
        )
    }

    fn seqs(items: &VecDeque<Item>) -> Vec<String> {
        items
            .iter()
            .map(|i| match i {
                Item::Status(s) => format!("s{}", s.seq),
                Item::Presence(p) => format!("p{}{}", if p.online { "+" } else { "-" }, p.session),
                Item::Events(e) => format!("e{}", e.len()),
            })
            .collect()
    }

    #[test]
    fn the_newest_report_replaces_a_waiting_one() {
        let mut b = Backlog::default();
        assert_eq!(b.push("a", status("a", 1)), Pushed::Queued);
        for seq in 2..1000 {
            assert_eq!(b.push("a", status("a", seq)), Pushed::Replaced);
        }
        assert_eq!(b.len(), 1);
        let (node, items) = b.pop().unwrap();
        assert_eq!((node.as_str(), seqs(&items)), ("a", vec!["s999".to_string()]));
        assert!(b.pop().is_none());
    }

    #[test]
    fn nodes_are_served_in_arrival_order_each_with_all_its_items() {
        let mut b = Backlog::default();
        b.push("b", status("b", 1));
        b.push("a", presence("a", true, 7));
        b.push("b", events(2));
        b.push("a", status("a", 4));
        b.push("b", status("b", 2));
        let (n1, i1) = b.pop().unwrap();
        let (n2, i2) = b.pop().unwrap();
        assert_eq!((n1.as_str(), seqs(&i1)), ("b", vec!["e2".into(), "s2".into()]));
        assert_eq!((n2.as_str(), seqs(&i2)), ("a", vec!["p+7".into(), "s4".into()]));
        assert!(b.pop().is_none());
        // A node served once queues again at the back.
        b.push("a", status("a", 5));
        b.push("c", status("c", 1));
        assert_eq!(b.pop().unwrap().0, "a");
        assert_eq!(b.pop().unwrap().0, "c");
    }

    #[test]
    fn a_report_after_a_death_is_taken_after_it() {
        // Offline (last will), then the agent is back and reports: the node must end Ready,
        // so the newer report moves behind the death, not into the older report's place.
        let mut b = Backlog::default();
        b.push("a", status("a", 1));
        b.push("a", presence("a", false, 3));
        b.push("a", presence("a", true, 4));
        b.push("a", status("a", 2));
        let (_, items) = b.pop().unwrap();
        assert_eq!(seqs(&items), ["p-3", "p+4", "s2"]);
    }

    #[test]
    fn flapping_presence_and_event_floods_are_bounded() {
        let mut b = Backlog::default();
        for s in 0..MAX_PRESENCE as u64 {
            assert_eq!(b.push("a", presence("a", s % 2 == 0, s)), Pushed::Queued);
        }
        assert_eq!(b.push("a", presence("a", true, 99)), Pushed::DroppedOldest);
        for _ in 0..MAX_EVENT_BATCHES {
            assert_eq!(b.push("a", events(1)), Pushed::Queued);
        }
        assert_eq!(b.push("a", events(1)), Pushed::Dropped);
        b.push("a", status("a", 1));
        assert_eq!(b.len(), MAX_PRESENCE + MAX_EVENT_BATCHES + 1);
        let (_, items) = b.pop().unwrap();
        let order = seqs(&items);
        assert_eq!(order.first().map(String::as_str), Some("p-1"), "the oldest announcement went: {order:?}");
        assert_eq!(order.last().map(String::as_str), Some("s1"));
        assert!(order.contains(&"p+99".to_string()));
    }
}
