//! `nano-cat`: a command-line SP peer with nngcat's flags, behaviour and output formats.
//!
//! It exists so scripts written for `nngcat` (NNG's command-line tool) run unchanged against
//! nano-transport, and so nano-transport can be poked from a shell. The flags are nngcat 1.5.2's:
//!
//! ```text
//! nano-cat --rep --listen tcp://127.0.0.1:5555 --data pong --quoted
//! nano-cat --req --dial tcp://127.0.0.1:5555 --data ping --quoted
//! nano-cat --pull -X /tmp/jobs.ipc --count 3 --hex
//! nano-cat --sub --dial abstract://news --subscribe sport --ascii
//! ```
//!
//! - protocol: `--req0` `--rep0` `--pub0` `--sub0` `--push0` `--pull0` `--surveyor0`
//!   `--respondent0` `--pair0` `--pair1` `--bus0`, each also without the `0`; `--pair` is
//!   PAIR1 (PAIR0 with `--compat`).
//! - addresses, repeatable, used in the order given: `--dial`/`--connect URL`,
//!   `--listen`/`--bind URL`, `--bind-local`/`-L PORT` and `--connect-local`/`-l PORT`
//!   (`tcp://127.0.0.1:PORT`), `--bind-ipc`/`-X PATH` and `--connect-ipc`/`-x PATH`.
//! - output: `--format no|ascii|hex|msgpack|quoted|raw` or `--ascii`/`-A`, `--quoted`/`-Q`,
//!   `--hex`, `--msgpack`, `--raw`. Without one, received messages are not printed.
//! - data: `--data`/`-D TEXT` or `--file`/`-F FILE` (`-` reads standard input).
//! - `--count`/`-C N`, `--delay`/`-d S`, `--interval`/`-i S`, `--recv-timeout S`,
//!   `--send-timeout S` (whole seconds, as in nngcat), `--recv-maxsz`/`-Z BYTES`,
//!   `--subscribe TOPIC` (SUB; default everything), `--async` (dial in the background),
//!   `--compat`, `--silent`/`-q`, `--verbose`/`-v`.
//! - Long options may be abbreviated to any unambiguous prefix, as nngcat allows.
//!
//! What each protocol does is nngcat's: PULL and SUB print what they receive; REP and
//! RESPONDENT print each request and answer it with the data (or only print, without data);
//! PUSH and PUB send the data once, or `--count` times, or every `--interval` seconds; REQ and
//! SURVEYOR send and print the replies; PAIR and BUS send (with data) and print what arrives.
//! Receiving ends at a receive timeout, at the end of a survey, or after `--count` messages.
//!
//! Differences from nngcat: `--pair` works as its help describes (nngcat 1.5.2 rejects it with
//! "No protocol specified."); a blocking dial (without `--async`) waits up to 10 s for the peer to
//! come up instead of failing at once when nobody listens yet; `--count` without `--interval` on
//! a sending-and-receiving protocol waits for replies up to `--recv-timeout` instead of failing
//! with "Cannot set recv timeout"; TLS and ZeroTier options are not supported.

use std::io::{self, Read, Write};
use std::process::ExitCode;
use std::thread;
use std::time::{Duration, Instant};

use clap::{ArgGroup, CommandFactory, FromArgMatches, Parser, ValueEnum};
use nano_transport::{Error, Protocol, Socket};

/// How long a blocking dial waits for the peer to accept and complete the SP handshake.
const DIAL_WAIT: Duration = Duration::from_secs(10);

/// How long a sender lingers after its last message so queued frames reach the wire (nngcat
/// sleeps the same 200 ms).
const DRAIN: Duration = Duration::from_millis(200);

/// The largest value nngcat accepts for a number of seconds (one day).
const MAX_SECS: u32 = 86_400;

