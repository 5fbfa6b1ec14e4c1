//! [`Bytes`] and [`Array`]: task arguments and results that travel beside their value, never
//! copied by the encoding (see the `wire` module for how).

use std::fmt;
use std::marker::PhantomData;
use std::ops::Deref;

use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::wire;

/// Bytes a task takes or returns without their being copied into or out of the encoding.
///
/// A `Vec<u8>` argument is written into the task's encoding byte by byte and decoded on the
/// daemon into a second buffer beside the received one. A `Bytes` is neither: it goes to the
/// socket from its own memory, and the daemon's `Bytes` is a slice of the message it received
/// (so the daemon holds the payload once). Cloning shares the buffer. Outside a task (JSON,
/// plain postcard) it serializes as ordinary bytes.
///
/// ```
/// let data = mirai::Bytes::from(vec![1u8, 2, 3]);
/// let shared = data.clone(); // no copy
/// assert_eq!(&shared[..], &[1, 2, 3]);
/// assert_eq!(data.len(), 3);
/// let inner: bytes::Bytes = data.into_inner();
/// assert_eq!(inner, bytes::Bytes::from_static(&[1, 2, 3]));
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bytes(bytes::Bytes);

impl Bytes {
    /// Wraps any owned buffer (a `Vec<u8>`, a memory map, ...) without copying it.
    ///
    /// ```
    /// let b = mirai::Bytes::from_owner(vec![5u8; 4]);
    /// assert_eq!(&b[..], &[5; 4]);
    /// ```
    pub fn from_owner<T: AsRef<[u8]> + Send + 'static>(owner: T) -> Self {
        Self(bytes::Bytes::from_owner(owner))
    }

    /// The shared buffer, for the `bytes` crate's API (slicing without a copy, ...).
    pub fn into_inner(self) -> bytes::Bytes {
        self.0
    }
}

impl Deref for Bytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.0
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Self(bytes::Bytes::from(v))
    }
}

impl From<bytes::Bytes> for Bytes {
    fn from(b: bytes::Bytes) -> Self {
        Self(b)
    }
}

impl From<&'static [u8]> for Bytes {
    fn from(b: &'static [u8]) -> Self {
        Self(bytes::Bytes::from_static(b))
    }
}

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({} bytes)", self.0.len())
    }
}

impl Serialize for Bytes {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match wire::push_outgoing(&self.0) {
            Some(index) => serializer.serialize_u32(index),
            None => serializer.serialize_bytes(&self.0),
        }
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if wire::decoding() {
            let index = u32::deserialize(deserializer)?;
            let (buffer, _) = wire::take_incoming(index)
                .ok_or_else(|| de::Error::custom(format!("no buffer {index} in the payload")))?;
            return Ok(Self(buffer));
        }
        deserializer.deserialize_byte_buf(BytesVisitor)
    }
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("bytes")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::from(v.to_vec()))
    }

    fn visit_byte_buf<E: de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut v = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(b) = seq.next_element()? {
            v.push(b);
        }
        Ok(Bytes::from(v))
    }
}

mod sealed {
    pub trait Sealed {}
}

/// A plain number type an [`Array`] holds: the integer types and `f32`/`f64`.
pub trait Element:
    bytemuck::Pod + PartialEq + Serialize + for<'de> Deserialize<'de> + Send + Sync + sealed::Sealed
{
    /// The value with its bytes in the other order.
    fn swap_bytes(self) -> Self;
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            fn swap_bytes(self) -> Self {
                <$t>::swap_bytes(self)
            }
        }
    )*};
}
integers!(u8, i8, u16, i16, u32, i32, u64, i64);

macro_rules! floats {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl Element for $t {
            fn swap_bytes(self) -> Self {
                <$t>::from_bits(self.to_bits().swap_bytes())
            }
        }
    )*};
}
floats!(f32, f64);

/// Numbers a task takes or returns without their being copied into or out of the encoding:
/// a `Vec<f64>` (or of another [`Element`]) that travels as its own bytes.
///
/// Made from a `Vec<T>` without a copy; on the daemon it is read in place in the message it
/// arrived in (which the protocol aligns for it), so the daemon holds the numbers once.
/// Cloning shares them. Outside a task it serializes as a sequence of numbers.
///
/// ```
/// use mirai::Array;
/// let xs = Array::from(vec![1.0f64, 2.0, 3.5]);
/// assert_eq!(xs.iter().sum::<f64>(), 6.5);
/// assert_eq!(xs.len(), 3);
/// assert_eq!(xs.to_vec(), vec![1.0, 2.0, 3.5]);
/// ```
pub struct Array<T: Element> {
    /// Always aligned for `T` and a whole number of `T`s long.
    bytes: bytes::Bytes,
    _numbers: PhantomData<T>,
}

/// Lends a `Vec<T>`'s memory out as bytes, so it becomes a buffer without a copy.
struct Numbers<T>(Vec<T>);

