//! The surveyor's state: the current survey id and the deadline after which responses to it
//! are no longer accepted.

use std::time::{Duration, Instant};

use super::HeaderError;

/// The surveyor side of SURVEY: one survey at a time, answered until its deadline.
///
/// ```
/// use std::time::{Duration, Instant};
/// use nano_transport::proto::SurveyorState;
/// let t0 = Instant::now();
/// let mut s = SurveyorState::new(1);
/// let id = s.start(t0, Duration::from_secs(1));
/// let answer = [id.to_be_bytes().as_slice(), b"yes"].concat();
/// assert_eq!(s.accepts(&answer, t0), Ok(true));
/// assert_eq!(s.accepts(&answer, t0 + Duration::from_secs(2)), Ok(false));
/// ```
#[derive(Debug)]
pub struct SurveyorState {
    next: u32,
    current: Option<(u32, Instant)>,
}

impl SurveyorState {
    /// A surveyor whose ids start from `seed` (pass a random value).
    pub fn new(seed: u32) -> Self {
        Self {
            next: seed,
            current: None,
        }
    }

    /// Starts a new survey (abandoning the previous one); returns its id.
    pub fn start(&mut self, now: Instant, window: Duration) -> u32 {
        let id = 0x8000_0000 | (self.next & 0x7FFF_FFFF);
        self.next = self.next.wrapping_add(1);
        let deadline = now
            .checked_add(window)
            .unwrap_or(now + Duration::from_secs(86_400 * 365));
        self.current = Some((id, deadline));
        id
    }

    /// The deadline of the current survey, if one is open.
    pub fn deadline(&self) -> Option<Instant> {
        self.current.map(|(_, d)| d)
    }

    /// Whether a survey has been started (even if its window has passed).
    pub fn has_survey(&self) -> bool {
        self.current.is_some()
    }

    /// Whether a response body (`id | payload`) answers the current survey before its deadline;
    /// an error for a body too short to hold an id (close the pipe).
    pub fn accepts(&self, body: &[u8], now: Instant) -> Result<bool, HeaderError> {
        let word: [u8; 4] = body
            .get(..4)
            .ok_or(HeaderError::Malformed)?
            .try_into()
            .expect("4");
        let id = u32::from_be_bytes(word);
        Ok(self
            .current
            .is_some_and(|(cur, deadline)| cur == id && now < deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_survey_is_answered_until_the_deadline() {
        let t0 = Instant::now();
        let mut s = SurveyorState::new(0x7FFF_FFFF);
        assert!(!s.has_survey());
        let first = s.start(t0, Duration::from_millis(100));
        let second = s.start(t0, Duration::from_millis(100));
        assert_ne!(first, second);
        assert!(first & second & 0x8000_0000 != 0);
        let ans = |id: u32| id.to_be_bytes().to_vec();
        assert_eq!(s.accepts(&ans(first), t0), Ok(false));
        assert_eq!(
            s.accepts(&ans(second), t0 + Duration::from_millis(99)),
            Ok(true)
        );
        assert_eq!(
            s.accepts(&ans(second), t0 + Duration::from_millis(100)),
            Ok(false)
        );
        assert_eq!(s.accepts(&[0x80], t0), Err(HeaderError::Malformed));
        assert_eq!(s.deadline(), Some(t0 + Duration::from_millis(100)));
    }
}
