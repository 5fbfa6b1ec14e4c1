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

impl Serialize for Shared {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        (**self).serialize(serializer)
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
    fn bad_or_stale_identifiers_fail_to_deserialize() {
        assert!(serde_json::from_str::<SharedView>("\"/mori_zz_1\"").is_err());
        assert!(serde_json::from_str::<SharedView>("42").is_err());
        let name = crate::share_i32(&[1]).unwrap().name().to_owned();
        let err = serde_json::from_str::<SharedView>(&format!("\"{name}\"")).unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
    }
}
