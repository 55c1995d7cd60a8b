//! One BFD session's state machine (RFC 5880 §6.2, §6.8), sans-IO: packets and the current
//! time go in, packets to send and state changes come out. It never touches a socket, a
//! channel or the clock; the driver (`super::driver`) asks `next_deadline` and calls
//! `on_timer` then.
//!
//! Asynchronous mode only (no demand mode, no echo). Timers follow §6.8.3: until the
//! session is Up the advertised transmit interval is at least one second ("slow start");
//! changes of the local intervals go out in a Poll Sequence and an increase of the
//! transmit interval (or a decrease of the receive interval, which shortens the detection
//! time) only takes effect once the peer's Final arrives.

use std::time::{Duration, Instant};

use super::packet::{ControlPacket, Diag, State};

/// The advertised transmit interval while the session is not Up (§6.8.3), microseconds.
pub const SLOW_TX_US: u32 = 1_000_000;

/// The local timer settings of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// bfd.DesiredMinTxInterval once Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_mult: u8,
    /// Passive role (§6.1): send nothing until the peer has spoken.
    pub passive: bool,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            desired_min_tx: Duration::from_millis(300),
            required_min_rx: Duration::from_millis(300),
            detect_mult: 3,
            passive: false,
        }
    }
}

fn micros(d: Duration) -> u32 {
    u32::try_from(d.as_micros()).unwrap_or(u32::MAX).max(1)
}

/// What the driver must do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    Send(ControlPacket),
    StateChanged { from: State, to: State, diag: Diag },
}

/// Why a packet that decoded fine was still discarded (§6.8.6, session-level checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Discard {
    #[error("your discriminator {got} is not ours ({ours})")]
    WrongDiscriminator { got: u32, ours: u32 },
}

/// A session's observable facts, for status and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionStatus {
    pub state: State,
    pub remote_state: State,
    pub diag: Diag,
    pub local_discr: u32,
    pub remote_discr: u32,
    /// The interval packets are sent at (before jitter): max(ours, the peer's min rx).
    pub tx_interval: Duration,
    /// How long without a packet before the session goes Down (0 = not armed).
    pub detect_time: Duration,
}

/// One BFD session.
#[derive(Debug)]
pub struct Session {
    cfg: SessionConfig,
    local_discr: u32,
    remote_discr: u32,
    state: State,
    remote_state: State,
    diag: Diag,
    remote_min_rx_us: u32,
    remote_min_tx_us: u32,
    remote_mult: u8,
    /// Advertised bfd.DesiredMinTxInterval.
    adv_tx_us: u32,
    /// Advertised bfd.RequiredMinRxInterval.
    adv_rx_us: u32,
    /// The transmit interval actually used (lags `adv_tx_us` while a Poll is pending).
    eff_tx_us: u32,
    /// The receive interval the detection time uses (lags `adv_rx_us` likewise).
    eff_rx_us: u32,
    poll: bool,
    last_rx: Option<Instant>,
    next_tx: Option<Instant>,
    rng: u32,
}

