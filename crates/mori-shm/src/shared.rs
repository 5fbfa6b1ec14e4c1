//! The handles: [`Shared`] (the creator's, owns the name) and [`SharedView`] (anyone's view of a
//! value in a region, root or element), with the functions that make them.

use std::ops::Deref;
use std::sync::Arc;

use mori_format::layout::SexpType;
use mori_format::path::MAX_PATH;
use mori_format::value::{RString, Value};
use mori_format::{Identifier, ReadError, Region, Source, Strings, View, WriteOptions};

use crate::error::{Error, Result};
use crate::region::{self, NameOwner};
use crate::sys::map::{Anchored, Mapping};

/// A value in a shared region, viewed without copying: the root of a region or any element or
/// sub-list of it.
///
/// Cloning is cheap (an `Arc` or two and a short path). A view keeps the whole mapping alive,
/// so elements taken from a list outlive the list view and the [`Shared`] handle they came from.
///
/// A view taken from a [`Shared`] in the creator's process ([`Shared::view`], [`get`](Self::get),
/// [`get_named`](Self::get_named), and views taken from those) also keeps the region's *name*
/// alive: the name is unlinked when the last of the [`Shared`] and every view taken from it is
/// dropped, so a leaf can be sent to another process after the root handle is gone. Views made
/// by [`map_shared`] (or by deserializing) do not own the name.
///
/// ```
/// use mori_shm::Source;
/// let shared = mori_shm::share_list(vec![(Some("x"), Source::Double(&[1.0, 2.0, 3.0]))])?;
/// let x = shared.get_named("x")?.unwrap();
/// let id = x.identifier().unwrap();
/// drop(shared); // the leaf still holds the name
/// let elsewhere = mori_shm::map_shared(&id)?;
/// assert_eq!(elsewhere.as_f64(), Some(&[1.0, 2.0, 3.0][..]));
/// drop(x); // the last view of the creator's chain: the name is unlinked
/// assert!(matches!(mori_shm::map_shared(&id), Err(mori_shm::Error::NotFound { .. })));
/// # Ok::<(), mori_shm::Error>(())
/// ```
#[derive(Clone)]
pub struct SharedView {
    anchored: Anchored,
    /// 0-based list indices from the root to this value (inline up to four levels: a column
    /// view of a frame inside a list costs no allocation).
    path: Path,
    /// The name's owner, shared by the creator's [`Shared`] and every view taken from it;
    /// `None` for views attached by name.
    owner: Option<Arc<NameOwner>>,
}

impl std::fmt::Debug for SharedView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedView")
            .field("region", &self.name())
            .field("path", &self.path)
            .field("sexptype", &self.sexptype())
            .field("len", &self.len())
            .finish()
    }
}

/// A path from the root: list indices, rarely more than a few.
type Path = smallvec::SmallVec<[u32; 4]>;

/// R's form of an identifier: the region name, then the 1-based path in brackets; `None` past
/// R's 64 indices.
fn format_identifier(region: &str, path: &[u32]) -> Option<String> {
    if path.len() > MAX_PATH {
        return None;
    }
    let mut s = region.to_owned();
    for (i, index) in path.iter().enumerate() {
        s.push(if i == 0 { '[' } else { ',' });
        s.push_str(&(u64::from(*index) + 1).to_string());
    }
    if !path.is_empty() {
        s.push(']');
    }
    Some(s)
}

impl SharedView {
    /// The OS name of the region, `/mori_<pid>_<counter>`.
    pub fn name(&self) -> &str {
        self.anchored.mapping().name()
    }

    /// The 0-based list indices from the region's root to this value (empty for the root).
    pub fn path(&self) -> &[u32] {
        &self.path
    }

    /// The identifier that [`map_shared`] (here or in R) turns back into this value:
    /// `/mori_<pid>_<counter>` for a root, with a 1-based path such as `[2,1]` for an element.
    /// `None` when the value is nested deeper than the 64 indices R's identifiers can hold.
    ///
    /// ```
    /// use mori_shm::Source;
    /// let shared = mori_shm::share_list(vec![(Some("a"), Source::Double(&[1.0]))])?;
    /// let a = shared.get(0)?;
    /// assert_eq!(a.identifier().unwrap(), format!("{}[1]", shared.name()));
    /// # Ok::<(), mori_shm::Error>(())
    /// ```
    pub fn identifier(&self) -> Option<String> {
        format_identifier(self.name(), &self.path)
    }

