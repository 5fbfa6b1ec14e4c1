//! Local routing decisions: which pipe gets the next message, which messages a subscriber keeps.

use std::fmt;

/// Identifies one connection of a socket for its whole life (ids are never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PipeId(pub u32);

impl fmt::Display for PipeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pipe#{}", self.0)
    }
}

/// Round-robin choice among the pipes that are ready, stable as pipes come and go.
///
/// ```
/// use nano_transport::{PipeId, proto::RoundRobin};
/// let mut rr = RoundRobin::default();
/// let ready = [PipeId(1), PipeId(4), PipeId(9)];
/// let picks: Vec<_> = (0..4).map(|_| rr.pick(ready.iter().copied()).unwrap().0).collect();
/// assert_eq!(picks, [1, 4, 9, 1]);
/// ```
#[derive(Debug, Default, Clone)]
pub struct RoundRobin {
    last: Option<PipeId>,
}

impl RoundRobin {
    /// The ready pipe after the last one picked (in id order, wrapping); `None` if none is ready.
    pub fn pick(&mut self, ready: impl Iterator<Item = PipeId>) -> Option<PipeId> {
        let mut first = None;
        let mut after = None;
        for p in ready {
            first = Some(first.map_or(p, |f: PipeId| f.min(p)));
            if self.last.is_none_or(|l| p > l) {
                after = Some(after.map_or(p, |a: PipeId| a.min(p)));
            }
        }
        let chosen = after.or(first)?;
        self.last = Some(chosen);
        Some(chosen)
    }
}

/// The pipes a broadcast (PUB, BUS, SURVEYOR) goes to: every ready pipe except the one the
/// message came from, so a BUS never echoes a message back to its sender. A message sent by the
/// local user has no source and goes to all.
///
/// ```
/// use nano_transport::{PipeId, proto::broadcast_targets};
/// let ready = [PipeId(1), PipeId(2), PipeId(3)];
/// let to: Vec<_> = broadcast_targets(ready.into_iter(), Some(PipeId(2))).collect();
/// assert_eq!(to, [PipeId(1), PipeId(3)]);
/// ```
pub fn broadcast_targets(
    ready: impl Iterator<Item = PipeId>,
    source: Option<PipeId>,
) -> impl Iterator<Item = PipeId> {
    ready.filter(move |p| Some(*p) != source)
}

/// The subscriber's topic filter: a message is kept when some subscribed topic is a byte prefix
/// of it. The empty topic matches everything; with no topics nothing matches.
///
/// ```
/// use nano_transport::proto::TopicFilter;
/// let mut f = TopicFilter::default();
/// f.subscribe(b"a/");
/// assert!(f.matches(b"a/one") && !f.matches(b"b/skip") && !f.matches(b"a"));
/// ```
#[derive(Debug, Default, Clone)]
pub struct TopicFilter {
    topics: Vec<Vec<u8>>,
}

impl TopicFilter {
    /// Adds a topic (subscribing twice to the same topic keeps one copy).
    pub fn subscribe(&mut self, topic: &[u8]) {
        if !self.topics.iter().any(|t| t == topic) {
            self.topics.push(topic.to_vec());
        }
    }

    /// Removes a topic; returns whether it was subscribed.
    pub fn unsubscribe(&mut self, topic: &[u8]) -> bool {
        let before = self.topics.len();
        self.topics.retain(|t| t != topic);
        self.topics.len() != before
    }

    /// Whether the message passes the filter.
    pub fn matches(&self, message: &[u8]) -> bool {
        self.topics.iter().any(|t| message.starts_with(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn filter_rules() {
        let mut f = TopicFilter::default();
        assert!(!f.matches(b"anything"));
        f.subscribe(b"");
        assert!(f.matches(b"") && f.matches(b"x"));
        assert!(f.unsubscribe(b""));
        assert!(!f.unsubscribe(b""));
        assert!(!f.matches(b"x"));
    }

    proptest! {
        #[test]
        fn broadcast_reaches_all_but_the_source(
            ids in proptest::collection::btree_set(0u32..20, 0..8),
            source in proptest::option::of(0u32..20),
        ) {
            let ready: Vec<PipeId> = ids.iter().copied().map(PipeId).collect();
            let source = source.map(PipeId);
            let to: Vec<PipeId> = broadcast_targets(ready.iter().copied(), source).collect();
            prop_assert!(source.is_none_or(|s| !to.contains(&s)), "no echo to the sender");
            let expected: Vec<PipeId> = ready.into_iter().filter(|p| Some(*p) != source).collect();
            prop_assert_eq!(to, expected);
        }

        #[test]
        fn round_robin_visits_every_ready_pipe_once_per_cycle(
            ids in proptest::collection::btree_set(0u32..100, 1..10),
        ) {
            let ready: Vec<PipeId> = ids.into_iter().map(PipeId).collect();
            let mut rr = RoundRobin::default();
            let mut seen: Vec<PipeId> = (0..ready.len()).map(|_| rr.pick(ready.iter().copied()).unwrap()).collect();
            seen.sort();
            prop_assert_eq!(seen, ready);
        }

        #[test]
        fn matches_is_prefix_of_any(
            topics in proptest::collection::vec(proptest::collection::vec(0u8..3, 0..3), 0..4),
            msg in proptest::collection::vec(0u8..3, 0..5),
        ) {
            let mut f = TopicFilter::default();
            for t in &topics { f.subscribe(t); }
            prop_assert_eq!(f.matches(&msg), topics.iter().any(|t| msg.starts_with(t)));
        }
    }
}