impl Session {
    /// A session in Down with this local discriminator (non-zero, unique per system).
    pub fn new(cfg: SessionConfig, local_discr: u32) -> Self {
        let rx = micros(cfg.required_min_rx);
        let tx = micros(cfg.desired_min_tx).max(SLOW_TX_US);
        Self {
            cfg,
            local_discr,
            remote_discr: 0,
            state: State::Down,
            remote_state: State::Down,
            diag: Diag::None,
            remote_min_rx_us: 1,
            remote_min_tx_us: 0,
            remote_mult: 0,
            adv_tx_us: tx,
            adv_rx_us: rx,
            eff_tx_us: tx,
            eff_rx_us: rx,
            poll: false,
            last_rx: None,
            next_tx: None,
            rng: local_discr | 1,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// Whether a Poll Sequence is in progress.
    pub fn polling(&self) -> bool {
        self.poll
    }

    pub fn status(&self) -> SessionStatus {
        SessionStatus {
            state: self.state,
            remote_state: self.remote_state,
            diag: self.diag,
            local_discr: self.local_discr,
            remote_discr: self.remote_discr,
            tx_interval: Duration::from_micros(u64::from(self.tx_interval_us())),
            detect_time: if self.last_rx.is_some() {
                self.detect_time()
            } else {
                Duration::ZERO
            },
        }
    }

    /// Starts transmitting (unless passive): the first packet goes out at `now`.
    pub fn start(&mut self, now: Instant) {
        if self.may_send() {
            self.next_tx = Some(now);
        }
    }

    /// The earliest time `on_timer` has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let detect = self.last_rx.map(|t| t + self.detect_time());
        match (self.next_tx, detect) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Runs the detection and transmit timers that are due.
    pub fn on_timer(&mut self, now: Instant) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(t) = self.last_rx
            && t + self.detect_time() <= now
        {
            // §6.8.4: detection time passed without a valid packet.
            self.last_rx = None;
            self.remote_discr = 0;
            self.remote_state = State::Down;
            if matches!(self.state, State::Init | State::Up) {
                self.change(State::Down, Diag::ControlDetectionTimeExpired, &mut out);
                self.send_now(now, &mut out);
            }
            if self.cfg.passive {
                self.next_tx = None;
            }
        }
        if self.next_tx.is_some_and(|t| t <= now) {
            if self.may_send() {
                out.push(Output::Send(self.packet(self.poll, false)));
                self.schedule(now);
            } else {
                self.next_tx = None;
            }
        }
        out
    }

    /// Processes a decoded packet addressed to this session (§6.8.6).
    pub fn on_packet(&mut self, p: &ControlPacket, now: Instant) -> Result<Vec<Output>, Discard> {
        if p.your_discr != 0 && p.your_discr != self.local_discr {
            return Err(Discard::WrongDiscriminator {
                got: p.your_discr,
                ours: self.local_discr,
            });
        }
        let mut out = Vec::new();
        self.remote_discr = p.my_discr;
        self.remote_state = p.state;
        self.remote_min_tx_us = p.desired_min_tx;
        self.remote_mult = p.detect_mult;
        let old_min_rx = self.remote_min_rx_us;
        self.remote_min_rx_us = p.required_min_rx;
        if p.final_ && self.poll {
            self.end_poll();
        }
        self.last_rx = Some(now);
        if self.state == State::AdminDown {
            return Ok(out);
        }
        let before = self.state;
        match (self.state, p.state) {
            (State::Init | State::Up, State::AdminDown) => {
                self.change(State::Down, Diag::NeighborSignaledSessionDown, &mut out);
            }
            (_, State::AdminDown) => {}
            (State::Down, State::Down) => self.change(State::Init, Diag::None, &mut out),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                self.change(State::Up, Diag::None, &mut out);
            }
            (State::Up, State::Down) => {
                self.change(State::Down, Diag::NeighborSignaledSessionDown, &mut out);
            }
            _ => {}
        }
        if p.poll {
            // §6.8.7: the Final goes out at once, whatever the transmit timer says.
            out.push(Output::Send(self.packet(false, true)));
        } else if self.state != before && self.may_send() {
            self.send_now(now, &mut out);
        }
        if (old_min_rx == 0) != (p.required_min_rx == 0) {
            self.next_tx = None;
        }
        self.reschedule_if_late(now);
        Ok(out)
    }

    /// New local settings, live. While Up they are announced with a Poll Sequence.
    pub fn set_config(&mut self, cfg: SessionConfig, now: Instant) -> Vec<Output> {
        self.cfg = cfg;
        let mut out = Vec::new();
        self.retime(now, &mut out);
        self.reschedule_if_late(now);
        out
    }

    /// The packet to send once when the session is removed (§6.8.16 AdminDown).
    pub fn admin_down(&mut self) -> ControlPacket {
        self.state = State::AdminDown;
        self.diag = Diag::AdministrativelyDown;
        self.packet(false, false)
    }