/// How received messages are printed, byte for byte as nngcat prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// Print nothing (also what happens when no format is given).
    No,
    /// Printable ASCII as is, anything else as `.`, no separator between messages.
    Ascii,
    /// A C string literal made of `\xNN` escapes, one message per line.
    Hex,
    /// A msgpack `bin` header, then the raw bytes.
    Msgpack,
    /// A C-style quoted string, one message per line.
    Quoted,
    /// The raw bytes, no separator.
    Raw,
}

/// The command line, nngcat's flags (see the module docs).
#[derive(Debug, Parser)]
#[command(
    name = "nano-cat",
    version,
    about = "A command-line Scalability Protocols peer, compatible with nngcat",
    infer_long_args = true,
    group(ArgGroup::new("protocol").required(true).multiple(false)),
    group(ArgGroup::new("fmt").multiple(false)),
    group(ArgGroup::new("src").multiple(false)),
)]
struct Cli {
    /// REQ version 0: send a request, print the reply.
    #[arg(long = "req0", visible_alias = "req", group = "protocol")]
    req0: bool,
    /// REP version 0: print requests, answer them with the data.
    #[arg(long = "rep0", visible_alias = "rep", group = "protocol")]
    rep0: bool,
    /// PUB version 0: publish the data.
    #[arg(long = "pub0", visible_alias = "pub", group = "protocol")]
    pub0: bool,
    /// SUB version 0: print what is published on the subscribed topics.
    #[arg(long = "sub0", visible_alias = "sub", group = "protocol")]
    sub0: bool,
    /// PUSH version 0: send the data.
    #[arg(long = "push0", visible_alias = "push", group = "protocol")]
    push0: bool,
    /// PULL version 0: print what arrives.
    #[arg(long = "pull0", visible_alias = "pull", group = "protocol")]
    pull0: bool,
    /// SURVEYOR version 0: send a survey, print the responses.
    #[arg(long = "surveyor0", visible_alias = "surveyor", group = "protocol")]
    surveyor0: bool,
    /// RESPONDENT version 0: print surveys, answer them with the data.
    #[arg(long = "respondent0", visible_alias = "respondent", group = "protocol")]
    respondent0: bool,
    /// PAIR version 0.
    #[arg(long = "pair0", group = "protocol")]
    pair0: bool,
    /// PAIR version 1.
    #[arg(long = "pair1", group = "protocol")]
    pair1: bool,
    /// PAIR version 1 (version 0 with --compat).
    #[arg(long = "pair", group = "protocol")]
    pair: bool,
    /// BUS version 0.
    #[arg(long = "bus0", visible_alias = "bus", group = "protocol")]
    bus0: bool,

    /// Dial URL (repeatable).
    #[arg(long = "dial", visible_alias = "connect", value_name = "URL")]
    dial: Vec<String>,
    /// Listen on URL (repeatable).
    #[arg(long = "listen", visible_alias = "bind", value_name = "URL")]
    listen: Vec<String>,
    /// Listen on tcp://127.0.0.1:PORT.
    #[arg(long = "bind-local", short = 'L', value_name = "PORT")]
    bind_local: Vec<u16>,
    /// Dial tcp://127.0.0.1:PORT.
    #[arg(long = "connect-local", short = 'l', value_name = "PORT")]
    connect_local: Vec<u16>,
    /// Listen on ipc:///PATH.
    #[arg(long = "bind-ipc", short = 'X', value_name = "PATH")]
    bind_ipc: Vec<String>,
    /// Dial ipc:///PATH.
    #[arg(long = "connect-ipc", short = 'x', value_name = "PATH")]
    connect_ipc: Vec<String>,

    /// Output format of received messages.
    #[arg(long = "format", value_enum, group = "fmt")]
    format: Option<Format>,
    /// Same as --format ascii.
    #[arg(long = "ascii", short = 'A', group = "fmt")]
    ascii: bool,
    /// Same as --format quoted.
    #[arg(long = "quoted", short = 'Q', group = "fmt")]
    quoted: bool,
    /// Same as --format hex.
    #[arg(long = "hex", group = "fmt")]
    hex: bool,
    /// Same as --format msgpack.
    #[arg(long = "msgpack", group = "fmt")]
    msgpack: bool,
    /// Same as --format raw.
    #[arg(long = "raw", group = "fmt")]
    raw: bool,

