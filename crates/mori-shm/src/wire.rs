//! Handles cross process boundaries as their identifiers.
//!
//! A [`SharedView`] or [`Shared`] serializes as its identifier string (a few dozen bytes, such
//! as `"/mori_4d1b_1[2]"`), whatever the size of the value; deserializing a [`SharedView`]
//! attaches to it with [`map_shared`]. So a task argument that holds a shared handle sends only
//! the name, and the receiving process maps the region itself. The creator must keep its
//! [`Shared`], or a view taken from it, alive until the receiver has deserialized (attached).
//!
//! ```
//! let shared = mori_shm::share_f64(&vec![0.25; 1_000_000])?;
//! let wire = serde_json::to_string(&shared).unwrap();
//! assert!(wire.len() < 40, "only the name travels: {wire}");
//! let received: mori_shm::SharedView = serde_json::from_str(&wire).unwrap();
//! assert_eq!(received.as_f64().unwrap().len(), 1_000_000);
//! # Ok::<(), mori_shm::Error>(())
//! ```
//!
//! # Handing a region over
//! A [`Shared`] serialized inside [`handing_over`] gives its name away: the sender's handle (and
//! its views) no longer unlinks it when dropped, and the receiver, deserializing a [`Shared`],
//! takes the name over: its handle unlinks it when dropped, and the region's owner record
//! names the receiver, so `prune` removes it as an orphan if the receiver dies first and keeps
//! it while the receiver lives, whatever becomes of the creator. This is how a task returns a
//! region: a daemon encodes its result inside [`handing_over`], and the host's result is an
//! owning [`Shared`]. Outside [`handing_over`], serializing a [`Shared`] sends its identifier
//! and keeps the name, as for a [`SharedView`].
//!
//! Deserializing a [`Shared`] takes over whatever region the identifier names (after the
//! attach checks): accept one only from a peer trusted to hand over regions of its own, such as
//! a pool's daemons. A sent name that is never received stays until its creator exits; then
//! `prune` removes it.

use std::cell::Cell;
use std::fmt;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::shared::{Shared, SharedView, map_shared};

impl Serialize for SharedView {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.identifier() {
            Some(id) => serializer.serialize_str(&id),
            None => Err(serde::ser::Error::custom(format!(
                "value in '{}' is nested too deep to be named",
                self.name()
            ))),
        }
    }
}

thread_local! {
    /// Set while [`handing_over`] runs on this thread.
    static HANDING_OVER: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (which serializes values for another process) so that every [`Shared`] it serializes
/// hands its name over to the receiver: once serialized, the handle (and its views) no longer
/// unlinks the name when dropped; the receiver's deserialized [`Shared`] does, and the region's
/// owner record names the receiver, so `prune` keeps it while the receiver lives and removes it
/// as an orphan once the receiver is dead. This is how a task returns a region: a daemon encodes
/// its result inside `handing_over`, and the host's result is an owning [`Shared`]. Deserialize
/// a [`Shared`] only from a trusted peer: it takes over whatever region the name points to.
///
/// ```
/// let built = mori_shm::share_f64(&[1.0, 2.0])?;
/// let wire = mori_shm::handing_over(|| serde_json::to_string(&built)).unwrap();
/// drop(built); // handed over: the name stays
///
/// // The receiver (usually another process) now owns the name.
/// let received: mori_shm::Shared = serde_json::from_str(&wire).unwrap();
/// assert_eq!(received.as_f64(), Some(&[1.0, 2.0][..]));
/// let name = received.name().to_owned();
/// drop(received);
/// assert!(mori_shm::map_shared(&name).is_err(), "the receiver's handle unlinked it");
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn handing_over<R>(f: impl FnOnce() -> R) -> R {
    /// Restores the flag, even if `f` panics.
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            HANDING_OVER.set(self.0);
        }
    }
    let _restore = Restore(HANDING_OVER.replace(true));
    f()
}

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let sent = (**self).serialize(serializer)?;
        if HANDING_OVER.get() {
            self.hand_over();
        }
        Ok(sent)
    }
}

struct RootVisitor;

impl Visitor<'_> for RootVisitor {
    type Value = Shared;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the name of a region handed over, such as \"/mori_4d1b_1\"")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<Shared, E> {
        if name.contains('[') {
            return Err(E::custom(format!(
                "'{name}' names an element; only a whole region can be handed over"
            )));
        }
        Shared::adopt(name).map_err(E::custom)
    }
}

