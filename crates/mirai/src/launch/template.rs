//! Daemons through any command: a template line with placeholders, for schedulers and
//! container runners this crate does not know (`docker run`, `kubectl exec`, `qsub`, ...).

use std::ops::Range;
use std::process::{Command, Stdio};

use super::{Error, Join, LaunchId, Launched, Program, daemon_line, quote};

/// A shell line with placeholders, run through `sh -c` once per daemon.
///
/// - `{command}`: the daemon's whole shell line, quoted as one word (for `sh -c {command}`
///   inside the template);
/// - `{url}`, `{token}`: the dispatcher address and join token, each quoted as one word;
/// - `{launch_id}`: the daemon's launch id.
///
/// ```
/// use mirai::launch::{Join, Program, Template};
/// let t = Template::new("docker run --rm --network host my/worker sh -c {command}")
///     .program(Program::new("/app/worker"));
/// let line = t.command_line(&Join::new("tcp://10.0.0.1:5555", "t"), 2)?;
/// assert!(line.starts_with("docker run --rm --network host my/worker sh -c 'exec env "));
/// # Ok::<(), mirai::launch::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Template {
    template: String,
    program: Option<Program>,
}

impl Template {
    /// A template line (see the type's documentation for its placeholders).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Template};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let t = Template::new("qsub -N d{launch_id} -- {url}").program(Program::new("w"));
    /// assert_eq!(t.command_line(&join, 5)?, "qsub -N d5 -- tcp://10.0.0.1:5555");
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn new(template: impl Into<String>) -> Self {
        Self {
            template: template.into(),
            program: None,
        }
    }

    /// The daemon program where the template runs it (default: this executable's path).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Template};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let t = Template::new("sh -c {command}").program(Program::new("/app/w"));
    /// assert!(t.command_line(&join, 0)?.ends_with(" /app/w'"));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn program(mut self, program: Program) -> Self {
        self.program = Some(program);
        self
    }

    /// The line for daemon `launch_id`, placeholders filled.
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Template};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let t = Template::new("echo {token}").program(Program::new("w"));
    /// assert_eq!(t.command_line(&Join::new("tcp://h:1", "a b"), 0)?, "echo 'a b'");
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn command_line(&self, join: &Join, launch_id: u64) -> Result<String, Error> {
        let program = match &self.program {
            Some(p) => p.clone(),
            None => Program::current()?,
        };
        let daemon = daemon_line(join, &join.url, LaunchId::Fixed(launch_id), &program)?;
        let values = [
            ("{command}", quote(&daemon)?),
            ("{url}", quote(&join.url)?),
            ("{token}", quote(&join.token)?),
            ("{launch_id}", launch_id.to_string()),
        ];
        // One pass from left to right, so filled-in text is never scanned for placeholders.
        let mut out = String::with_capacity(self.template.len() + daemon.len());
        let mut rest = self.template.as_str();
        'scan: while !rest.is_empty() {
            for (name, value) in &values {
                if let Some(after) = rest.strip_prefix(name) {
                    out.push_str(value);
                    rest = after;
                    continue 'scan;
                }
            }
            let c = rest.chars().next().unwrap_or_default();
            out.push(c);
            rest = &rest[c.len_utf8()..];
        }
        Ok(out)
    }

    /// The `sh -c LINE` command that starts daemon `launch_id` (stdin and stdout closed).
    pub(crate) fn command(&self, join: &Join, launch_id: u64) -> Result<Command, Error> {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(self.command_line(join, launch_id)?)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        Ok(c)
    }

    /// Runs the line for each launch id in `ids` with `sh -c` (stdin and stdout closed),
    /// without waiting ([`Pool::launch_with`](crate::Pool::launch_with) waits for the joins).
    ///
    /// ```
    /// use mirai::launch::{Join, Program, Template};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t");
    /// let launched = Template::new("exit 0").program(Program::new("w")).launch(&join, 0..3)?;
    /// assert_eq!(launched.len(), 3);
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn launch(&self, join: &Join, ids: Range<u64>) -> Result<Vec<Launched>, Error> {
        ids.map(|id| Launched::spawn(self.command(join, id)?, "sh", id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_quoted_and_once() {
        let t = Template::new("run {launch_id} {url} {token} -- sh -c {command} {unknown}")
            .program(Program::new("w"));
        let join = Join::new("tcp://h:1", "{url} $x");
        let line = t.command_line(&join, 9).unwrap();
        assert!(
            line.starts_with("run 9 tcp://h:1 '{url} $x' -- sh -c 'exec env "),
            "{line}"
        );
        assert!(line.ends_with(" {unknown}"), "{line}");
    }
}