    /// SUB: subscribe to TOPIC (repeatable; default: everything).
    #[arg(long = "subscribe", value_name = "TOPIC")]
    subscribe: Vec<String>,
    /// Quiet (accepted for compatibility).
    #[arg(long = "silent", short = 'q')]
    silent: bool,
    /// Verbose (accepted for compatibility).
    #[arg(long = "verbose", short = 'v')]
    verbose: bool,
    /// Stop after NUM messages (sent, or received, depending on the protocol).
    #[arg(long = "count", short = 'C', value_name = "NUM")]
    count: Option<u32>,
    /// Wait SECS before the first send.
    #[arg(long = "delay", short = 'd', value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(..=i64::from(MAX_SECS)))]
    delay: Option<u32>,
    /// Send again every SECS.
    #[arg(long = "interval", short = 'i', value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(..=i64::from(MAX_SECS)))]
    interval: Option<u32>,
    /// Give up receiving after SECS.
    #[arg(long = "recv-timeout", value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(..=i64::from(MAX_SECS)))]
    recv_timeout: Option<u32>,
    /// Give up sending after SECS.
    #[arg(long = "send-timeout", value_name = "SECS",
          value_parser = clap::value_parser!(u32).range(..=i64::from(MAX_SECS)))]
    send_timeout: Option<u32>,
    /// Disconnect peers announcing messages over SIZE bytes (0: no limit).
    #[arg(long = "recv-maxsz", short = 'Z', value_name = "SIZE")]
    recv_maxsz: Option<u32>,
    /// nanocat compatibility: --pair means PAIR0, dial in the background.
    #[arg(long = "compat")]
    compat: bool,
    /// Dial in the background instead of waiting for the connection.
    #[arg(long = "async")]
    async_dial: bool,

    /// Send the contents of FILE (`-` for standard input).
    #[arg(long = "file", short = 'F', value_name = "FILE", group = "src")]
    file: Option<String>,
    /// Send DATA.
    #[arg(long = "data", short = 'D', value_name = "DATA", group = "src")]
    data: Option<String>,
}

/// A failure that ends the program with status 1 and a message on stderr.
#[derive(Debug)]
struct Fatal(String);

impl Fatal {
    fn new(msg: impl Into<String>) -> Self {
        Self(msg.into())
    }
}

/// Whether an address is listened on or dialed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Listen,
    Dial,
}

/// What the program does once its socket is connected, chosen from the protocol and data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Print what arrives.
    Receive,
    /// Print requests and answer each with the data.
    Respond,
    /// Send the data.
    Send,
    /// Send the data, print what comes back.
    SendReceive,
}

/// Everything the command line decided, validated.
#[derive(Debug)]
struct Plan {
    protocol: Protocol,
    mode: Mode,
    addresses: Addresses,
    format: Format,
    topics: Vec<Vec<u8>>,
    data: Option<Vec<u8>>,
    count: u32,
    delay: Duration,
    interval: Option<Duration>,
    recv_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
    recv_maxsz: Option<usize>,
    background_dial: bool,
}

fn secs(s: Option<u32>) -> Option<Duration> {
    s.map(|s| Duration::from_secs(u64::from(s)))
}

impl Cli {
    fn protocol(&self) -> Protocol {
        match () {
            () if self.req0 => Protocol::Req0,
            () if self.rep0 => Protocol::Rep0,
            () if self.pub0 => Protocol::Pub0,
            () if self.sub0 => Protocol::Sub0,
            () if self.push0 => Protocol::Push0,
            () if self.pull0 => Protocol::Pull0,
            () if self.surveyor0 => Protocol::Surveyor0,
            () if self.respondent0 => Protocol::Respondent0,
            () if self.pair0 => Protocol::Pair0,
            () if self.pair1 => Protocol::Pair1,
            () if self.pair && self.compat => Protocol::Pair0,
            () if self.pair => Protocol::Pair1,
            _ => Protocol::Bus0,
        }
    }