    /// The identifier for error messages: exact when R can name it, else the region name.
    fn label(&self) -> String {
        self.identifier().unwrap_or_else(|| self.name().to_owned())
    }

    /// The zero-copy view of the value, from `mori-format`, borrowing the mapping.
    pub fn view(&self) -> View<'_> {
        self.anchored.view()
    }

    /// The value's R type.
    pub fn sexptype(&self) -> SexpType {
        self.view().sexptype()
    }

    /// Number of elements (0 for an element R could only store serialized).
    pub fn len(&self) -> usize {
        self.view().len()
    }

    /// True if [`len`](Self::len) is 0.
    pub fn is_empty(&self) -> bool {
        self.view().is_empty()
    }

    /// The doubles of a double vector, borrowed from the mapping.
    pub fn as_f64(&self) -> Option<&[f64]> {
        match self.view() {
            View::Double(v) => Some(v.data()),
            _ => None,
        }
    }

    /// The integers of an integer vector (`i32::MIN` is NA), borrowed from the mapping.
    pub fn as_i32(&self) -> Option<&[i32]> {
        match self.view() {
            View::Integer(v) => Some(v.data()),
            _ => None,
        }
    }

    /// The values of a logical vector (1 TRUE, 0 FALSE, `i32::MIN` NA), borrowed from the mapping.
    pub fn as_logical(&self) -> Option<&[i32]> {
        match self.view() {
            View::Logical(v) => Some(v.data()),
            _ => None,
        }
    }

    /// The bytes of a raw vector, borrowed from the mapping.
    pub fn as_raw(&self) -> Option<&[u8]> {
        match self.view() {
            View::Raw(v) => Some(v.data()),
            _ => None,
        }
    }

    /// The `[re, im]` pairs of a complex vector, borrowed from the mapping.
    pub fn as_complex(&self) -> Option<&[[f64; 2]]> {
        match self.view() {
            View::Complex(v) => Some(v.data()),
            _ => None,
        }
    }

    /// The strings of a character vector, borrowed from the mapping.
    ///
    /// ```
    /// let shared = mori_shm::share_strings(&["x", "y"])?;
    /// let s = shared.as_strings().unwrap();
    /// assert_eq!(s.get(1).and_then(|s| s.as_str()), Some("y"));
    /// # Ok::<(), mori_shm::Error>(())
    /// ```
    pub fn as_strings(&self) -> Option<Strings<'_>> {
        match self.view() {
            View::Character(s) => Some(s),
            _ => None,
        }
    }

    /// Element `index` (0-based) of a list, as a view that keeps the mapping alive.
    ///
    /// ```
    /// use mori_shm::{Error, Source};
    /// let shared = mori_shm::share_list(vec![(None, Source::Integer(&[7]))])?;
    /// assert_eq!(shared.get(0)?.as_i32(), Some(&[7][..]));
    /// assert!(matches!(shared.get(1), Err(Error::IndexOutOfRange { index: 1, len: 1, .. })));
    /// # Ok::<(), mori_shm::Error>(())
    /// ```
    pub fn get(&self, index: usize) -> Result<Self> {
        let View::List(list) = self.view() else {
            return Err(Error::NotAList { name: self.label() });
        };
        if index >= list.len() {
            return Err(Error::IndexOutOfRange {
                name: self.label(),
                index,
                len: list.len(),
            });
        }
        let step = u32::try_from(index).map_err(|_| Error::IndexOutOfRange {
            name: self.label(),
            index,
            len: list.len(),
        })?;
        let anchored = self
            .anchored
            .project(|v| match v {
                View::List(l) => l.get(index),
                // Checked above; kept as an error rather than a panic.
                _ => Err(ReadError::BadCount {
                    what: "list index",
                    value: index as i64,
                }),
            })
            .map_err(|source| Error::Corrupt {
                name: self.label(),
                source,
            })?;
        let mut path = self.path.clone();
        path.push(step);
        Ok(Self {
            anchored,
            path,
            owner: self.owner.clone(),
        })
    }

    /// The `names` attribute of a list (`None` if it has none).
    pub fn names(&self) -> Result<Option<Vec<RString>>> {
        let View::List(list) = self.view() else {
            return Err(Error::NotAList { name: self.label() });
        };
        list.names().map_err(|source| Error::Corrupt {
            name: self.label(),
            source,
        })
    }

    /// The element of a list named `name`, if there is one (the first, if several are).
    ///
    /// ```
    /// use mori_shm::Source;
    /// let df = mori_shm::share_data_frame(vec![("x", Source::Double(&[1.0])), ("y", Source::Integer(&[2]))])?;
    /// assert_eq!(df.get_named("y")?.unwrap().as_i32(), Some(&[2][..]));
    /// assert!(df.get_named("z")?.is_none());
    /// # Ok::<(), mori_shm::Error>(())
    /// ```
    pub fn get_named(&self, name: &str) -> Result<Option<Self>> {
        let View::List(list) = self.view() else {
            return Err(Error::NotAList { name: self.label() });
        };
        let names = list.names_in_place().map_err(|source| Error::Corrupt {
            name: self.label(),
            source,
        })?;
        match names.and_then(|n| n.position(name)) {
            Some(i) => self.get(i).map(Some),
            None => Ok(None),
        }
    }

    /// Copy the value out of the region into the owned model (attributes decoded).
    pub fn to_value(&self) -> Result<Value> {
        self.view().to_value().map_err(|source| Error::Corrupt {
            name: self.label(),
            source,
        })
    }
}

