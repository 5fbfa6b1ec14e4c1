//! Vectors written in place: [`share_with`] hands out the new region's data as `&mut [T]`.
//!
//! Why: a result built in a `Vec` and then shared is written twice (the build, then the copy
//! into the region), and for a task's large result that copy is most of the cost of returning
//! it as a region. Filling the region's own pages leaves the build alone.

use mori_format::layout::{MORH_HEADER, SexpType};
use mori_format::write::vector_header;

use crate::shared::POPULATE_MIN;
use crate::{Error, Result, Shared, region};

/// An element type whose slices are stored in a region exactly as Rust lays them out (R's
/// double, integer, raw and complex vectors), so [`share_with`] can hand out the region's
/// memory typed.
pub trait VectorElement: bytemuck::Pod + sealed::Sealed {
    /// The R type of a vector of them.
    const SEXPTYPE: SexpType;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for f64 {}
    impl Sealed for i32 {}
    impl Sealed for u8 {}
    impl Sealed for [f64; 2] {}
}

impl VectorElement for f64 {
    const SEXPTYPE: SexpType = SexpType::Double;
}

impl VectorElement for i32 {
    const SEXPTYPE: SexpType = SexpType::Integer;
}

impl VectorElement for u8 {
    const SEXPTYPE: SexpType = SexpType::Raw;
}

impl VectorElement for [f64; 2] {
    const SEXPTYPE: SexpType = SexpType::Complex;
}

/// Shares a vector of `len` elements that `fill` writes in place, in the new region's own
/// memory (zeroed when `fill` gets it): no copy of the data is ever made. The region is
/// published (its name usable by others) only after `fill` returns; if `fill` panics, the
/// region is removed and the panic goes on.
///
/// ```
/// let squares = mori_shm::share_with::<f64>(5, |out| {
///     for (i, x) in out.iter_mut().enumerate() {
///         *x = (i * i) as f64;
///     }
/// })?;
/// assert_eq!(squares.as_f64(), Some(&[0.0, 1.0, 4.0, 9.0, 16.0][..]));
/// let ids = mori_shm::share_with::<i32>(3, |out| out.copy_from_slice(&[7, 8, 9]))?;
/// assert_eq!(ids.as_i32(), Some(&[7, 8, 9][..]));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn share_with<T: VectorElement>(len: usize, fill: impl FnOnce(&mut [T])) -> Result<Shared> {
    let (head, total) =
        vector_header(T::SEXPTYPE, len).map_err(|source| Error::Unshareable { source })?;
    let (mapping, owner) = region::create(total, |region| {
        region.allocate_rest()?;
        if total - MORH_HEADER >= POPULATE_MIN {
            region.populate(MORH_HEADER..total);
        }
        let bytes = region.bytes_mut()?;
        bytes[..MORH_HEADER].copy_from_slice(&head);
        // A mapping starts on a page and the header is 64 bytes, so the data are aligned for
        // any element type: the checked cast cannot fail, and is not unwrapped regardless.
        let data = bytemuck::try_cast_slice_mut(&mut bytes[MORH_HEADER..total]).map_err(|_| {
            Error::Unshareable {
                source: mori_format::WriteError::NotShareable("a misaligned mapping"),
            }
        })?;
        fill(data);
        Ok(())
    })?;
    Shared::created(mapping, owner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_filled_vector_reads_back_as_the_same_vector_shared_from_memory() {
        for len in [0, 1, 7, 100_000] {
            let want: Vec<f64> = (0..len).map(|i| i as f64 * 0.5).collect();
            let built = share_with::<f64>(len, |out| out.copy_from_slice(&want)).unwrap();
            let copied = crate::share_f64(&want).unwrap();
            assert_eq!(built.as_f64(), Some(&want[..]));
            assert_eq!(built.to_value().unwrap(), copied.to_value().unwrap());
        }
        let raw = share_with::<u8>(3, |out| out.copy_from_slice(b"abc")).unwrap();
        assert_eq!(raw.as_raw(), Some(&b"abc"[..]));
        let complex = share_with::<[f64; 2]>(1, |out| out[0] = [1.0, -1.0]).unwrap();
        assert_eq!(complex.sexptype(), SexpType::Complex);
        let attached = crate::map_shared(&complex.view().identifier().unwrap()).unwrap();
        assert_eq!(attached.to_value().unwrap(), complex.to_value().unwrap());
    }

    #[test]
    fn the_data_start_zeroed_and_a_panicking_fill_leaves_no_region() {
        let zeros = share_with::<i32>(10, |out| assert!(out.iter().all(|&x| x == 0))).unwrap();
        assert_eq!(zeros.as_i32(), Some(&[0; 10][..]));
        // A length no other test uses, to find this region among those of parallel tests.
        const LEN: usize = 123_457;
        let size = (MORH_HEADER + LEN * 8) as u64;
        let ours = || -> Vec<String> {
            crate::list_regions()
                .unwrap()
                .into_iter()
                .filter(|r| r.size == size && r.pid == std::process::id())
                .map(|r| r.name)
                .collect()
        };
        let mut seen = Vec::new();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            share_with::<f64>(LEN, |_| {
                seen = ours();
                panic!("the fill failed");
            })
        }));
        assert!(outcome.is_err());
        assert_eq!(seen.len(), 1, "the region exists while it is filled");
        assert!(ours().is_empty(), "{seen:?} is left behind");
    }

    #[test]
    fn a_length_whose_size_overflows_is_an_error_not_an_allocation() {
        let err = share_with::<f64>(usize::MAX / 4, |_| unreachable!("never filled")).unwrap_err();
        assert!(matches!(err, Error::Unshareable { .. }), "{err}");
    }
}