    fn format(&self) -> Format {
        match () {
            () if self.ascii => Format::Ascii,
            () if self.quoted => Format::Quoted,
            () if self.hex => Format::Hex,
            () if self.msgpack => Format::Msgpack,
            () if self.raw => Format::Raw,
            _ => self.format.unwrap_or(Format::No),
        }
    }

    fn data(&self) -> Result<Option<Vec<u8>>, Fatal> {
        if let Some(d) = &self.data {
            return Ok(Some(d.clone().into_bytes()));
        }
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let mut bytes = Vec::new();
        let read = if path == "-" {
            io::stdin().lock().read_to_end(&mut bytes).map(|_| ())
        } else {
            std::fs::File::open(path).and_then(|mut f| f.read_to_end(&mut bytes).map(|_| ()))
        };
        read.map_err(|e| Fatal(format!("Cannot open file {path}: {e}")))?;
        Ok(Some(bytes))
    }

    /// Checks the combination as nngcat does, with nngcat's messages.
    fn plan(&self, addresses: Addresses) -> Result<Plan, Fatal> {
        if addresses.is_empty() {
            return Err(Fatal::new("No address specified."));
        }
        if self.compat && self.async_dial {
            return Err(Fatal::new("Options --async and --compat are incompatible."));
        }
        if self.compat && self.count.is_some() {
            return Err(Fatal::new("Options --count and --compat are incompatible."));
        }
        if self.compat && self.pair1 {
            return Err(Fatal::new("Protocol does not support --compat."));
        }
        let protocol = self.protocol();
        let format = self.format();
        let data = self.data()?;
        let mut topics: Vec<Vec<u8>> = self
            .subscribe
            .iter()
            .map(|t| t.clone().into_bytes())
            .collect();
        if protocol == Protocol::Sub0 {
            if topics.is_empty() {
                topics.push(Vec::new());
            }
        } else if !topics.is_empty() {
            return Err(Fatal::new("Protocol does not support --subscribe."));
        }
        let formatted = self.format.is_some() || format != Format::No;
        let mode = match protocol {
            Protocol::Pull0 | Protocol::Sub0 => {
                if data.is_some() {
                    return Err(Fatal::new("Protocol does not support --file or --data."));
                }
                if self.interval.is_some() {
                    return Err(Fatal::new("Protocol does not support --interval."));
                }
                Mode::Receive
            }
            Protocol::Push0 | Protocol::Pub0 => {
                if formatted {
                    return Err(Fatal::new("Protocol does not support --format options."));
                }
                if data.is_none() {
                    return Err(Fatal::new("Protocol requires either --file or --data."));
                }
                Mode::Send
            }
            Protocol::Req0 | Protocol::Surveyor0 => {
                if data.is_none() {
                    return Err(Fatal::new("Protocol requires either --file or --data."));
                }
                Mode::SendReceive
            }
            Protocol::Rep0 | Protocol::Respondent0 => {
                if self.interval.is_some() {
                    return Err(Fatal::new("Protocol does not support --interval."));
                }
                if data.is_some() {
                    Mode::Respond
                } else {
                    Mode::Receive
                }
            }
            Protocol::Pair0 | Protocol::Pair1 | Protocol::Bus0 => {
                if self.interval.is_some() && data.is_none() {
                    return Err(Fatal::new(
                        "Option --interval requires either --file or --data.",
                    ));
                }
                if data.is_some() {
                    Mode::SendReceive
                } else {
                    Mode::Receive
                }
            }
        };
        Ok(Plan {
            protocol,
            mode,
            addresses,
            format,
            topics,
            data,
            count: self.count.unwrap_or(0),
            delay: secs(self.delay).unwrap_or(Duration::ZERO),
            interval: secs(self.interval),
            recv_timeout: secs(self.recv_timeout).filter(|d| !d.is_zero()),
            send_timeout: secs(self.send_timeout).filter(|d| !d.is_zero()),
            recv_maxsz: self.recv_maxsz.map(|n| n as usize),
            background_dial: self.async_dial || self.compat,
        })
    }
}

