//! `mori`: list, inspect, share and prune the shared-memory regions of R's mori and of
//! `mori-shm`.
//!
//! ```text
//! mori ls [--json]            regions in /dev/shm: name, size, creator pid, alive or orphaned
//! mori show NAME[path]        the type tree of a value: types, lengths, names, attributes
//! mori cat NAME[path]         the value as JSON
//! mori prune                  remove regions whose creator is dead; prints the names removed
//! mori share FILE.json        share a JSON file and print the region name; the region lives
//!                             until standard input closes or SIGTERM/SIGINT/SIGHUP arrives
//! ```
//!
//! Exit codes:
//!
//! | code | meaning |
//! |---|---|
//! | 0 | success |
//! | 1 | a system error (I/O, permissions), or a file under the region's name that is not one of our regions (another user's, a link, readable by others) |
//! | 2 | bad command line, or a malformed identifier |
//! | 3 | no region of that name |
//! | 4 | the region is corrupt, or the path does not lead to a value |
//! | 5 | the input cannot be shared (unreadable or invalid JSON, a value R cannot hold) |
//! | 6 | the region cannot be created (out of space in /dev/shm, name in use) |

mod json;
#[path = "../../share_json.rs"]
mod share_json;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use clap::{Parser, Subcommand};
use mori_shm::{Error, SharedView, Status, View};

#[derive(Parser)]
#[command(
    name = "mori",
    version,
    about = "Inspect, share and prune mori shared-memory regions",
    after_help = "Exit codes: 0 success; 1 system error, or a region file attach does not \
                  trust (another user's, a symbolic link, readable by others); 2 bad command \
                  line or malformed \
                  identifier; 3 no such region; 4 corrupt region or a path that leads nowhere; \
                  5 input that cannot be shared; 6 region cannot be created (out of space, \
                  name in use)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the regions in /dev/shm with their size, creator pid and status.
    Ls {
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the type tree of a shared value (types, lengths, names, attributes).
    Show {
        /// A region name or identifier, e.g. `/mori_4d1b_1` or `/mori_4d1b_1[2,1]`.
        identifier: String,
    },
    /// Print a shared value as JSON.
    Cat {
        /// A region name or identifier, e.g. `/mori_4d1b_1` or `/mori_4d1b_1[2,1]`.
        identifier: String,
        /// Indent the output.
        #[arg(long)]
        pretty: bool,
    },
    /// Remove the regions whose creating process is dead; print their names.
    Prune,
    /// Share a JSON file, print the region name, and keep the region until standard input
    /// closes or SIGTERM, SIGINT or SIGHUP arrives.
    Share {
        /// The JSON file: arrays of numbers, strings or booleans become vectors, objects
        /// named lists.
        file: PathBuf,
    },
}

/// A failure with the exit code it maps to.
struct Failure {
    code: u8,
    message: String,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        let code = match &e {
            Error::MalformedName { .. } => 2,
            Error::NotFound { .. } => 3,
            Error::Corrupt { .. } | Error::IndexOutOfRange { .. } | Error::NotAList { .. } => 4,
            Error::Unshareable { .. } => 5,
            Error::OutOfSpace { .. } | Error::NameInUse { .. } => 6,
            // Not one of our regions: refused like a permission error.
            Error::Untrusted { .. } => 1,
            _ => 1,
        };
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(s) = source {
            message.push_str(": ");
            message.push_str(&s.to_string());
            source = s.source();
        }
        Self { code, message }
    }
}