    fn may_send(&self) -> bool {
        // §6.8.7: not before the peer has spoken when passive, never to a peer that asks
        // for no packets (Required Min RX 0).
        !(self.cfg.passive && self.remote_discr == 0) && self.remote_min_rx_us != 0
    }

    fn detect_time(&self) -> Duration {
        let per = self.eff_rx_us.max(self.remote_min_tx_us);
        Duration::from_micros(u64::from(self.remote_mult.max(1)) * u64::from(per))
    }

    fn tx_interval_us(&self) -> u32 {
        self.eff_tx_us.max(self.remote_min_rx_us)
    }

    fn schedule(&mut self, now: Instant) {
        // §6.8.7: 75-100% of the interval, at most 90% with a detect multiplier of 1.
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 17;
        self.rng ^= self.rng << 5;
        let span = if self.cfg.detect_mult == 1 { 15 } else { 25 };
        let pct = 75 + u64::from(self.rng % span);
        let us = u64::from(self.tx_interval_us()) * pct / 100;
        self.next_tx = Some(now + Duration::from_micros(us));
    }

    /// Makes the next transmission no later than one (new, possibly shorter) interval from
    /// now: a packet scheduled at the slow-start pace must not outlive the peer's
    /// detection time once the session is Up.
    fn reschedule_if_late(&mut self, now: Instant) {
        if !self.may_send() {
            self.next_tx = None;
            return;
        }
        let limit = now + Duration::from_micros(u64::from(self.tx_interval_us()));
        if self.next_tx.is_none_or(|t| t > limit) {
            self.schedule(now);
        }
    }

    fn send_now(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.may_send() {
            out.push(Output::Send(self.packet(self.poll, false)));
            self.schedule(now);
        }
    }

    fn packet(&self, poll: bool, final_: bool) -> ControlPacket {
        ControlPacket {
            diag: self.diag,
            state: self.state,
            poll,
            final_,
            cpi: false,
            demand: false,
            detect_mult: self.cfg.detect_mult,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx: self.adv_tx_us,
            required_min_rx: self.adv_rx_us,
            required_min_echo_rx: 0,
        }
    }

    fn change(&mut self, to: State, diag: Diag, out: &mut Vec<Output>) {
        let from = self.state;
        self.state = to;
        self.diag = diag;
        out.push(Output::StateChanged { from, to, diag });
        // Going Up ends slow start; leaving Up restarts it.
        self.retime_values();
    }

    /// Recomputes the advertised intervals; returns whether they changed.
    fn retime_values(&mut self) -> bool {
        let want_tx = if self.state == State::Up {
            micros(self.cfg.desired_min_tx)
        } else {
            micros(self.cfg.desired_min_tx).max(SLOW_TX_US)
        };
        let want_rx = micros(self.cfg.required_min_rx);
        if want_tx == self.adv_tx_us && want_rx == self.adv_rx_us {
            return false;
        }
        self.adv_tx_us = want_tx;
        self.adv_rx_us = want_rx;
        if self.state == State::Up && self.remote_discr != 0 {
            // §6.8.3: a slower transmit rate and a shorter detection time wait for the
            // Final; the safe directions apply at once.
            if want_tx < self.eff_tx_us {
                self.eff_tx_us = want_tx;
            }
            if want_rx > self.eff_rx_us {
                self.eff_rx_us = want_rx;
            }
            self.poll = true;
        } else {
            self.eff_tx_us = want_tx;
            self.eff_rx_us = want_rx;
        }
        true
    }

    fn retime(&mut self, now: Instant, out: &mut Vec<Output>) {
        if self.retime_values() && self.poll {
            self.send_now(now, out);
        }
    }

    fn end_poll(&mut self) {
        self.poll = false;
        self.eff_tx_us = self.adv_tx_us;
        self.eff_rx_us = self.adv_rx_us;
    }
}
