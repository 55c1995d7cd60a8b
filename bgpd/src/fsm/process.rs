//! The FSM's transitions: one function per state family, each returning outputs.

use super::*;

fn fsm_error(subcode: u8) -> Notification {
    Notification {
        code: code::FSM,
        subcode,
        data: Vec::new(),
    }
}

fn cease(subcode: u8) -> Notification {
    Notification {
        code: code::CEASE,
        subcode,
        data: Vec::new(),
    }
}

impl Fsm {
    /// Feeds one event; returns what the driver must do, in order.
    pub fn process(&mut self, input: Input) -> Vec<Output> {
        let mut out = Vec::new();
        let before = self.state;
        self.step(input, &mut out);
        if self.state != before {
            out.push(Output::StateChanged {
                from: before,
                to: self.state,
            });
        }
        out
    }

    fn step(&mut self, input: Input, out: &mut Vec<Output>) {
        // Events on a connection that is neither current nor pending are stale.
        if let Some(c) = conn_of(&input)
            && Some(c) != self.conn
            && Some(c) != self.pending
            && !matches!(input, Input::TcpConnected(_) | Input::TcpAccepted(_))
        {
            return;
        }
        if let Some(c) = conn_of(&input)
            && Some(c) == self.pending
        {
            self.pending_event(input, out);
            return;
        }
        match input {
            Input::Start => {
                if self.admin_down {
                    self.admin_down = false;
                    self.retry = self.cfg.connect_retry;
                    if self.state == State::Idle {
                        self.begin(out);
                    }
                }
            }
            Input::Stop(n) => {
                self.admin_down = true;
                if let Some(c) = self.conn
                    && matches!(
                        self.state,
                        State::OpenSent | State::OpenConfirm | State::Established
                    )
                {
                    out.push(Output::Send(c, Message::Notification(n)));
                }
                if self.state == State::Connect {
                    out.push(Output::AbortConnect);
                }
                self.teardown(DownReason::Stopped, out);
            }
            Input::ConnectRetryTimerExpires => match self.state {
                State::Idle if !self.admin_down => self.begin(out),
                State::Connect => {
                    out.push(Output::AbortConnect);
                    out.push(Output::Connect);
                    self.start_retry(out);
                }
                State::Active if !self.cfg.passive => {
                    self.state = State::Connect;
                    out.push(Output::Connect);
                    self.start_retry(out);
                }
                _ => {}
            },
            Input::TcpConnected(c) | Input::TcpAccepted(c) => {
                let incoming = matches!(input, Input::TcpAccepted(_));
                self.connection_up(c, incoming, out);
            }
            Input::ConnectFailed => {
                if self.state == State::Connect {
                    // The attempt failed; wait for the retry timer in Active.
                    self.state = State::Active;
                }
            }
            Input::TcpFails(_) => self.teardown(DownReason::TcpFailed, out),
            Input::HoldTimerExpires => {
                let n = Notification {
                    code: code::HOLD_TIMER_EXPIRED,
                    subcode: 0,
                    data: Vec::new(),
                };
                if let Some(c) = self.conn {
                    out.push(Output::Send(c, Message::Notification(n)));
                }
                self.teardown_with(DownReason::HoldTimerExpired, out);
            }
            Input::KeepaliveTimerExpires => {
                if let (Some(c), State::OpenConfirm | State::Established) = (self.conn, self.state)
                {
                    out.push(Output::Send(c, Message::Keepalive));
                    if let Some(k) = self
                        .negotiated
                        .as_ref()
                        .and_then(|n| n.keepalive_interval())
                    {
                        out.push(Output::StartTimer(Timer::Keepalive, k));
                    }
                }
            }
            Input::Open(c, open) => self.open_received(c, &open, out),
            Input::MessageError(_, n) => self.send_and_close(n, out),
            Input::Notification(_, n) => {
                self.teardown(DownReason::NotificationReceived(n), out);
            }
            Input::Keepalive(c) => match self.state {
                State::OpenConfirm => {
                    self.state = State::Established;
                    self.retry = self.cfg.connect_retry;
                    self.restart_hold(out);
                    if let Some(n) = &self.negotiated {
                        out.push(Output::Established(c, Box::new(n.clone())));
                    }
                }
                State::Established => self.restart_hold(out),
                _ => self.send_and_close(fsm_error(self.fsm_subcode()), out),
            },
            Input::Update(_) => match self.state {
                State::Established => self.restart_hold(out),
                _ => self.send_and_close(fsm_error(self.fsm_subcode()), out),
            },
        }
    }