impl Failure {
    fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Ls { json } => ls(json),
        Command::Show { identifier } => show(&identifier),
        Command::Cat { identifier, pretty } => cat(&identifier, pretty),
        Command::Prune => prune(),
        Command::Share { file } => share(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("mori: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn io_failure(what: &str, e: &io::Error) -> Failure {
    Failure::new(1, format!("{what}: {e}"))
}

fn ls(json: bool) -> Result<(), Failure> {
    let regions = mori_shm::list_regions()?;
    let mut out = io::stdout().lock();
    let written = if json {
        serde_json::to_writer(&mut out, &regions)
            .map_err(io::Error::from)
            .and_then(|()| writeln!(out))
    } else {
        writeln!(out, "{:<28} {:>14} {:>10}  STATUS", "NAME", "SIZE", "PID").and_then(|()| {
            regions.iter().try_for_each(|r| {
                let status = match r.status {
                    Status::Alive => "alive",
                    Status::Orphaned => "orphaned",
                };
                writeln!(out, "{:<28} {:>14} {:>10}  {status}", r.name, r.size, r.pid)
            })
        })
    };
    written.map_err(|e| io_failure("stdout", &e))
}

/// One line per value: `[i] name  type[len]  attr=...`, children indented.
fn tree(out: &mut impl Write, label: &str, view: View<'_>, depth: usize) -> Result<(), Failure> {
    let attrs = view
        .attributes()
        .map_err(|e| Failure::new(4, format!("attributes of {label}: {e}")))?;
    let mut line = format!(
        "{:indent$}{label}  {}[{}]",
        "",
        view.sexptype().r_name(),
        view.len(),
        indent = depth * 2
    );
    for (name, value) in &attrs.0 {
        match (name.as_str(), &value.data) {
            ("names", _) => {}
            (_, mori_format::value::Data::Character(s)) if s.len() <= 4 => {
                let vals: Vec<String> = s
                    .iter()
                    .map(|x| x.as_str().unwrap_or("NA").to_owned())
                    .collect();
                line.push_str(&format!("  {name}={}", vals.join(",")));
            }
            _ => line.push_str(&format!("  {name}")),
        }
    }
    writeln!(out, "{line}").map_err(|e| io_failure("stdout", &e))?;
    if let View::List(list) = view {
        let names = list
            .names()
            .map_err(|e| Failure::new(4, format!("names of {label}: {e}")))?;
        for (i, item) in list.iter().enumerate() {
            let item =
                item.map_err(|e| Failure::new(4, format!("element {} of {label}: {e}", i + 1)))?;
            let name = names
                .as_ref()
                .and_then(|n| n.get(i))
                .and_then(|n| n.as_str())
                .filter(|n| !n.is_empty())
                .map(|n| format!(" ${n}"))
                .unwrap_or_default();
            tree(out, &format!("[{}]{name}", i + 1), item, depth + 1)?;
        }
    }
    Ok(())
}

fn show(identifier: &str) -> Result<(), Failure> {
    let view: SharedView = mori_shm::map_shared(identifier)?;
    let mut out = io::stdout().lock();
    tree(&mut out, identifier, view.view(), 0)
}

fn cat(identifier: &str, pretty: bool) -> Result<(), Failure> {
    let view = mori_shm::map_shared(identifier)?;
    let mut out = io::BufWriter::new(io::stdout().lock());
    let value = json::JsonView(view.view());
    let written = if pretty {
        serde_json::to_writer_pretty(&mut out, &value)
    } else {
        serde_json::to_writer(&mut out, &value)
    };
    written.map_err(|e| {
        if e.is_io() {
            Failure::new(1, format!("stdout: {e}"))
        } else {
            Failure::new(4, format!("{identifier}: {e}"))
        }
    })?;
    writeln!(out)
        .and_then(|()| out.flush())
        .map_err(|e| io_failure("stdout", &e))
}

fn prune() -> Result<(), Failure> {
    let removed = mori_shm::prune()?;
    let mut out = io::stdout().lock();
    removed
        .iter()
        .try_for_each(|name| writeln!(out, "{name}"))
        .map_err(|e| io_failure("stdout", &e))
}

fn share(file: &Path) -> Result<(), Failure> {
    let unshareable =
        |e: &dyn std::fmt::Display| Failure::new(5, format!("{}: {e}", file.display()));
    let mut text = Vec::new();
    std::fs::File::open(file)
        .and_then(|f| {
            f.take(share_json::MAX_INPUT as u64 + 1)
                .read_to_end(&mut text)
        })
        .map_err(|e| unshareable(&e))?;
    let value = share_json::decode(&text).map_err(|e| unshareable(&e))?;
    drop(text);

    // Handle the signals before the name escapes, so no signal can leave the region behind.
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
        signal_hook::consts::SIGHUP,
    ])
    .map_err(|e| io_failure("signals", &e))?;
    let shared = Arc::new(Mutex::new(Some(mori_shm::share(&value)?)));
    drop(value);

    let name = shared
        .lock()
        .map_err(|_| Failure::new(1, "lock poisoned"))?
        .as_ref()
        .map(|s| s.name().to_owned())
        .unwrap_or_default();
    let mut out = io::stdout().lock();
    writeln!(out, "{name}")
        .and_then(|()| out.flush())
        .map_err(|e| io_failure("stdout", &e))?;
    drop(out);

    let on_signal = Arc::clone(&shared);
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            if let Ok(mut held) = on_signal.lock() {
                held.take(); // unlinks
            }
            std::process::exit(0);
        }
    });
    // Keep the region while standard input is open; EOF (or an error) releases it.
    let _ = io::copy(&mut io::stdin().lock().take(u64::MAX), &mut io::sink());
    if let Ok(mut held) = shared.lock() {
        held.take();
    }
    Ok(())
}
