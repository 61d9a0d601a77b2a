//! RFC 3261 section 17 transaction state machines, as a proxy runs them: a client
//! transaction per vendor branch, a server transaction per customer request. Pure: they take
//! `now` and events, and say what to do and when they next need the clock. The proxy core
//! owns the messages; these own only the timing and the state.
//!
//! RFC 6026 is applied: an INVITE server transaction that forwards a 2xx enters `Accepted`
//! (Timer L) so that 2xx retransmissions from the vendor are forwarded too, instead of the
//! transaction vanishing on the first 2xx.

use std::time::{Duration, Instant};

use smallvec::SmallVec;

/// Protocol timers (RFC 3261 table 4), configurable so tests can run them fast.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timers {
    pub t1: Duration,
    pub t2: Duration,
    pub t4: Duration,
    /// Timers B, F, H, J and L: 64 * T1 by default; configurable on its own, as Kamailio's
    /// `fr_timer` is.
    pub timer_b: Duration,
    /// Timer C: how long an INVITE branch may stay in Proceeding (more than 3 minutes).
    pub timer_c: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            timer_b: Duration::from_secs(32),
            timer_c: Duration::from_secs(181),
        }
    }
}

impl Timers {
    /// Timers B, F, H, J and L.
    pub fn transaction_timeout(&self) -> Duration {
        self.timer_b
    }
}

/// What a transaction asks its owner to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send the request (client) or the last response (server) again.
    Retransmit,
    /// Give this response to the proxy core (client side: a response from the vendor).
    PassUp(u16),
    /// Send the ACK for a non-2xx final response (client INVITE, hop by hop).
    SendAck,
    /// No final response in time: Timer B or F (act as if a 408 arrived).
    Timeout,
    /// Timer C: the INVITE branch rang too long; the proxy cancels it (RFC 3261 16.8).
    CancelBranch,
    /// The transaction is over and can be removed.
    Terminated,
}

pub type Actions = SmallVec<[Action; 2]>;

fn at(now: Instant, after: Duration) -> Instant {
    now + after
}

// === client transactions ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientState {
    /// INVITE: Calling; non-INVITE: Trying.
    Trying,
    Proceeding,
    Completed,
    Terminated,
}

/// A client transaction: one branch toward a vendor.
#[derive(Clone, Debug)]
pub struct ClientTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ClientState,
    /// Timer A (INVITE) or E (non-INVITE): the next retransmission and its interval.
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timer B or F.
    timeout_at: Option<Instant>,
    /// Timer C (INVITE, once a provisional arrived).
    timer_c_at: Option<Instant>,
    /// Timer D or K: how long Completed absorbs retransmitted finals.
    completed_until: Option<Instant>,
}

