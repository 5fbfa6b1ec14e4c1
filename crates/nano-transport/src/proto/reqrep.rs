//! The requester's state: one outstanding request per context, matched to replies by id, and
//! resent when its timer fires or its pipe goes away.
//!
//! Time is injected (`now` arguments), so the resend logic is tested without sleeping.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::{HeaderError, PipeId};

/// A request that must be (re)sent now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resend {
    /// The context that owns it.
    pub ctx: u32,
    /// Its request id (unchanged across resends).
    pub id: u32,
}

#[derive(Debug)]
struct Pending {
    id: u32,
    payload: Vec<u8>,
    pipe: Option<PipeId>,
    resend_at: Option<Instant>,
}

/// Outstanding requests of a REQ socket and its contexts.
///
/// ```
/// use std::time::{Duration, Instant};
/// use nano_transport::{PipeId, proto::ReqState};
/// let t0 = Instant::now();
/// let mut req = ReqState::new(7, Some(Duration::from_secs(60)));
/// let id = req.start(0, b"ping".to_vec());
/// assert!(id & 0x8000_0000 != 0);
/// req.sent_on(0, PipeId(1), t0);
/// let mut reply = id.to_be_bytes().to_vec();
/// reply.extend_from_slice(b"pong");
/// assert_eq!(req.on_reply(&reply), Ok(Some(0)));
/// assert_eq!(req.on_reply(&reply), Ok(None), "a second reply is stale");
/// ```
#[derive(Debug)]
pub struct ReqState {
    next: u32,
    resend_ivl: Option<Duration>,
    pending: BTreeMap<u32, Pending>,
}

impl ReqState {
    /// A requester whose ids start from `seed` (pass a random value) and that resends after
    /// `resend_ivl` without a reply (`None`: never resend on a timer).
    pub fn new(seed: u32, resend_ivl: Option<Duration>) -> Self {
        Self {
            next: seed,
            resend_ivl,
            pending: BTreeMap::new(),
        }
    }

    /// Changes the resend interval for requests sent from now on.
    pub fn set_resend_interval(&mut self, ivl: Option<Duration>) {
        self.resend_ivl = ivl;
    }

    /// Registers a new request of context `ctx`, abandoning its previous one; returns its id.
    ///
    /// The payload is kept until the reply arrives because a resend needs it.
    pub fn start(&mut self, ctx: u32, payload: Vec<u8>) -> u32 {
        let id = 0x8000_0000 | (self.next & 0x7FFF_FFFF);
        self.next = self.next.wrapping_add(1);
        self.pending.insert(
            ctx,
            Pending {
                id,
                payload,
                pipe: None,
                resend_at: None,
            },
        );
        id
    }

    /// The request id and payload of `ctx`'s outstanding request.
    pub fn request(&self, ctx: u32) -> Option<(u32, &[u8])> {
        self.pending.get(&ctx).map(|p| (p.id, &p.payload[..]))
    }

    /// Records that `ctx`'s request went out on `pipe` at `now` (arms the resend timer).
    pub fn sent_on(&mut self, ctx: u32, pipe: PipeId, now: Instant) {
        if let Some(p) = self.pending.get_mut(&ctx) {
            p.pipe = Some(pipe);
            p.resend_at = self.resend_ivl.and_then(|d| now.checked_add(d));
        }
    }

    /// Abandons `ctx`'s request (a later reply to it is dropped).
    pub fn cancel(&mut self, ctx: u32) {
        self.pending.remove(&ctx);
    }

    /// Whether `ctx` has a request waiting for its reply.
    pub fn is_pending(&self, ctx: u32) -> bool {
        self.pending.contains_key(&ctx)
    }

    /// Matches a reply body (`id | payload`); returns the context it answers, `None` for a stale
    /// or unknown id (drop it), or an error for a body too short to hold an id (close the pipe).
    pub fn on_reply(&mut self, body: &[u8]) -> Result<Option<u32>, HeaderError> {
        let word: [u8; 4] = body
            .get(..4)
            .ok_or(HeaderError::Malformed)?
            .try_into()
            .expect("4");
        let id = u32::from_be_bytes(word);
        let ctx = self
            .pending
            .iter()
            .find(|(_, p)| p.id == id)
            .map(|(c, _)| *c);
        if let Some(c) = ctx {
            self.pending.remove(&c);
        }
        Ok(ctx)
    }

