//! The SP protocol identities and which peer each one accepts.

use std::fmt;

/// One of the Scalability Protocols socket types (cooked mode).
///
/// ```
/// use nano_transport::Protocol;
/// assert_eq!(Protocol::Req0.id(), 0x30);
/// assert_eq!(Protocol::Req0.peer_id(), 0x31);
/// assert!(Protocol::Bus0.accepts(Protocol::Bus0.id()));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// PAIR version 0: one peer, no header.
    Pair0,
    /// PAIR version 1: hop-count header; one peer, or many in poly mode.
    Pair1,
    /// Requester: sends requests with an id, receives the matching reply.
    Req0,
    /// Replier: receives requests and answers on the pipe they came from.
    Rep0,
    /// Pipeline sender: round-robin over pullers.
    Push0,
    /// Pipeline receiver: fair-queues from pushers.
    Pull0,
    /// Publisher: broadcasts, never blocks.
    Pub0,
    /// Subscriber: filters by topic prefix locally.
    Sub0,
    /// Surveyor: broadcasts a survey, collects responses until a deadline.
    Surveyor0,
    /// Respondent: answers surveys.
    Respondent0,
    /// Bus: every message to every directly connected peer.
    Bus0,
}

impl Protocol {
    /// Every protocol, for tests and tables.
    pub const ALL: [Self; 11] = [
        Self::Pair0,
        Self::Pair1,
        Self::Req0,
        Self::Rep0,
        Self::Push0,
        Self::Pull0,
        Self::Pub0,
        Self::Sub0,
        Self::Surveyor0,
        Self::Respondent0,
        Self::Bus0,
    ];

    /// The 16-bit endpoint type sent in the connection header (`protocol * 16 + role`).
    pub const fn id(self) -> u16 {
        match self {
            Self::Pair0 => 0x10,
            Self::Pair1 => 0x11,
            Self::Pub0 => 0x20,
            Self::Sub0 => 0x21,
            Self::Req0 => 0x30,
            Self::Rep0 => 0x31,
            Self::Push0 => 0x50,
            Self::Pull0 => 0x51,
            Self::Surveyor0 => 0x62,
            Self::Respondent0 => 0x63,
            Self::Bus0 => 0x70,
        }
    }

    /// The endpoint type of the only peer this protocol talks to.
    pub const fn peer_id(self) -> u16 {
        self.peer().id()
    }

    /// The partner protocol.
    ///
    /// ```
    /// use nano_transport::Protocol;
    /// assert_eq!(Protocol::Push0.peer(), Protocol::Pull0);
    /// ```
    pub const fn peer(self) -> Self {
        match self {
            Self::Pair0 => Self::Pair0,
            Self::Pair1 => Self::Pair1,
            Self::Req0 => Self::Rep0,
            Self::Rep0 => Self::Req0,
            Self::Push0 => Self::Pull0,
            Self::Pull0 => Self::Push0,
            Self::Pub0 => Self::Sub0,
            Self::Sub0 => Self::Pub0,
            Self::Surveyor0 => Self::Respondent0,
            Self::Respondent0 => Self::Surveyor0,
            Self::Bus0 => Self::Bus0,
        }
    }

    /// Whether a peer announcing `peer_type` is our partner.
    pub const fn accepts(self, peer_type: u16) -> bool {
        self.peer_id() == peer_type
    }

    /// The protocol with this endpoint type, if any.
    ///
    /// ```
    /// use nano_transport::Protocol;
    /// assert_eq!(Protocol::from_id(0x11), Some(Protocol::Pair1));
    /// assert_eq!(Protocol::from_id(0x12), None);
    /// ```
    pub fn from_id(id: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.id() == id)
    }

    /// The NNG name of the protocol (also the WebSocket subprotocol prefix).
    pub const fn name(self) -> &'static str {
        match self {
            Self::Pair0 => "pair",
            Self::Pair1 => "pair1",
            Self::Req0 => "req",
            Self::Rep0 => "rep",
            Self::Push0 => "push",
            Self::Pull0 => "pull",
            Self::Pub0 => "pub",
            Self::Sub0 => "sub",
            Self::Surveyor0 => "surveyor",
            Self::Respondent0 => "respondent",
            Self::Bus0 => "bus",
        }
    }

    /// Whether the socket may receive at all (PUSH and PUB are send-only).
    pub const fn can_recv(self) -> bool {
        !matches!(self, Self::Push0 | Self::Pub0)
    }

    /// Whether the socket may send at all (PULL and SUB are receive-only).
    pub const fn can_send(self) -> bool {
        !matches!(self, Self::Pull0 | Self::Sub0)
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_match_the_nng_table() {
        let table = [
            (Protocol::Pair0, 0x10, 0x10),
            (Protocol::Pair1, 0x11, 0x11),
            (Protocol::Pub0, 0x20, 0x21),
            (Protocol::Sub0, 0x21, 0x20),
            (Protocol::Req0, 0x30, 0x31),
            (Protocol::Rep0, 0x31, 0x30),
            (Protocol::Push0, 0x50, 0x51),
            (Protocol::Pull0, 0x51, 0x50),
            (Protocol::Surveyor0, 0x62, 0x63),
            (Protocol::Respondent0, 0x63, 0x62),
            (Protocol::Bus0, 0x70, 0x70),
        ];
        for (p, id, peer) in table {
            assert_eq!((p.id(), p.peer_id()), (id, peer), "{p}");
            assert_eq!(Protocol::from_id(id), Some(p));
            assert_eq!(p.peer().peer(), p);
        }
    }

    #[test]
    fn pair0_and_pair1_reject_each_other() {
        assert!(!Protocol::Pair0.accepts(Protocol::Pair1.id()));
        assert!(!Protocol::Pair1.accepts(Protocol::Pair0.id()));
    }
}