/// Addresses to listen on or dial, in command-line order.
type Addresses = Vec<(Role, String)>;

/// The addresses in command-line order, whichever flag named them.
fn addresses(matches: &clap::ArgMatches) -> Addresses {
    let mut out = Vec::new();
    let mut take = |id: &str, role: Role, url: &dyn Fn(&str) -> String| {
        let (Some(values), Some(indices)) = (matches.get_raw(id), matches.indices_of(id)) else {
            return;
        };
        for (v, i) in values.zip(indices) {
            out.push((i, role, url(&v.to_string_lossy())));
        }
    };
    take("dial", Role::Dial, &|v| v.to_owned());
    take("listen", Role::Listen, &|v| v.to_owned());
    take("connect_local", Role::Dial, &|v| {
        format!("tcp://127.0.0.1:{v}")
    });
    take("bind_local", Role::Listen, &|v| {
        format!("tcp://127.0.0.1:{v}")
    });
    take("connect_ipc", Role::Dial, &|v| format!("ipc:///{v}"));
    take("bind_ipc", Role::Listen, &|v| format!("ipc:///{v}"));
    out.sort_by_key(|&(i, _, _)| i);
    out.into_iter().map(|(_, role, url)| (role, url)).collect()
}

/// `isprint` in the C locale.
fn printable(b: u8) -> bool {
    (0x20..=0x7e).contains(&b)
}

