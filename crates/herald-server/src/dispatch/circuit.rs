//! Circuit breakers, one per webhook URL, shared by every subscription that
//! delivers there.
//!
//! Without them a dead target is retried as hard as each delivery's own
//! backoff allows: thousands of owed deliveries meant thousands of connection
//! attempts a second, each recorded as an attempt, using up retries while the
//! target could not have answered anyway. After [`FAILURES_TO_OPEN`] failures
//! in a row (no answer, a 5xx or a 429) a circuit opens: nothing is sent to
//! that URL for a cool-down (1 s, doubling after each failed probe up to
//! [`MAX_COOLDOWN`]; longer if the target's `Retry-After` asks for it). Then
//! one delivery goes through as a probe; its success closes the circuit.
//! Deliveries held back meanwhile stay owed and count no attempt.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::webhook::Answer;

/// Failures in a row that open a circuit.
pub const FAILURES_TO_OPEN: u32 = 5;
/// The first cool-down; each failed probe doubles it.
const FIRST_COOLDOWN: Duration = Duration::from_secs(1);
/// The longest cool-down, whatever the failures or `Retry-After` say.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(60);
/// How soon to look again while another delivery is the probe.
const PROBE_RECHECK: Duration = Duration::from_secs(1);
/// A record whose last failure is older than this is forgotten: its URL is
/// no longer sent to (subscription deleted, paused, moved), or the failure
/// was a lone one long ago.
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// A URL's failure record. URLs without one are closed: a success removes
/// the record, so the map holds only targets that are failing.
#[derive(Debug)]
struct Circuit {
    failures: u32,
    last_failure: Instant,
    /// Set while open: nothing is sent before this.
    open_until: Option<Instant>,
    /// The next cool-down if the circuit opens (again).
    cooldown: Duration,
    /// A probe is in flight: other deliveries wait for its answer.
    probing: bool,
}

impl Circuit {
    fn new(now: Instant) -> Self {
        Self { failures: 0, last_failure: now, open_until: None, cooldown: FIRST_COOLDOWN, probing: false }
    }

    /// Forgotten (as if closed): nothing failed for [`FORGET_AFTER`]. A URL
    /// still in use fails at least once per cool-down while open.
    fn stale(&self, now: Instant) -> bool {
        !self.probing && now.saturating_duration_since(self.last_failure) > FORGET_AFTER
    }

    fn state(&self, now: Instant) -> CircuitState {
        match self.open_until {
            _ if self.stale(now) => CircuitState::Closed,
            None => CircuitState::Closed,
            Some(until) if now < until => CircuitState::Open { until },
            Some(_) => CircuitState::HalfOpen,
        }
    }
}

/// What a circuit looks like from outside, for the subscription's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitState {
    Closed,
    /// Nothing is sent before this.
    Open {
        until: Instant,
    },
    /// The cool-down is over: one delivery tests whether the target is back.
    HalfOpen,
}

/// Whether a delivery may be sent now.
pub enum Admission {
    Send(Ticket),
    /// Not before this instant.
    Wait(Instant),
}

#[derive(Default)]
pub struct Breakers {
    circuits: Mutex<HashMap<String, Circuit>>,
}

impl Breakers {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Asks to send one delivery to `url`. The ticket must be given the answer
    /// ([`Ticket::record`]); dropped without one (the send was abandoned), it
    /// frees the probe slot it may hold.
    pub fn admit(self: &Arc<Self>, url: &str, now: Instant) -> Admission {
        let probe = match self.circuits.lock() {
            Ok(mut circuits) => match circuits.get_mut(url) {
                None => false,
                Some(circuit) => match circuit.state(now) {
                    CircuitState::Closed => false,
                    CircuitState::Open { until } => return Admission::Wait(until),
                    CircuitState::HalfOpen if circuit.probing => return Admission::Wait(now + PROBE_RECHECK),
                    CircuitState::HalfOpen => {
                        circuit.probing = true;
                        true
                    }
                },
            },
            // A poisoned lock: send rather than hold every delivery back.
            Err(_) => false,
        };
        Admission::Send(Ticket { breakers: self.clone(), url: url.to_owned(), probe })
    }