/// The creator's handle of a region: a view of its root that also owns its name.
///
/// The name is unlinked when this handle and every view taken from it ([`Shared::view`],
/// [`SharedView::get`], [`SharedView::get_named`], nested) have been dropped, as R's mori does
/// when the last reference to a shared object or any part of it is collected: mappings that
/// exist (in this or other processes) stay valid, and new [`map_shared`] calls fail with
/// [`Error::NotFound`]. Keep the handle, or a view taken from it, alive until every consumer
/// has mapped the region.
///
/// It dereferences to the [`SharedView`] of the root.
///
/// ```
/// let shared = mori_shm::share_f64(&[1.0, 2.0])?;
/// let name = shared.name().to_owned();
/// let consumer = mori_shm::map_shared(&name)?;
/// drop(shared);
/// assert!(matches!(mori_shm::map_shared(&name), Err(mori_shm::Error::NotFound { .. })));
/// assert_eq!(consumer.as_f64(), Some(&[1.0, 2.0][..])); // the mapping outlives the name
/// # Ok::<(), mori_shm::Error>(())
/// ```
#[derive(Debug)]
pub struct Shared {
    /// The root, whose `owner` is always `Some`.
    root: SharedView,
}

impl Shared {
    /// A view of the root. Like every view taken from this handle it keeps the name alive (see
    /// [`Shared`]).
    ///
    /// ```
    /// let shared = mori_shm::share_f64(&[1.0, 2.0])?;
    /// let view = shared.view();
    /// let name = shared.name().to_owned();
    /// drop(shared);
    /// assert_eq!(mori_shm::map_shared(&name)?.as_f64(), Some(&[1.0, 2.0][..]));
    /// drop(view);
    /// assert!(mori_shm::map_shared(&name).is_err());
    /// # Ok::<(), mori_shm::Error>(())
    /// ```
    pub fn view(&self) -> SharedView {
        self.root.clone()
    }
}

impl Deref for Shared {
    type Target = SharedView;

    fn deref(&self) -> &SharedView {
        &self.root
    }
}

impl Shared {
    /// Give the name away (it was sent to another process, which now owns it): dropping this
    /// handle and its views no longer unlinks it.
    pub(crate) fn hand_over(&self) {
        if let Some(owner) = &self.root.owner {
            owner.hand_over();
        }
    }

    /// Take over region `name` (`/mori_...`, no path), handed over by its creator: the owner
    /// record becomes this process's and the handle unlinks the name when dropped.
    pub(crate) fn adopt(name: &str) -> Result<Self> {
        let (mapping, owner) = region::adopt(name)?;
        let anchored = resolve_in(mapping, name, &[])?;
        Ok(Self {
            root: SharedView {
                anchored,
                path: Path::new(),
                owner: Some(Arc::new(owner)),
            },
        })
    }
}

