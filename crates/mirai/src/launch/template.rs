//! Daemons through any command: a template line with placeholders, for schedulers and
//! container runners this crate does not know (`docker run`, `kubectl exec`, `qsub`, ...).

use std::ops::Range;
use std::process::{Command, Stdio};

use super::{Error, Join, LaunchId, Launched, Program, daemon_line, quote};

/// The placeholder of earlier versions that put the join token on the command line.
const TOKEN_PLACEHOLDER: &str = "{token}";

/// A shell line with placeholders, run through `sh -c` once per daemon.
///
/// - `{command}`: the daemon's whole shell line, quoted as one word (for `sh -c {command}`
///   inside the template);
/// - `{url}`: the dispatcher address, quoted as one word;
/// - `{launch_id}`: the daemon's launch id.
///
/// The daemon's credential is the first line of the template's stdin, which `{command}` reads:
/// the template must hand its stdin on to the daemon (`docker run -i`, `kubectl exec -i`,
/// `ssh`, `sh -c` do). The `{token}` placeholder of earlier versions is refused
/// ([`Error::TokenPlaceholder`](super::Error::TokenPlaceholder)): it put the token on a
/// command line, readable by every local user in the process list.
///
/// ```
/// use mirai::launch::{Join, Program, Template};
/// let t = Template::new("docker run -i --rm --network host my/worker sh -c {command}")
///     .program(Program::new("/app/worker"));
/// let line = t.command_line(&Join::new("tcp://10.0.0.1:5555", "t0ken-t0ken-t0ken"), 2)?;
/// assert!(line.starts_with("docker run -i --rm --network host my/worker sh -c 'exec env "));
/// assert!(!line.contains("t0ken"));
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
    /// use mirai::launch::{Error, Join, Program, Template};
    /// let join = Join::new("tcp://10.0.0.1:5555", "t0ken-t0ken-t0ken");
    /// let t = Template::new("echo {url} {launch_id}").program(Program::new("w"));
    /// assert_eq!(t.command_line(&join, 4)?, "echo tcp://10.0.0.1:5555 4");
    /// let old = Template::new("echo {token}").program(Program::new("w"));
    /// assert!(matches!(old.command_line(&join, 0), Err(Error::TokenPlaceholder)));
    /// # Ok::<(), mirai::launch::Error>(())
    /// ```
    pub fn command_line(&self, join: &Join, launch_id: u64) -> Result<String, Error> {
        if self.template.contains(TOKEN_PLACEHOLDER) {
            return Err(Error::TokenPlaceholder);
        }
        let program = match &self.program {
            Some(p) => p.clone(),
            None => Program::current()?,
        };
        let daemon = daemon_line(join, &join.url, LaunchId::Fixed(launch_id), &program)?;
        let values = [
            ("{command}", quote(&daemon)?),
            ("{url}", quote(&join.url)?),
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

    /// The `sh -c LINE` command that starts daemon `launch_id` (stdin piped for the
    /// credential, stdout closed).
    pub(crate) fn command(&self, join: &Join, launch_id: u64) -> Result<Command, Error> {
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg(self.command_line(join, launch_id)?)
            .stdin(Stdio::piped())
            .stdout(Stdio::null());
        Ok(c)
    }

    /// Runs the line for each launch id in `ids` with `sh -c` (the credential on its stdin,
    /// stdout closed),
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
        ids.map(|id| Launched::spawn(self.command(join, id)?, "sh", join, id))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_filled_quoted_and_once() {
        let t = Template::new("run {launch_id} {url} -- sh -c {command} {unknown}")
            .program(Program::new("w"));
        let join = Join::new("tcp://h:1 {launch_id}", "0123456789abcdef-token");
        let line = t.command_line(&join, 9).unwrap();
        assert!(
            line.starts_with("run 9 'tcp://h:1 {launch_id}' -- sh -c 'exec env "),
            "{line}"
        );
        assert!(line.ends_with(" {unknown}"), "{line}");
        assert!(!line.contains("token"), "{line}");
    }

    #[test]
    fn the_token_placeholder_is_refused() {
        let join = Join::new("tcp://h:1", "0123456789abcdef-token");
        for t in ["echo {token}", "x{token}y {command}"] {
            let t = Template::new(t).program(Program::new("w"));
            assert!(matches!(
                t.command_line(&join, 1),
                Err(Error::TokenPlaceholder)
            ));
            assert!(matches!(
                t.launch(&join, 1..2),
                Err(Error::TokenPlaceholder)
            ));
        }
    }
}