    pub fn state(&self, url: &str, now: Instant) -> CircuitState {
        let circuits = self.circuits.lock().ok();
        circuits.and_then(|c| c.get(url).map(|c| c.state(now))).unwrap_or(CircuitState::Closed)
    }

    fn record(&self, url: &str, probe: bool, answer: &Answer, now: Instant) {
        let Ok(mut circuits) = self.circuits.lock() else { return };
        if !target_failed(answer) {
            circuits.remove(url);
            return;
        }
        circuits.retain(|_, c| !c.stale(now));
        let circuit = circuits.entry(url.to_owned()).or_insert_with(|| Circuit::new(now));
        circuit.failures += 1;
        circuit.last_failure = now;
        if probe {
            circuit.probing = false;
        }
        let asked = answer.retry_after.map(|wait| wait.min(MAX_COOLDOWN));
        // A failed probe reopens at once; otherwise the circuit opens after
        // enough failures in a row, or when the target asks for a pause.
        let open = probe || (circuit.failures >= FAILURES_TO_OPEN && circuit.open_until.is_none()) || asked.is_some();
        if open {
            let cooldown = circuit.cooldown.max(asked.unwrap_or_default());
            let until = now + cooldown;
            circuit.open_until = Some(circuit.open_until.map_or(until, |u| u.max(until)));
            if circuit.failures >= FAILURES_TO_OPEN {
                circuit.cooldown = (circuit.cooldown * 2).min(MAX_COOLDOWN);
            }
            tracing::warn!(url, failures = circuit.failures, ?cooldown, "webhook target failing: circuit open");
        }
    }

    fn abandon(&self, url: &str) {
        if let Ok(mut circuits) = self.circuits.lock()
            && let Some(circuit) = circuits.get_mut(url)
        {
            circuit.probing = false;
        }
    }

    /// Circuits open or half-open now, for the metrics.
    pub fn open_count(&self, now: Instant) -> usize {
        let circuits = self.circuits.lock();
        circuits.map_or(0, |c| c.values().filter(|c| c.state(now) != CircuitState::Closed).count())
    }
}

/// No answer, a server error, or "too many requests": the target is not
/// taking deliveries. Any other status means it is up (a 4xx is the
/// delivery's problem, not the target's).
fn target_failed(answer: &Answer) -> bool {
    answer.status.is_none_or(|s| s >= 500 || s == 429)
}

/// Permission to send one delivery; give it the answer.
pub struct Ticket {
    breakers: Arc<Breakers>,
    url: String,
    probe: bool,
}