/// Validate a region's bytes and resolve `path` in them, with R's error cases.
fn resolve_in(mapping: Arc<Mapping>, identifier: &str, path: &[u32]) -> Result<Anchored> {
    let region = mapping.name().to_owned();
    // The identifier of the list reached after `depth` steps, for error messages.
    let at =
        |depth: usize| format_identifier(&region, &path[..depth]).unwrap_or_else(|| region.clone());
    Anchored::new(mapping, |bytes| {
        let corrupt = |source| Error::Corrupt {
            name: identifier.to_owned(),
            source,
        };
        let mut view = Region::new(bytes).map_err(corrupt)?.root();
        for (depth, &index) in path.iter().enumerate() {
            let View::List(list) = view else {
                return Err(Error::NotAList { name: at(depth) });
            };
            if index as usize >= list.len() {
                return Err(Error::IndexOutOfRange {
                    name: at(depth),
                    index: index as usize,
                    len: list.len(),
                });
            }
            view = list.get(index as usize).map_err(corrupt)?;
        }
        Ok(view)
    })
}

/// Attach to a shared value by identifier: a region name (`/mori_<pid>_<counter>`), optionally
/// with R's 1-based path to an element (`/mori_<pid>_<counter>[2,1]`).
///
/// The region is mapped read-only and lazily, and validated (work proportional to its number of
/// elements and strings, not its bytes) before the view is returned. Malformed identifiers give
/// [`Error::MalformedName`], absent regions [`Error::NotFound`], paths that lead nowhere
/// [`Error::IndexOutOfRange`] or [`Error::NotAList`], bad bytes [`Error::Corrupt`].
///
/// ```
/// use mori_shm::{Error, Source};
/// let shared = mori_shm::share_list(vec![
///     (Some("x"), Source::Double(&[1.5])),
///     (Some("inner"), Source::List(vec![(None, Source::Integer(&[4, 5]))])),
/// ])?;
/// let inner = mori_shm::map_shared(&format!("{}[2,1]", shared.name()))?;
/// assert_eq!(inner.as_i32(), Some(&[4, 5][..]));
/// assert!(matches!(mori_shm::map_shared("not a name"), Err(Error::MalformedName { .. })));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn map_shared(identifier: &str) -> Result<SharedView> {
    let id = Identifier::parse(identifier).map_err(|_| Error::MalformedName {
        name: identifier.to_owned(),
    })?;
    // The file is named by the text as given (R opens it the same way), leading zeros included.
    let region_name = identifier.split('[').next().unwrap_or(identifier);
    let mapping = region::attach(region_name)?;
    let anchored = resolve_in(mapping, identifier, &id.path)?;
    Ok(SharedView {
        anchored,
        path: Path::from_vec(id.path),
        owner: None,
    })
}

/// The identifier of a shared value ([`SharedView::identifier`]), as R's `shared_name()`.
pub fn shared_name(view: &SharedView) -> Option<String> {
    view.identifier()
}

/// True if `x` is a handle on shared memory ([`Shared`] or [`SharedView`]), as R's
/// `is_shared()`: for generic code that passes either shared handles or ordinary values.
///
/// ```
/// let shared = mori_shm::share_i32(&[1, 2])?;
/// assert!(mori_shm::is_shared(&shared));
/// assert!(mori_shm::is_shared(&shared.view()));
/// assert!(!mori_shm::is_shared(&vec![1, 2]));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn is_shared<T: ?Sized + 'static>(_x: &T) -> bool {
    use std::any::TypeId;
    let t = TypeId::of::<T>();
    t == TypeId::of::<Shared>() || t == TypeId::of::<SharedView>()
}

/// Vector data at least this large are copied into a new region with `pwrite` rather than
/// stored through its mapping: one system call costs less than the page faults it saves.
const PWRITE_MIN: usize = 32 << 10;

/// Parts of a new region written through its mapping that are at least this large have their
/// page tables populated in one call first; smaller ones fault in on first store.
pub(crate) const POPULATE_MIN: usize = 64 << 10;