impl<T: bytemuck::Pod> AsRef<[u8]> for Numbers<T> {
    fn as_ref(&self) -> &[u8] {
        bytemuck::cast_slice(&self.0)
    }
}

impl<T: Element> Array<T> {
    /// The numbers as their bytes, in this machine's order.
    ///
    /// ```
    /// let xs = mirai::Array::from(vec![1u16, 2]);
    /// assert_eq!(xs.as_bytes().len(), 4);
    /// ```
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Reads numbers from `bytes`: in place when they are aligned for `T`, a copy otherwise;
    /// `swapped` when they were written on a machine of the other byte order (a copy, swapped).
    fn from_buffer(bytes: bytes::Bytes, swapped: bool) -> Option<Self> {
        if !bytes.len().is_multiple_of(size_of::<T>()) {
            return None;
        }
        if !swapped && (bytes.is_empty() || bytemuck::try_cast_slice::<u8, T>(&bytes).is_ok()) {
            return Some(Self {
                bytes,
                _numbers: PhantomData,
            });
        }
        // Misaligned (an allocator that does not align to 16) or of the other byte order: the
        // one case that copies.
        let mut values: Vec<T> = bytemuck::pod_collect_to_vec(&bytes);
        if swapped {
            values.iter_mut().for_each(|v| *v = v.swap_bytes());
        }
        Some(Self::from(values))
    }
}

impl<T: Element> Deref for Array<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        if self.bytes.is_empty() {
            return &[];
        }
        // Alignment and length were checked when the array was made.
        bytemuck::cast_slice(&self.bytes)
    }
}

impl<T: Element> From<Vec<T>> for Array<T> {
    fn from(v: Vec<T>) -> Self {
        Self {
            bytes: bytes::Bytes::from_owner(Numbers(v)),
            _numbers: PhantomData,
        }
    }
}

impl<T: Element> Clone for Array<T> {
    fn clone(&self) -> Self {
        Self {
            bytes: self.bytes.clone(),
            _numbers: PhantomData,
        }
    }
}

impl<T: Element> Default for Array<T> {
    fn default() -> Self {
        Self::from(Vec::new())
    }
}

impl<T: Element> PartialEq for Array<T> {
    fn eq(&self, other: &Self) -> bool {
        self[..] == other[..]
    }
}

impl<T: Element + fmt::Debug> fmt::Debug for Array<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Array({} x {})", self.len(), std::any::type_name::<T>())
    }
}

impl<T: Element> Serialize for Array<T> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match wire::push_outgoing(&self.bytes) {
            Some(index) => serializer.serialize_u32(index),
            None => serializer.collect_seq(self.iter()),
        }
    }
}

impl<'de, T: Element> Deserialize<'de> for Array<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        if wire::decoding() {
            let index = u32::deserialize(deserializer)?;
            let (buffer, swapped) = wire::take_incoming(index)
                .ok_or_else(|| de::Error::custom(format!("no buffer {index} in the payload")))?;
            let len = buffer.len();
            return Self::from_buffer(buffer, swapped).ok_or_else(|| {
                de::Error::custom(format!(
                    "a buffer of {len} bytes is not a whole number of {}",
                    std::any::type_name::<T>()
                ))
            });
        }
        Vec::<T>::deserialize(deserializer).map(Self::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outside_a_task_they_serialize_as_plain_bytes_and_numbers() {
        let b = Bytes::from(vec![1u8, 2]);
        let a = Array::from(vec![1i32, -2]);
        let json = serde_json::to_string(&(&b, &a)).unwrap();
        assert_eq!(json, "[[1,2],[1,-2]]");
        let (b2, a2): (Bytes, Array<i32>) = serde_json::from_str(&json).unwrap();
        assert_eq!((b2, a2), (b, a.clone()));
        let pc = postcard::to_allocvec(&a).unwrap();
        assert_eq!(postcard::from_bytes::<Vec<i32>>(&pc).unwrap(), vec![1, -2]);
    }

    #[test]
    fn misaligned_or_foreign_order_numbers_are_copied_right() {
        let mut raw = vec![0u8; 17];
        raw[1..9].copy_from_slice(&2.5f64.to_ne_bytes());
        raw[9..17].copy_from_slice(&(-1.0f64).to_ne_bytes());
        let buf = bytes::Bytes::from(raw);
        let odd = buf.slice(1..);
        let a = Array::<f64>::from_buffer(odd.clone(), false).unwrap();
        assert_eq!(&a[..], &[2.5, -1.0]);
        let swapped: Vec<u8> = [2.5f64, -1.0]
            .iter()
            .flat_map(|v| v.to_bits().swap_bytes().to_ne_bytes())
            .collect();
        let b = Array::<f64>::from_buffer(bytes::Bytes::from(swapped), true).unwrap();
        assert_eq!(&b[..], &[2.5, -1.0]);
        assert!(Array::<f64>::from_buffer(buf.slice(1..8), false).is_none());
        assert!(
            Array::<f64>::from_buffer(bytes::Bytes::new(), false)
                .unwrap()
                .is_empty()
        );
    }
}