impl Ticket {
    /// The URL this ticket lets one delivery go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn record(mut self, answer: &Answer, now: Instant) {
        self.breakers.record(&self.url, self.probe, answer, now);
        self.probe = false;
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        if self.probe {
            self.breakers.abandon(&self.url);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://example.com/hook";

    fn answer(status: Option<u16>, retry_after: Option<Duration>) -> Answer {
        Answer { status, error: None, response: None, latency: Duration::ZERO, retry_after }
    }

    fn send(breakers: &Arc<Breakers>, now: Instant) -> Ticket {
        match breakers.admit(URL, now) {
            Admission::Send(ticket) => ticket,
            Admission::Wait(until) => panic!("refused until {until:?}"),
        }
    }

    /// Fails enough deliveries in a row to open the circuit.
    fn trip(breakers: &Arc<Breakers>, now: Instant) {
        for _ in 0..FAILURES_TO_OPEN {
            send(breakers, now).record(&answer(None, None), now);
        }
    }

    fn waits_until(breakers: &Arc<Breakers>, now: Instant) -> Instant {
        match breakers.admit(URL, now) {
            Admission::Send(_) => panic!("admitted while it should wait"),
            Admission::Wait(until) => until,
        }
    }

    #[test]
    fn opens_after_failures_in_a_row_and_a_probe_closes_it() {
        let breakers = Breakers::new();
        let t0 = Instant::now();
        for _ in 0..FAILURES_TO_OPEN - 1 {
            send(&breakers, t0).record(&answer(None, None), t0);
        }
        assert_eq!(breakers.state(URL, t0), CircuitState::Closed);
        send(&breakers, t0).record(&answer(Some(502), None), t0);
        assert_eq!(breakers.state(URL, t0), CircuitState::Open { until: t0 + FIRST_COOLDOWN });
        assert_eq!(waits_until(&breakers, t0), t0 + FIRST_COOLDOWN);

        let later = t0 + FIRST_COOLDOWN;
        let probe = send(&breakers, later);
        assert_eq!(waits_until(&breakers, later), later + PROBE_RECHECK, "one probe at a time");
        assert_eq!(breakers.state(URL, later), CircuitState::HalfOpen);
        probe.record(&answer(Some(204), None), later);
        assert_eq!(breakers.state(URL, later), CircuitState::Closed);
        assert_eq!(breakers.open_count(later), 0);
        drop(send(&breakers, later));
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_the_limit() {
        let breakers = Breakers::new();
        let mut now = Instant::now();
        trip(&breakers, now);
        let mut cooldowns = Vec::new();
        for _ in 0..8 {
            let until = waits_until(&breakers, now);
            cooldowns.push((until - now).as_secs());
            now = until;
            send(&breakers, now).record(&answer(None, None), now);
        }
        assert_eq!(cooldowns, [1, 2, 4, 8, 16, 32, 60, 60]);
    }

    #[test]
    fn a_success_or_a_client_error_resets_the_count() {
        let breakers = Breakers::new();
        let now = Instant::now();
        for status in [Some(500), Some(500), Some(500), Some(500), Some(404), Some(500), Some(500)] {
            send(&breakers, now).record(&answer(status, None), now);
        }
        assert_eq!(breakers.state(URL, now), CircuitState::Closed, "a 404 means the target is up");
    }

    #[test]
    fn retry_after_opens_at_once_for_as_long_as_asked() {
        let breakers = Breakers::new();
        let now = Instant::now();
        send(&breakers, now).record(&answer(Some(429), Some(Duration::from_secs(7))), now);
        assert_eq!(waits_until(&breakers, now), now + Duration::from_secs(7));
        let breakers = Breakers::new();
        send(&breakers, now).record(&answer(Some(503), Some(Duration::from_secs(3600))), now);
        assert_eq!(waits_until(&breakers, now), now + MAX_COOLDOWN, "capped");
    }

    #[test]
    fn an_abandoned_probe_lets_the_next_delivery_probe() {
        let breakers = Breakers::new();
        let now = Instant::now();
        trip(&breakers, now);
        let later = now + FIRST_COOLDOWN;
        drop(send(&breakers, later));
        assert_eq!(breakers.state(URL, later), CircuitState::HalfOpen);
        send(&breakers, later).record(&answer(Some(200), None), later);
        assert_eq!(breakers.state(URL, later), CircuitState::Closed);
    }

    #[test]
    fn a_circuit_nobody_sends_to_any_more_is_forgotten() {
        let breakers = Breakers::new();
        let now = Instant::now();
        trip(&breakers, now);
        assert_eq!(breakers.open_count(now), 1);
        let much_later = now + FORGET_AFTER + Duration::from_secs(1);
        assert_eq!(breakers.open_count(much_later), 0);
        assert_eq!(breakers.state(URL, much_later), CircuitState::Closed);
        send(&breakers, much_later).record(&answer(None, None), much_later);
        assert_eq!(breakers.state(URL, much_later), CircuitState::Closed, "counting starts over");
    }

    #[test]
    fn other_urls_are_not_affected() {
        let breakers = Breakers::new();
        let now = Instant::now();
        trip(&breakers, now);
        assert!(matches!(breakers.admit("https://example.com/other", now), Admission::Send(_)));
    }
}