impl ClientTransaction {
    /// Starts a transaction whose request was just sent.
    pub fn start(now: Instant, invite: bool, reliable: bool, timers: Timers) -> Self {
        ClientTransaction {
            invite,
            reliable,
            timers,
            state: ClientState::Trying,
            retransmit_at: (!reliable).then(|| at(now, timers.t1)),
            interval: timers.t1,
            timeout_at: Some(at(now, timers.transaction_timeout())),
            timer_c_at: None,
            completed_until: None,
        }
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    /// The next instant `on_timer` must be called at, if any.
    pub fn next_deadline(&self) -> Option<Instant> {
        [
            self.retransmit_at,
            self.timeout_at,
            self.timer_c_at,
            self.completed_until,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// A response to this branch arrived.
    pub fn on_response(&mut self, now: Instant, code: u16) -> Actions {
        let mut out = Actions::new();
        match (self.state, code) {
            (ClientState::Terminated, _) => {}
            (ClientState::Trying | ClientState::Proceeding, 100..=199) => {
                self.state = ClientState::Proceeding;
                if self.invite {
                    // Provisional: stop retransmitting; Timer C replaces Timer B.
                    self.retransmit_at = None;
                    self.timeout_at = None;
                    self.timer_c_at = Some(at(now, self.timers.timer_c));
                } else if let Some(next) = self.retransmit_at.as_mut() {
                    // Non-INVITE keeps retransmitting, at T2 (17.1.2.2).
                    self.interval = self.timers.t2;
                    *next = at(now, self.interval);
                }
                out.push(Action::PassUp(code));
            }
            (ClientState::Trying | ClientState::Proceeding, 200..=299) if self.invite => {
                // The 2xx goes up; its retransmissions are forwarded by the core statelessly.
                self.terminate();
                out.push(Action::PassUp(code));
                out.push(Action::Terminated);
            }
            (ClientState::Trying | ClientState::Proceeding, _) => {
                self.state = ClientState::Completed;
                self.retransmit_at = None;
                self.timeout_at = None;
                self.timer_c_at = None;
                let linger = match (self.reliable, self.invite) {
                    (true, _) => Duration::ZERO,
                    // Timer D: 32 s with default timers, scaled with T1 when tests shorten it.
                    (false, true) => self.timers.transaction_timeout(),
                    (false, false) => self.timers.t4,
                };
                self.completed_until = Some(at(now, linger));
                if self.invite {
                    out.push(Action::SendAck);
                }
                out.push(Action::PassUp(code));
            }
            (ClientState::Completed, 300..=699) if self.invite => {
                // A retransmitted final: ACK it again, do not pass it up twice.
                out.push(Action::SendAck);
            }
            (ClientState::Completed, _) => {}
        }
        out
    }

    /// Fires whatever timers are due at `now`.
    pub fn on_timer(&mut self, now: Instant) -> Actions {
        let mut out = Actions::new();
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.timeout_at) {
            self.terminate();
            out.push(Action::Timeout);
            out.push(Action::Terminated);
            return out;
        }
        if due(self.timer_c_at) {
            self.timer_c_at = None;
            out.push(Action::CancelBranch);
        }
        if due(self.completed_until) {
            self.terminate();
            out.push(Action::Terminated);
            return out;
        }
        if due(self.retransmit_at) {
            self.interval = if self.invite {
                self.interval * 2
            } else {
                (self.interval * 2).min(self.timers.t2)
            };
            if self.state == ClientState::Proceeding && !self.invite {
                self.interval = self.timers.t2;
            }
            self.retransmit_at = Some(at(now, self.interval));
            out.push(Action::Retransmit);
        }
        out
    }

    /// The transport gave up on the request (a TCP connect failed): the branch ends as a
    /// timeout would end it, with nothing left to retransmit.
    pub fn abandon(&mut self) {
        self.terminate();
    }

    fn terminate(&mut self) {
        self.state = ClientState::Terminated;
        self.retransmit_at = None;
        self.timeout_at = None;
        self.timer_c_at = None;
        self.completed_until = None;
    }
}

// === server transactions ===

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ServerState {
    /// A request is being worked on; provisional responses may have been sent.
    Proceeding,
    /// A non-2xx final was sent (INVITE: waiting for the ACK; non-INVITE: absorbing).
    Completed,
    /// INVITE: the ACK for a non-2xx final arrived (Timer I absorbs ACK retransmissions).
    Confirmed,
    /// INVITE: a 2xx was forwarded (RFC 6026 Timer L): its retransmissions are forwarded.
    Accepted,
    Terminated,
}

/// A server transaction: the customer's request at the edge.
#[derive(Clone, Debug)]
pub struct ServerTransaction {
    invite: bool,
    reliable: bool,
    timers: Timers,
    state: ServerState,
    /// Timer G: retransmit the non-2xx final of an INVITE until its ACK.
    retransmit_at: Option<Instant>,
    interval: Duration,
    /// Timers H, I, J, L.
    until: Option<Instant>,
}

impl ServerTransaction {
    pub fn start(invite: bool, reliable: bool, timers: Timers) -> Self {
        ServerTransaction {
            invite,
            reliable,
            timers,
            state: ServerState::Proceeding,
            retransmit_at: None,
            interval: timers.t1,
            until: None,
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        [self.retransmit_at, self.until].into_iter().flatten().min()
    }

    /// The request arrived again: the last response (if any) goes out again.
    pub fn on_retransmission(&self) -> Actions {
        let mut out = Actions::new();
        if matches!(self.state, ServerState::Proceeding | ServerState::Completed) {
            out.push(Action::Retransmit);
        }
        out
    }

    /// The proxy sends a final response on this transaction.
    pub fn on_final_sent(&mut self, now: Instant, code: u16) {
        if !matches!(self.state, ServerState::Proceeding) {
            return;
        }
        let timeout = self.timers.transaction_timeout();
        match (self.invite, code) {
            (true, 200..=299) => {
                self.state = ServerState::Accepted;
                self.until = Some(at(now, timeout));
            }
            (true, _) => {
                self.state = ServerState::Completed;
                self.retransmit_at = (!self.reliable).then(|| at(now, self.timers.t1));
                self.until = Some(at(now, timeout));
            }
            (false, _) => {
                self.state = ServerState::Completed;
                self.until = Some(at(
                    now,
                    if self.reliable {
                        Duration::ZERO
                    } else {
                        timeout
                    },
                ));
            }
        }
    }

    /// An ACK matched this INVITE transaction (for its non-2xx final).
    pub fn on_ack(&mut self, now: Instant) {
        if self.state == ServerState::Completed && self.invite {
            self.state = ServerState::Confirmed;
            self.retransmit_at = None;
            self.until = Some(at(
                now,
                if self.reliable {
                    Duration::ZERO
                } else {
                    self.timers.t4
                },
            ));
        }
    }

    pub fn on_timer(&mut self, now: Instant) -> Actions {
        let mut out = Actions::new();
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        if due(self.until) {
            self.state = ServerState::Terminated;
            self.retransmit_at = None;
            self.until = None;
            out.push(Action::Terminated);
            return out;
        }
        if due(self.retransmit_at) {
            self.interval = (self.interval * 2).min(self.timers.t2);
            self.retransmit_at = Some(at(now, self.interval));
            out.push(Action::Retransmit);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Drives `on_timer` at every deadline up to `until`, collecting (offset ms, action).
    fn run_client(tx: &mut ClientTransaction, t0: Instant, until: Duration) -> Vec<(u128, Action)> {
        let mut seen = Vec::new();
        while let Some(deadline) = tx.next_deadline() {
            if deadline > t0 + until {
                break;
            }
            for a in tx.on_timer(deadline) {
                seen.push(((deadline - t0).as_millis(), a));
            }
        }
        seen
    }

    #[test]
    fn invite_over_udp_retransmits_with_doubling_then_times_out_at_timer_b() {
        let t0 = Instant::now();
        let mut tx = ClientTransaction::start(t0, true, false, Timers::default());
        let seen = run_client(&mut tx, t0, Duration::from_secs(40));
        let retransmits: Vec<u128> = seen
            .iter()
            .filter(|(_, a)| *a == Action::Retransmit)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(retransmits, vec![500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(seen.last(), Some(&(32000, Action::Terminated)));
        assert!(seen.contains(&(32000, Action::Timeout)));
    }

    #[test]
    fn invite_over_tcp_never_retransmits() {
        let t0 = Instant::now();
        let mut tx = ClientTransaction::start(t0, true, true, Timers::default());
        let seen = run_client(&mut tx, t0, Duration::from_secs(40));
        assert_eq!(
            seen,
            vec![(32000, Action::Timeout), (32000, Action::Terminated)]
        );
    }

    #[test]
    fn provisional_stops_retransmission_and_arms_timer_c() {
        let t0 = Instant::now();
        let timers = Timers {
            timer_c: Duration::from_secs(181),
            ..Timers::default()
        };
        let mut tx = ClientTransaction::start(t0, true, false, timers);
        assert_eq!(
            tx.on_response(t0 + ms(100), 180).as_slice(),
            &[Action::PassUp(180)]
        );
        assert_eq!(
            tx.next_deadline(),
            Some(t0 + ms(100) + Duration::from_secs(181))
        );
        assert_eq!(
            tx.on_timer(t0 + ms(100) + Duration::from_secs(181))
                .as_slice(),
            &[Action::CancelBranch]
        );
        // The CANCEL's 487 then completes the branch.
        let now = t0 + Duration::from_secs(182);
        assert_eq!(
            tx.on_response(now, 487).as_slice(),
            &[Action::SendAck, Action::PassUp(487)]
        );
        assert_eq!(
            tx.on_response(now, 487).as_slice(),
            &[Action::SendAck],
            "retransmitted final: ACK only"
        );
        assert_eq!(tx.state(), ClientState::Completed);
    }

    #[test]
    fn invite_2xx_terminates_and_goes_up() {
        let t0 = Instant::now();
        let mut tx = ClientTransaction::start(t0, true, false, Timers::default());
        assert_eq!(
            tx.on_response(t0, 200).as_slice(),
            &[Action::PassUp(200), Action::Terminated]
        );
        assert_eq!(tx.next_deadline(), None);
    }

    #[test]
    fn non_invite_retransmits_capped_at_t2_and_keeps_going_in_proceeding() {
        let t0 = Instant::now();
        let mut tx = ClientTransaction::start(t0, false, false, Timers::default());
        let seen = run_client(&mut tx, t0, ms(12_000));
        let retransmits: Vec<u128> = seen
            .iter()
            .filter(|(_, a)| *a == Action::Retransmit)
            .map(|(t, _)| *t)
            .collect();
        assert_eq!(retransmits, vec![500, 1500, 3500, 7500, 11500]);
        let mut tx = ClientTransaction::start(t0, false, false, Timers::default());
        tx.on_response(t0 + ms(10), 100);
        assert_eq!(
            tx.next_deadline(),
            Some(t0 + ms(10) + Duration::from_secs(4))
        );
        let now = t0 + ms(20);
        assert_eq!(tx.on_response(now, 200).as_slice(), &[Action::PassUp(200)]);
        assert_eq!(
            tx.on_timer(now + Duration::from_secs(5)).as_slice(),
            &[Action::Terminated],
            "Timer K"
        );
    }

    #[test]
    fn invite_server_retransmits_final_until_ack_then_absorbs() {
        let t0 = Instant::now();
        let mut st = ServerTransaction::start(true, false, Timers::default());
        assert_eq!(
            st.on_retransmission().as_slice(),
            &[Action::Retransmit],
            "resend the 100"
        );
        st.on_final_sent(t0, 486);
        assert_eq!(st.next_deadline(), Some(t0 + ms(500)));
        assert_eq!(st.on_timer(t0 + ms(500)).as_slice(), &[Action::Retransmit]);
        assert_eq!(st.next_deadline(), Some(t0 + ms(1500)));
        st.on_ack(t0 + ms(600));
        assert_eq!(st.state(), ServerState::Confirmed);
        assert!(
            st.on_retransmission().is_empty(),
            "ACK retransmissions absorbed"
        );
        assert_eq!(
            st.on_timer(t0 + ms(5600)).as_slice(),
            &[Action::Terminated],
            "Timer I"
        );
    }

    #[test]
    fn invite_server_accepted_state_lasts_timer_l() {
        let t0 = Instant::now();
        let mut st = ServerTransaction::start(true, false, Timers::default());
        st.on_final_sent(t0, 200);
        assert_eq!(st.state(), ServerState::Accepted);
        assert_eq!(st.next_deadline(), Some(t0 + Duration::from_secs(32)));
        assert_eq!(
            st.on_timer(t0 + Duration::from_secs(32)).as_slice(),
            &[Action::Terminated]
        );
    }

    #[test]
    fn invite_server_gives_up_at_timer_h_without_ack() {
        let t0 = Instant::now();
        let mut st = ServerTransaction::start(true, false, Timers::default());
        st.on_final_sent(t0, 503);
        let mut retransmits = 0;
        while let Some(d) = st.next_deadline() {
            for a in st.on_timer(d) {
                if a == Action::Retransmit {
                    retransmits += 1;
                }
            }
        }
        assert_eq!(st.state(), ServerState::Terminated);
        // G: 0.5, 1.5, 3.5, 7.5, then every 4 s until H at 32 s.
        assert_eq!(retransmits, 10);
    }
}
