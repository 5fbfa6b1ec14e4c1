//! The one place this crate writes the process environment: a daemon removes the variables it
//! was started with, so the processes its tasks spawn inherit neither its launch settings nor
//! (for daemons started by hand) its join credential.
//!
//! Why a module of its own: [`std::env::remove_var`] is `unsafe` (another thread reading the
//! environment at the same moment, through C's `getenv`, could read freed memory), so the
//! crate denies `unsafe_code` everywhere but here.
#![allow(unsafe_code)]

use std::ffi::OsString;

/// Removes every environment variable whose name starts with `prefix`.
///
/// Call it only where [`daemon_main_if_requested`](crate::daemon_main_if_requested) does: first
/// thing in `main`, before the process has started threads of its own.
pub(crate) fn remove_vars_with_prefix(prefix: &str) {
    let names: Vec<OsString> = std::env::vars_os()
        .map(|(name, _)| name)
        .filter(|name| name.as_encoded_bytes().starts_with(prefix.as_bytes()))
        .collect();
    for name in names {
        // SAFETY: `remove_var` is sound when no other thread reads or writes the environment
        // concurrently. This runs from `daemon_main_if_requested`, whose contract is to be
        // called first thing in `main`, before the program starts any thread; Rust's own
        // environment functions serialize on std's lock in any case, so only a foreign
        // `getenv` on another thread could race, and none exists yet at that point. The name
        // comes from `vars_os`, so it is non-empty and holds no `=` or NUL (it starts with
        // `prefix`).
        unsafe { std::env::remove_var(&name) };
    }
}