/// Takes the region over (a whole region's name only, no path): see [`handing_over`].
impl<'de> Deserialize<'de> for Shared {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(RootVisitor)
    }
}

struct IdentifierVisitor;

impl Visitor<'_> for IdentifierVisitor {
    type Value = SharedView;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a shared value identifier such as \"/mori_4d1b_1[2]\"")
    }

    fn visit_str<E: de::Error>(self, id: &str) -> Result<SharedView, E> {
        map_shared(id).map_err(E::custom)
    }
}

impl<'de> Deserialize<'de> for SharedView {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_str(IdentifierVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Source;

    #[test]
    fn elements_travel_as_their_path_and_arrive_attached() {
        let shared = crate::share_list(vec![
            (None, Source::Double(&[1.0])),
            (None, Source::List(vec![(None, Source::Integer(&[9, 8]))])),
        ])
        .unwrap();
        let inner = shared.get(1).unwrap().get(0).unwrap();
        let wire = serde_json::to_string(&inner).unwrap();
        assert_eq!(wire, format!("\"{}[2,1]\"", shared.name()));
        let back: SharedView = serde_json::from_str(&wire).unwrap();
        assert_eq!(back.as_i32(), Some(&[9, 8][..]));
        assert_eq!(back.path(), &[1, 0]);
    }

    #[test]
    fn a_shared_serialized_outside_handing_over_keeps_its_name() {
        let shared = crate::share_f64(&[1.0]).unwrap();
        let name = shared.name().to_owned();
        let wire = serde_json::to_string(&shared).unwrap();
        assert_eq!(wire, format!("\"{name}\""));
        drop(shared);
        assert!(
            crate::map_shared(&name).is_err(),
            "the creator still unlinks"
        );
    }

    #[test]
    fn a_handed_over_region_belongs_to_the_receiver() {
        let shared = crate::share_i32(&[4, 5]).unwrap();
        let name = shared.name().to_owned();
        let leaf = shared.view();
        let wire = handing_over(|| serde_json::to_string(&shared)).unwrap();
        drop((shared, leaf));
        let path = crate::sys::file::region_path(&name[1..]);
        assert!(path.exists(), "the sender no longer unlinks");

        let received: Shared = serde_json::from_str(&wire).unwrap();
        assert_eq!(received.as_i32(), Some(&[4, 5][..]));
        let info = crate::list_regions()
            .unwrap()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap();
        assert_eq!(
            (info.pid, info.status, info.start_time),
            (
                std::process::id(),
                crate::Status::Alive,
                crate::sys::proc::own_start_time().ok()
            )
        );
        let record = crate::sys::file::owner_record(&path).unwrap().unwrap();
        assert_eq!(
            crate::owner::decode_record(&record).and_then(|r| r.pid),
            Some(std::process::id()),
            "the record names the receiver"
        );
        drop(received);
        assert!(!path.exists(), "the receiver's handle unlinked it");
    }

    #[test]
    fn only_whole_regions_can_be_handed_over() {
        let shared = crate::share_list(vec![(None, Source::Double(&[1.0]))]).unwrap();
        let leaf = format!("\"{}[1]\"", shared.name());
        let err = serde_json::from_str::<Shared>(&leaf).unwrap_err();
        assert!(err.to_string().contains("only a whole region"), "{err}");
        assert!(serde_json::from_str::<Shared>("\"/mori_1_ffffffff\"").is_err());
        assert!(serde_json::from_str::<Shared>("7").is_err());
    }

    #[test]
    fn handing_over_ends_with_its_closure_even_on_panic() {
        let shared = crate::share_f64(&[1.0]).unwrap();
        let caught = std::panic::catch_unwind(|| handing_over(|| panic!("inside")));
        assert!(caught.is_err());
        let name = shared.name().to_owned();
        serde_json::to_string(&shared).unwrap();
        drop(shared);
        assert!(
            crate::map_shared(&name).is_err(),
            "not handed over outside the closure"
        );
    }

    #[test]
    fn bad_or_stale_identifiers_fail_to_deserialize() {
        assert!(serde_json::from_str::<SharedView>("\"/mori_zz_1\"").is_err());
        assert!(serde_json::from_str::<SharedView>("42").is_err());
        let name = crate::share_i32(&[1]).unwrap().name().to_owned();
        let err = serde_json::from_str::<SharedView>(&format!("\"{name}\"")).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
}