/// The byte ranges of a region of `len` bytes not covered by `payloads` (in region order).
fn gaps(payloads: &[mori_format::write::Payload<'_>], len: usize) -> Vec<std::ops::Range<usize>> {
    let mut gaps = Vec::with_capacity(payloads.len() + 1);
    let mut at = 0;
    for p in payloads {
        if p.offset > at {
            gaps.push(at..p.offset);
        }
        at = p.offset + p.bytes.len();
    }
    if len > at {
        gaps.push(at..len);
    }
    gaps
}

/// Share any value described by a [`Source`] (borrowing the caller's slices) with explicit
/// writer options: the bytes are written once, straight into the new region.
///
/// ```
/// use mori_shm::{Source, WriteOptions};
/// let x = [1.0, 2.0];
/// let shared = mori_shm::share_source_with(&Source::Double(&x), &WriteOptions::default())?;
/// assert_eq!(shared.as_f64(), Some(&x[..]));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn share_source_with(source: &Source<'_>, opts: &WriteOptions) -> Result<Shared> {
    let plan = source
        .plan(opts)
        .map_err(|source| Error::Unshareable { source })?;
    let unshareable = |source| Error::Unshareable { source };
    let payloads = plan.payloads(PWRITE_MIN).map_err(unshareable)?;
    let (mapping, owner) = region::create(plan.len(), |region| {
        // Large vector data go in through the file, the rest (headers, tables, strings, small
        // vectors) through the mapping: each byte is still copied once, from the caller's
        // memory into the region.
        for p in &payloads {
            region.write_at(p.offset, p.bytes)?;
        }
        region.allocate_rest()?;
        for gap in gaps(&payloads, plan.len()) {
            if gap.len() >= POPULATE_MIN {
                region.populate(gap);
            }
        }
        plan.write_into_except_payloads(region.bytes_mut()?, PWRITE_MIN)
            .map(drop)
            .map_err(unshareable)
    })?;
    Shared::created(mapping, owner)
}

impl Shared {
    /// The handle of a region this process just created and owns.
    pub(crate) fn created(mapping: Arc<Mapping>, owner: NameOwner) -> Result<Self> {
        let name = mapping.name().to_owned();
        let anchored = resolve_in(mapping, &name, &[])?;
        Ok(Self {
            root: SharedView {
                anchored,
                path: Path::new(),
                owner: Some(Arc::new(owner)),
            },
        })
    }
}

/// Share a [`Source`] with the default writer options (attributes in the form R <= 4.5 reads).
pub fn share_source(source: &Source<'_>) -> Result<Shared> {
    share_source_with(source, &WriteOptions::default())
}

/// Share an owned [`Value`] (any R vector, list or data frame, attributes included).
///
/// ```
/// use mori_format::value::Value;
/// let shared = mori_shm::share(&Value::character(["a", "b"]))?;
/// assert_eq!(shared.to_value()?, Value::character(["a", "b"]));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn share(value: &Value) -> Result<Shared> {
    share_source(&Source::Value(value))
}

/// Share a double vector: one copy, from `x` into the region.
///
/// ```
/// let shared = mori_shm::share_f64(&[0.5; 1000])?;
/// assert_eq!(shared.len(), 1000);
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn share_f64(x: &[f64]) -> Result<Shared> {
    share_source(&Source::Double(x))
}

/// Share an integer vector (`i32::MIN` is NA).
pub fn share_i32(x: &[i32]) -> Result<Shared> {
    share_source(&Source::Integer(x))
}

/// Share a raw (byte) vector.
pub fn share_raw(x: &[u8]) -> Result<Shared> {
    share_source(&Source::Raw(x))
}

/// Share a character vector. Only the string slices are collected; their bytes are copied once,
/// into the region.
pub fn share_strings<S: AsRef<str>>(x: &[S]) -> Result<Shared> {
    let strs: Vec<&str> = x.iter().map(AsRef::as_ref).collect();
    share_source(&Source::Strings(&strs))
}

/// Share a list of (optionally named) elements, each borrowed from the caller.
///
/// ```
/// use mori_shm::Source;
/// let a = [1.0, 2.0];
/// let shared = mori_shm::share_list(vec![(Some("a"), Source::Double(&a)), (Some("b"), Source::Strings(&["x"]))])?;
/// assert_eq!(shared.len(), 2);
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn share_list(items: Vec<(Option<&str>, Source<'_>)>) -> Result<Shared> {
    share_source(&Source::List(items))
}

/// Share a data frame: named columns of equal length, each borrowed from the caller.
///
/// ```
/// use mori_shm::Source;
/// let shared = mori_shm::share_data_frame(vec![
///     ("x", Source::Double(&[1.0, 2.0])),
///     ("label", Source::Strings(&["a", "b"])),
/// ])?;
/// assert_eq!(shared.get(0)?.as_f64(), Some(&[1.0, 2.0][..]));
/// # Ok::<(), mori_shm::Error>(())
/// ```
pub fn share_data_frame(columns: Vec<(&str, Source<'_>)>) -> Result<Shared> {
    share_source(&Source::DataFrame(columns))
}

#[cfg(test)]
#[path = "shared_tests.rs"]
mod tests;