/// Appends `body` to `out` exactly as nngcat prints it in `format`.
fn render(format: Format, body: &[u8], out: &mut Vec<u8>) {
    match format {
        Format::No => {}
        Format::Raw => out.extend_from_slice(body),
        Format::Ascii => out.extend(body.iter().map(|&b| if printable(b) { b } else { b'.' })),
        Format::Quoted => {
            out.push(b'"');
            for &b in body {
                match b {
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b'"' | b'\\' => out.extend_from_slice(&[b'\\', b]),
                    b if printable(b) => out.push(b),
                    b => out.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            out.extend_from_slice(b"\"\n");
        }
        Format::Hex => {
            out.push(b'"');
            for &b in body {
                out.extend_from_slice(format!("\\x{b:02x}").as_bytes());
            }
            out.extend_from_slice(b"\"\n");
        }
        Format::Msgpack => {
            let len = body.len();
            if let Ok(small) = u8::try_from(len) {
                out.extend_from_slice(&[0xc4, small]);
            } else if let Ok(medium) = u16::try_from(len) {
                out.push(0xc5);
                out.extend_from_slice(&medium.to_be_bytes());
            } else {
                // bin32 holds 32 bits of length; nngcat writes the low 32 bits of larger ones.
                out.push(0xc6);
                out.extend_from_slice(&((len & 0xffff_ffff) as u32).to_be_bytes());
            }
            out.extend_from_slice(body);
        }
    }
}

/// Runs the plan on an open socket.
struct Runner {
    socket: Socket,
    plan: Plan,
    printed: Vec<u8>,
}

/// Whether a receive error just means "nothing more to receive" (timeout, survey over).
fn ends_receiving(e: &Error) -> bool {
    matches!(e, Error::Timeout | Error::State(_))
}

impl Runner {
    fn print(&mut self, body: &[u8]) -> Result<(), Fatal> {
        if self.plan.format == Format::No {
            return Ok(());
        }
        self.printed.clear();
        render(self.plan.format, body, &mut self.printed);
        let mut out = io::stdout().lock();
        out.write_all(&self.printed)
            .and_then(|()| out.flush())
            .map_err(|e| Fatal(format!("Cannot write output: {e}")))
    }

    fn data(&self) -> &[u8] {
        self.plan.data.as_deref().unwrap_or_default()
    }

    fn send(&self) -> Result<(), Fatal> {
        self.socket
            .send(self.data())
            .map_err(|e| Fatal(format!("Send error: {e}")))
    }

    /// Receive and print until a timeout, the end of a survey, or `--count` messages.
    fn receive_loop(&mut self) -> Result<(), Fatal> {
        let mut iterations = 0;
        loop {
            if self.plan.count > 0 && iterations >= self.plan.count {
                return Ok(());
            }
            iterations += 1;
            match self.socket.recv() {
                Ok(msg) => self.print(&msg)?,
                Err(e) if ends_receiving(&e) => return Ok(()),
                Err(e) => return Err(Fatal(format!("Receive error: {e}"))),
            }
        }
    }

    /// Print each request and answer it with the data, `--count` times or forever.
    fn respond_loop(&mut self) -> Result<(), Fatal> {
        let mut iterations = 0;
        loop {
            let msg = self
                .socket
                .recv()
                .map_err(|e| Fatal(format!("Receive error: {e}")))?;
            self.print(&msg)?;
            self.send()?;
            iterations += 1;
            if self.plan.count > 0 && iterations >= self.plan.count {
                break;
            }
        }
        thread::sleep(DRAIN);
        Ok(())
    }

    /// Sleep what is left of the interval since `start`.
    fn pace(&self, start: Instant) {
        if let Some(left) = self
            .plan
            .interval
            .and_then(|i| i.checked_sub(start.elapsed()))
        {
            thread::sleep(left);
        }
    }

    /// Send the data once, `--count` times, or every `--interval`.
    fn send_loop(&mut self) -> Result<(), Fatal> {
        thread::sleep(self.plan.delay);
        let mut iterations = 0;
        loop {
            let start = Instant::now();
            self.send()?;
            iterations += 1;
            let once = self.plan.interval.is_none() && self.plan.count == 0;
            if once || (self.plan.count > 0 && iterations >= self.plan.count) {
                break;
            }
            self.pace(start);
        }
        thread::sleep(DRAIN);
        Ok(())
    }

    /// Send, then print what comes back until the interval (or receive timeout) is over.
    fn send_receive_loop(&mut self) -> Result<(), Fatal> {
        thread::sleep(self.plan.delay);
        let mut iterations = 0;
        loop {
            let start = Instant::now();
            self.send()?;
            if self.plan.interval.is_none() && self.plan.count == 0 {
                return self.receive_loop();
            }
            loop {
                let window = self
                    .plan
                    .interval
                    .map(|i| i.saturating_sub(start.elapsed()));
                let wait = match (window, self.plan.recv_timeout) {
                    (Some(w), Some(t)) => Some(w.min(t)),
                    (w, t) => w.or(t),
                };
                let got = match wait {
                    Some(w) => self.socket.recv_timeout(w),
                    None => self.socket.recv(),
                };
                match got {
                    Ok(msg) => self.print(&msg)?,
                    Err(e) if ends_receiving(&e) => break,
                    Err(e) => return Err(Fatal(format!("Cannot receive: {e}"))),
                }
            }
            iterations += 1;
            if self.plan.count > 0 && iterations >= self.plan.count {
                return Ok(());
            }
            self.pace(start);
        }
    }
}

fn open(plan: &Plan) -> Result<Socket, Fatal> {
    let socket =
        Socket::new(plan.protocol).map_err(|e| Fatal(format!("Unable to open socket: {e}")))?;
    for topic in &plan.topics {
        socket.subscribe(topic).map_err(|e| {
            Fatal(format!(
                "Unable to subscribe to topic {}: {e}",
                String::from_utf8_lossy(topic)
            ))
        })?;
    }
    socket.set_send_timeout(plan.send_timeout);
    socket.set_recv_timeout(plan.recv_timeout);
    if let Some(max) = plan.recv_maxsz {
        socket.set_recv_max_size(max);
    }
    for (role, url) in &plan.addresses {
        let (act, done) = match role {
            Role::Listen => ("listen", socket.listen(url).map(drop)),
            Role::Dial if plan.background_dial => ("dial", socket.dial(url)),
            Role::Dial => ("dial", socket.dial_blocking(url, DIAL_WAIT)),
        };
        done.map_err(|e| Fatal(format!("Unable to {act} on {url}: {e}")))?;
    }
    Ok(socket)
}

fn run() -> Result<(), Fatal> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).map_err(|e| Fatal(e.to_string()))?;
    let plan = cli.plan(addresses(&matches))?;
    let socket = open(&plan)?;
    let mut runner = Runner {
        socket,
        plan,
        printed: Vec::new(),
    };
    match runner.plan.mode {
        Mode::Receive => runner.receive_loop(),
        Mode::Respond => runner.respond_loop(),
        Mode::Send => runner.send_loop(),
        Mode::SendReceive => runner.send_receive_loop(),
    }
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fatal(msg)) => {
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(format: Format, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        render(format, body, &mut out);
        out
    }

    /// The bytes every format test prints: controls, escapes, the printable edges, high bytes.
    const SAMPLE: &[u8] = b"a\tb\n\r\x01\xffc\"\\ ~\x7f";

    #[test]
    fn quoted_escapes_like_nngcat() {
        assert_eq!(
            rendered(Format::Quoted, SAMPLE),
            b"\"a\\tb\\n\\r\\x01\\xffc\\\"\\\\ ~\\x7f\"\n"
        );
    }

    #[test]
    fn ascii_masks_unprintable_bytes_without_separator() {
        assert_eq!(rendered(Format::Ascii, SAMPLE), b"a.b....c\"\\ ~.");
    }

    #[test]
    fn hex_is_a_c_literal_of_escapes() {
        assert_eq!(
            rendered(Format::Hex, b"a\x00\xff"),
            b"\"\\x61\\x00\\xff\"\n"
        );
    }

    #[test]
    fn msgpack_headers_follow_length() {
        assert_eq!(rendered(Format::Msgpack, b"ab"), b"\xc4\x02ab");
        let mid = vec![1u8; 300];
        assert_eq!(&rendered(Format::Msgpack, &mid)[..3], b"\xc5\x01\x2c");
        let big = vec![1u8; 70_000];
        assert_eq!(
            &rendered(Format::Msgpack, &big)[..5],
            b"\xc6\x00\x01\x11\x70"
        );
    }

    #[test]
    fn raw_and_no_print_bytes_verbatim_or_nothing() {
        assert_eq!(rendered(Format::Raw, SAMPLE), SAMPLE);
        assert!(rendered(Format::No, SAMPLE).is_empty());
    }

    fn parse(args: &[&str]) -> Result<(Cli, Addresses), clap::Error> {
        let matches = Cli::command().try_get_matches_from(args)?;
        let cli = Cli::from_arg_matches(&matches)?;
        Ok((cli, addresses(&matches)))
    }

    fn plan(args: &[&str]) -> Result<Plan, String> {
        let (cli, addrs) = parse(args).map_err(|e| e.to_string())?;
        cli.plan(addrs).map_err(|Fatal(m)| m)
    }

    #[test]
    fn nngcat_aliases_and_short_forms_parse() {
        let p = plan(&["nano-cat", "--req", "-l", "5555", "-D", "hi", "-Q"]).unwrap();
        assert_eq!(p.protocol, Protocol::Req0);
        assert_eq!(
            p.addresses,
            vec![(Role::Dial, "tcp://127.0.0.1:5555".to_owned())]
        );
        assert_eq!(p.data.as_deref(), Some(&b"hi"[..]));
        assert_eq!(p.format, Format::Quoted);
        let p = plan(&["nano-cat", "--pull0", "-X", "tmp/x.ipc", "-A", "-C", "3"]).unwrap();
        assert_eq!(
            p.addresses,
            vec![(Role::Listen, "ipc:///tmp/x.ipc".to_owned())]
        );
        assert_eq!(
            (p.format, p.count, p.mode),
            (Format::Ascii, 3, Mode::Receive)
        );
        let p = plan(&[
            "nano-cat",
            "--bus",
            "--bind",
            "abstract://b",
            "--format",
            "hex",
        ])
        .unwrap();
        assert_eq!((p.protocol, p.format), (Protocol::Bus0, Format::Hex));
    }

    #[test]
    fn pair_means_pair1_unless_compat() {
        assert_eq!(
            plan(&["c", "--pair", "--dial", "tcp://h:1"])
                .unwrap()
                .protocol,
            Protocol::Pair1
        );
        let p = plan(&["c", "--pair", "--compat", "--dial", "tcp://h:1"]).unwrap();
        assert_eq!(p.protocol, Protocol::Pair0);
        assert!(p.background_dial);
    }

    #[test]
    fn long_options_may_be_abbreviated() {
        let p = plan(&[
            "c",
            "--surv",
            "--list",
            "tcp://h:1",
            "--da",
            "x",
            "--recv-t",
            "2",
        ])
        .unwrap();
        assert_eq!(p.protocol, Protocol::Surveyor0);
        assert_eq!(p.recv_timeout, Some(Duration::from_secs(2)));
    }

    #[test]
    fn addresses_keep_command_line_order() {
        let (_, addrs) = parse(&[
            "c",
            "--bus",
            "--dial",
            "tcp://a:1",
            "-L",
            "2",
            "--dial",
            "tcp://b:3",
        ])
        .unwrap();
        assert_eq!(
            addrs,
            vec![
                (Role::Dial, "tcp://a:1".to_owned()),
                (Role::Listen, "tcp://127.0.0.1:2".to_owned()),
                (Role::Dial, "tcp://b:3".to_owned()),
            ]
        );
    }

    #[test]
    fn invalid_combinations_fail_like_nngcat() {
        let cases: &[(&[&str], &str)] = &[
            (
                &["c", "--req", "--dial", "tcp://h:1"],
                "Protocol requires either --file or --data.",
            ),
            (
                &["c", "--pull", "--dial", "tcp://h:1", "-D", "x"],
                "Protocol does not support --file or --data.",
            ),
            (
                &["c", "--push", "--dial", "tcp://h:1", "-D", "x", "-A"],
                "Protocol does not support --format options.",
            ),
            (
                &["c", "--rep", "--dial", "tcp://h:1", "-i", "1"],
                "Protocol does not support --interval.",
            ),
            (
                &["c", "--pair1", "--dial", "tcp://h:1", "-i", "1"],
                "Option --interval requires either --file or --data.",
            ),
            (
                &[
                    "c",
                    "--pub",
                    "--dial",
                    "tcp://h:1",
                    "-D",
                    "x",
                    "--subscribe",
                    "t",
                ],
                "Protocol does not support --subscribe.",
            ),
            (&["c", "--sub"], "No address specified."),
        ];
        for (args, want) in cases {
            assert_eq!(plan(args).unwrap_err(), *want, "{args:?}");
        }
        assert!(parse(&["c", "--req", "--rep", "--dial", "tcp://h:1"]).is_err());
        assert!(parse(&["c", "--sub", "--dial", "tcp://h:1", "-A", "--raw"]).is_err());
        assert!(parse(&["c", "--dial", "tcp://h:1"]).is_err());
        assert!(
            parse(&[
                "c",
                "--push",
                "--dial",
                "tcp://h:1",
                "-d",
                "86401",
                "-D",
                "x"
            ])
            .is_err()
        );
    }

    #[test]
    fn sub_subscribes_to_everything_by_default() {
        let p = plan(&["c", "--sub", "--dial", "tcp://h:1"]).unwrap();
        assert_eq!(p.topics, vec![Vec::<u8>::new()]);
        let p = plan(&[
            "c",
            "--sub",
            "--dial",
            "tcp://h:1",
            "--subscribe",
            "a/",
            "--subscribe",
            "b",
        ])
        .unwrap();
        assert_eq!(p.topics, vec![b"a/".to_vec(), b"b".to_vec()]);
    }
}