    /// The earliest resend time, for the event loop's poll timeout.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.pending.values().filter_map(|p| p.resend_at).min()
    }

    /// Requests whose timer has fired by `now`; the caller resends each and calls
    /// [`sent_on`](Self::sent_on) again.
    pub fn due(&mut self, now: Instant) -> Vec<Resend> {
        let mut out = Vec::new();
        for (ctx, p) in &mut self.pending {
            if p.resend_at.is_some_and(|t| t <= now) {
                p.resend_at = None;
                out.push(Resend {
                    ctx: *ctx,
                    id: p.id,
                });
            }
        }
        out
    }

    /// Requests not currently on any pipe (their pipe went away and no other was ready).
    pub fn unsent(&self) -> Vec<Resend> {
        self.pending
            .iter()
            .filter(|(_, p)| p.pipe.is_none())
            .map(|(ctx, p)| Resend {
                ctx: *ctx,
                id: p.id,
            })
            .collect()
    }

    /// Requests that were last sent on `pipe`, which has gone away; resend them elsewhere.
    pub fn on_pipe_removed(&mut self, pipe: PipeId) -> Vec<Resend> {
        let mut out = Vec::new();
        for (ctx, p) in &mut self.pending {
            if p.pipe == Some(pipe) {
                p.pipe = None;
                p.resend_at = None;
                out.push(Resend {
                    ctx: *ctx,
                    id: p.id,
                });
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reply(id: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = id.to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn a_new_request_abandons_the_old_one() {
        let mut req = ReqState::new(0, None);
        let old = req.start(0, vec![1]);
        let new = req.start(0, vec![2]);
        assert_ne!(old, new);
        assert_eq!(req.on_reply(&reply(old, b"")), Ok(None));
        assert_eq!(req.on_reply(&reply(new, b"")), Ok(Some(0)));
    }

    #[test]
    fn contexts_are_matched_independently() {
        let mut req = ReqState::new(u32::MAX, None);
        let a = req.start(1, vec![]);
        let b = req.start(2, vec![]);
        assert!(a & 0x8000_0000 != 0 && b & 0x8000_0000 != 0);
        assert_eq!(req.on_reply(&reply(b, b"")), Ok(Some(2)));
        assert_eq!(req.on_reply(&reply(a, b"")), Ok(Some(1)));
        assert_eq!(req.on_reply(&[1, 2, 3]), Err(HeaderError::Malformed));
    }

    #[test]
    fn resend_timer_and_lost_pipe() {
        let t0 = Instant::now();
        let ivl = Duration::from_secs(60);
        let mut req = ReqState::new(5, Some(ivl));
        let id = req.start(0, b"x".to_vec());
        req.sent_on(0, PipeId(3), t0);
        assert_eq!(req.next_deadline(), Some(t0 + ivl));
        assert!(req.due(t0 + ivl - Duration::from_millis(1)).is_empty());
        assert_eq!(req.due(t0 + ivl), vec![Resend { ctx: 0, id }]);
        assert_eq!(req.next_deadline(), None, "disarmed until sent again");
        req.sent_on(0, PipeId(3), t0 + ivl);
        assert_eq!(req.on_pipe_removed(PipeId(4)), vec![]);
        assert_eq!(req.on_pipe_removed(PipeId(3)), vec![Resend { ctx: 0, id }]);
        assert_eq!(req.request(0), Some((id, &b"x"[..])));
    }

    proptest! {
        #[test]
        fn ids_always_have_the_top_bit_and_only_exact_ids_match(seed in any::<u32>(), other in any::<u32>()) {
            let mut req = ReqState::new(seed, None);
            let id = req.start(0, vec![]);
            prop_assert!(id & 0x8000_0000 != 0);
            let got = req.on_reply(&reply(other, b"p")).unwrap();
            prop_assert_eq!(got.is_some(), other == id);
        }
    }
}