    /// RFC 6608 subcodes for an unexpected message: 1 OpenSent, 2 OpenConfirm, 3 Established.
    fn fsm_subcode(&self) -> u8 {
        match self.state {
            State::OpenSent => 1,
            State::OpenConfirm => 2,
            State::Established => 3,
            _ => 0,
        }
    }

    /// Leaves Idle: connect, or wait for the peer when passive.
    fn begin(&mut self, out: &mut Vec<Output>) {
        if self.cfg.passive {
            self.state = State::Active;
        } else {
            self.state = State::Connect;
            out.push(Output::Connect);
            self.start_retry(out);
        }
    }

    fn start_retry(&mut self, out: &mut Vec<Output>) {
        out.push(Output::StartTimer(Timer::ConnectRetry, self.retry));
    }

    fn connection_up(&mut self, c: ConnId, incoming: bool, out: &mut Vec<Output>) {
        if self.admin_down {
            out.push(Output::Close(c));
            return;
        }
        match self.state {
            State::Idle | State::Connect | State::Active => {
                if self.state == State::Connect && incoming {
                    out.push(Output::AbortConnect);
                }
                out.push(Output::StopTimer(Timer::ConnectRetry));
                self.adopt(c, incoming, out);
            }
            State::OpenSent | State::OpenConfirm => {
                // Collision candidate (RFC 4271 §6.8): answer its OPEN, decide on receipt.
                if let Some(old) = self.pending.replace(c) {
                    out.push(Output::Close(old));
                }
                out.push(Output::Send(c, Message::Open(self.our_open())));
            }
            State::Established => {
                let restarting_peer = self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.graceful_restart.is_some());
                if incoming && restarting_peer {
                    // RFC 4724 §4: a restarted peer connects again while we still hold the
                    // old session. A connection alone proves nothing (anyone can open one
                    // from the peer's address): it stays a candidate, the session stays up,
                    // and only a valid OPEN from the same speaker replaces it.
                    if let Some(old) = self.pending.replace(c) {
                        out.push(Output::Close(old));
                    }
                    out.push(Output::Send(c, Message::Open(self.our_open())));
                } else {
                    // RFC 4271 §6.8: a collision with an Established session closes the
                    // new connection.
                    out.push(Output::Send(
                        c,
                        Message::Notification(cease(cease::COLLISION)),
                    ));
                    out.push(Output::Close(c));
                }
            }
        }
    }

    fn our_open(&self) -> Open {
        build_open(&self.cfg.local, self.cfg.local.restarting)
    }

    fn adopt(&mut self, c: ConnId, incoming: bool, out: &mut Vec<Output>) {
        self.conn = Some(c);
        self.conn_incoming = incoming;
        self.negotiated = None;
        out.push(Output::Send(c, Message::Open(self.our_open())));
        out.push(Output::StartTimer(Timer::Hold, OPEN_HOLD));
        self.state = State::OpenSent;
    }

    fn open_received(&mut self, c: ConnId, open: &Open, out: &mut Vec<Output>) {
        if self.state != State::OpenSent {
            self.send_and_close(fsm_error(self.fsm_subcode()), out);
            return;
        }
        match negotiate(&self.cfg.local, open) {
            Err(n) => self.send_and_close(n, out),
            Ok(neg) => {
                self.negotiated = Some(neg);
                out.push(Output::Send(c, Message::Keepalive));
                self.start_negotiated_timers(out);
                self.state = State::OpenConfirm;
            }
        }
    }

    fn start_negotiated_timers(&self, out: &mut Vec<Output>) {
        let Some(n) = &self.negotiated else { return };
        match (n.hold_duration(), n.keepalive_interval()) {
            (Some(h), Some(k)) => {
                out.push(Output::StartTimer(Timer::Hold, h));
                out.push(Output::StartTimer(Timer::Keepalive, k));
            }
            _ => {
                out.push(Output::StopTimer(Timer::Hold));
                out.push(Output::StopTimer(Timer::Keepalive));
            }
        }
    }

    fn restart_hold(&self, out: &mut Vec<Output>) {
        if let Some(h) = self.negotiated.as_ref().and_then(|n| n.hold_duration()) {
            out.push(Output::StartTimer(Timer::Hold, h));
        }
    }

    /// Events on the collision candidate connection.
    fn pending_event(&mut self, input: Input, out: &mut Vec<Output>) {
        let Some(p) = self.pending else { return };
        match input {
            Input::Open(_, open) if self.state == State::Established => {
                self.pending_open_while_established(p, &open, out);
            }
            Input::Open(_, open) => {
                let remote_id = u32::from(open.router_id);
                let local_id = u32::from(self.cfg.local.router_id);
                // RFC 4271 §6.8: the side with the higher identifier keeps the connection
                // it initiated.
                let keep_incoming = local_id < remote_id;
                let existing_is_ours = !self.conn_incoming;
                let drop_existing = if existing_is_ours {
                    keep_incoming
                } else {
                    true
                };
                if !drop_existing {
                    self.pending = None;
                    out.push(Output::Send(
                        p,
                        Message::Notification(cease(cease::COLLISION)),
                    ));
                    out.push(Output::Close(p));
                    return;
                }
                if let Some(old) = self.conn.take() {
                    out.push(Output::Send(
                        old,
                        Message::Notification(cease(cease::COLLISION)),
                    ));
                    out.push(Output::Close(old));
                }
                self.pending = None;
                self.conn = Some(p);
                self.conn_incoming = true;
                self.negotiated = None;
                // Our OPEN already went out on `p`: continue from OpenSent with its OPEN.
                self.state = State::OpenSent;
                self.open_received(p, &open, out);
            }
            Input::MessageError(_, n) => {
                self.pending = None;
                out.push(Output::Send(p, Message::Notification(n)));
                out.push(Output::Close(p));
            }
            _ => {
                self.pending = None;
                out.push(Output::Close(p));
            }
        }
    }

    /// A candidate connection's OPEN while Established (RFC 4724 §4.2): a valid OPEN from
    /// the same BGP speaker means it restarted, so the old session ends (its routes kept
    /// stale) and the new connection carries on; anything else closes the candidate only.
    fn pending_open_while_established(&mut self, p: ConnId, open: &Open, out: &mut Vec<Output>) {
        let same_speaker = self
            .negotiated
            .as_ref()
            .is_some_and(|n| n.peer_id == open.router_id);
        match negotiate(&self.cfg.local, open) {
            Err(n) => {
                self.pending = None;
                out.push(Output::Send(p, Message::Notification(n)));
                out.push(Output::Close(p));
            }
            Ok(_) if !same_speaker => {
                self.pending = None;
                out.push(Output::Send(
                    p,
                    Message::Notification(cease(cease::COLLISION)),
                ));
                out.push(Output::Close(p));
            }
            Ok(_) => {
                // Keep the candidate out of the teardown, then continue on it from
                // OpenSent (our OPEN already went out on it).
                self.pending = None;
                self.teardown(DownReason::PeerRestarted, out);
                out.push(Output::StopTimer(Timer::ConnectRetry));
                self.conn = Some(p);
                self.conn_incoming = true;
                self.state = State::OpenSent;
                self.open_received(p, open, out);
            }
        }
    }

    /// Sends a NOTIFICATION on the current connection and ends the session.
    fn send_and_close(&mut self, n: Notification, out: &mut Vec<Output>) {
        if let Some(c) = self.conn {
            out.push(Output::Send(c, Message::Notification(n.clone())));
        }
        self.teardown_with(DownReason::NotificationSent(n), out);
    }

    fn teardown_with(&mut self, reason: DownReason, out: &mut Vec<Output>) {
        if self.conn.is_some() || self.state != State::Idle {
            self.teardown(reason, out);
        }
    }

    /// Closes everything and returns to Idle; restarts later unless stopped.
    fn teardown(&mut self, reason: DownReason, out: &mut Vec<Output>) {
        let was_established = self.state == State::Established;
        if let Some(c) = self.conn.take() {
            out.push(Output::Close(c));
        }
        if let Some(p) = self.pending.take() {
            out.push(Output::Close(p));
        }
        out.push(Output::StopTimer(Timer::Hold));
        out.push(Output::StopTimer(Timer::Keepalive));
        out.push(Output::StopTimer(Timer::ConnectRetry));
        self.negotiated = None;
        self.state = State::Idle;
        out.push(Output::Down {
            reason,
            was_established,
        });
        if !self.admin_down {
            out.push(Output::StartTimer(Timer::ConnectRetry, self.retry));
            self.retry = (self.retry * 2).min(self.cfg.max_retry);
        }
    }
}

fn conn_of(input: &Input) -> Option<ConnId> {
    match input {
        Input::TcpConnected(c)
        | Input::TcpAccepted(c)
        | Input::TcpFails(c)
        | Input::Open(c, _)
        | Input::MessageError(c, _)
        | Input::Notification(c, _)
        | Input::Keepalive(c)
        | Input::Update(c) => Some(*c),
        _ => None,
    }
}
