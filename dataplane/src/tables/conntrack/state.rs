//! Flow states, their timeouts, and the per-packet state machine: netfilter's, simplified.
//!
//! TCP, by the flags of each segment and its direction (`o` original, `r` reply). RST moves any
//! state to CLOSE, once its sequence number passed the check of `seq` (RFC 5961). SYN+FIN, SYN+RST and segments with none of SYN/ACK/FIN/RST are INVALID.
//!
//! | state       | enters on                        | leaves on                                    |
//! |-------------|----------------------------------|----------------------------------------------|
//! | SYN_SENT    | first packet a SYN (no ACK)      | r SYN+ACK (or r SYN) -> SYN_RECV             |
//! | SYN_RECV    |                                  | o ACK -> ESTABLISHED, o FIN -> FIN_WAIT, r FIN -> CLOSE_WAIT |
//! | ESTABLISHED | first packet not a SYN (pickup)  | o FIN -> FIN_WAIT, r FIN -> CLOSE_WAIT       |
//! | FIN_WAIT    | the original side closed         | r FIN -> LAST_ACK                            |
//! | CLOSE_WAIT  | the reply side closed            | o FIN -> LAST_ACK                            |
//! | LAST_ACK    | both sides closed                | ACK (either side) -> TIME_WAIT               |
//! | TIME_WAIT   |                                  | o SYN -> RESTART                             |
//! | CLOSE       | RST; first packet a RST          | o SYN -> RESTART                             |
//!
//! - Packets that fit the state but change nothing (ACKs, data, retransmitted FINs) refresh it.
//! - Retransmitted SYNs are refreshed in SYN_SENT and ignored later (no refresh), as netfilter
//!   does; so are reply SYN+ACKs after the handshake. An o SYN+ACK, and in SYN_SENT anything but
//!   o SYN, r SYN(+ACK) and RST, is INVALID.
//! - RESTART: a new connection reuses the tuple of a finished one (user-needs A10); the caller
//!   removes the old entry and handles the packet as a new flow, so it may pick a live backend.
//! - Sequence numbers are checked for RSTs only (`seq`); other out-of-window segments pass
//!   (be-liberal).
//!
//! UDP: UNREPLIED (`udp` timeout) until a reply is seen, then ASSURED (`udp_stream`).
//! ICMP echo: one state with the `icmp` timeout.
//! SCTP: `sctp` (COOKIE_WAIT ... CLOSED), stepped on the first chunk's type.

use crate::flow::{Dir, L4Proto};

const FIN: u8 = 0x01;
const SYN: u8 = 0x02;
const RST: u8 = 0x04;
const ACK: u8 = 0x10;

/// Number of state codes, 0 (dead) included.
pub(super) const CODES: usize = FlowState::ALL.len() + 1;

/// The state of a tracked flow, protocol included.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FlowState {
    SynSent,
    SynRecv,
    Established,
    FinWait,
    CloseWait,
    LastAck,
    TimeWait,
    Close,
    UdpUnreplied,
    UdpAssured,
    Icmp,
    SctpCookieWait,
    SctpCookieEchoed,
    SctpEstablished,
    SctpShutdown,
    SctpClosed,
}

impl FlowState {
    /// Every state, in code order (`code() - 1` is the index).
    pub const ALL: [FlowState; 16] = [
        Self::SynSent,
        Self::SynRecv,
        Self::Established,
        Self::FinWait,
        Self::CloseWait,
        Self::LastAck,
        Self::TimeWait,
        Self::Close,
        Self::UdpUnreplied,
        Self::UdpAssured,
        Self::Icmp,
        Self::SctpCookieWait,
        Self::SctpCookieEchoed,
        Self::SctpEstablished,
        Self::SctpShutdown,
        Self::SctpClosed,
    ];

    /// The name `conntrack -L` prints (UDP shows its status flag instead of a state).
    pub fn name(self) -> &'static str {
        match self {
            Self::SynSent => "SYN_SENT",
            Self::SynRecv => "SYN_RECV",
            Self::Established => "ESTABLISHED",
            Self::FinWait => "FIN_WAIT",
            Self::CloseWait => "CLOSE_WAIT",
            Self::LastAck => "LAST_ACK",
            Self::TimeWait => "TIME_WAIT",
            Self::Close => "CLOSE",
            Self::UdpUnreplied => "UNREPLIED",
            Self::UdpAssured => "ASSURED",
            Self::Icmp => "ICMP",
            Self::SctpCookieWait => "COOKIE_WAIT",
            Self::SctpCookieEchoed => "COOKIE_ECHOED",
            Self::SctpEstablished => "SCTP_ESTABLISHED",
            Self::SctpShutdown => "SHUTDOWN",
            Self::SctpClosed => "CLOSED",
        }
    }

    /// Position in [`FlowState::ALL`] (per-state counters index by it).
    pub fn index(self) -> usize {
        self as usize
    }

    /// A flow that has not seen a packet in the reply direction yet (embryonic): what SYN and
    /// UDP floods create. These count against the per-source and per-destination limits.
    pub fn is_unreplied(self) -> bool {
        matches!(
            self,
            Self::SynSent | Self::UdpUnreplied | Self::SctpCookieWait
        )
    }

    /// A flow the table never evicts to make room while others exist: an established TCP
    /// connection or a UDP flow that saw replies (the kernel's ASSURED; like its early_drop,
    /// closing TCP states are evictable).
    pub fn is_assured(self) -> bool {
        matches!(
            self,
            Self::Established | Self::UdpAssured | Self::SctpEstablished
        )
    }

    /// The non-zero code stored in a record (0 marks a dead record).
    pub(super) fn code(self) -> u8 {
        self as u8 + 1
    }

    pub(super) fn from_code(code: u8) -> Option<Self> {
        Self::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// Idle timeouts in seconds, per state. `Default` follows kube-proxy and the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    pub tcp_syn_sent: u32,
    pub tcp_syn_recv: u32,
    pub tcp_established: u32,
    pub tcp_fin_wait: u32,
    pub tcp_close_wait: u32,
    pub tcp_last_ack: u32,
    pub tcp_time_wait: u32,
    pub tcp_close: u32,
    pub udp: u32,
    pub udp_stream: u32,
    pub icmp: u32,
    pub sctp_cookie_wait: u32,
    pub sctp_cookie_echoed: u32,
    pub sctp_established: u32,
    pub sctp_shutdown: u32,
    pub sctp_closed: u32,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            tcp_syn_sent: 120,
            tcp_syn_recv: 60,
            tcp_established: 86_400,
            tcp_fin_wait: 120,
            tcp_close_wait: 3_600,
            tcp_last_ack: 30,
            tcp_time_wait: 120,
            tcp_close: 10,
            udp: 30,
            udp_stream: 120,
            icmp: 30,
            // nf_conntrack_proto_sctp's defaults.
            sctp_cookie_wait: 3,
            sctp_cookie_echoed: 3,
            sctp_established: 210,
            sctp_shutdown: 3,
            sctp_closed: 10,
        }
    }
}

impl Timeouts {
    /// How long a flow in `state` lives without packets.
    pub fn of(&self, state: FlowState) -> u32 {
        match state {
            FlowState::SynSent => self.tcp_syn_sent,
            FlowState::SynRecv => self.tcp_syn_recv,
            FlowState::Established => self.tcp_established,
            FlowState::FinWait => self.tcp_fin_wait,
            FlowState::CloseWait => self.tcp_close_wait,
            FlowState::LastAck => self.tcp_last_ack,
            FlowState::TimeWait => self.tcp_time_wait,
            FlowState::Close => self.tcp_close,
            FlowState::UdpUnreplied => self.udp,
            FlowState::UdpAssured => self.udp_stream,
            FlowState::Icmp => self.icmp,
            FlowState::SctpCookieWait => self.sctp_cookie_wait,
            FlowState::SctpCookieEchoed => self.sctp_cookie_echoed,
            FlowState::SctpEstablished => self.sctp_established,
            FlowState::SctpShutdown => self.sctp_shutdown,
            FlowState::SctpClosed => self.sctp_closed,
        }
    }

    /// The timeouts indexed by state code, for the per-packet expiry check.
    pub(super) fn by_code(&self) -> [u32; CODES] {
        let mut table = [0; CODES];
        for state in FlowState::ALL {
            table[usize::from(state.code())] = self.of(state);
        }
        table
    }
}

/// What a packet does to its flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    /// Refresh the flow and move it to this state (possibly the same).
    Enter(FlowState),
    /// Let the packet pass, leave the flow untouched.
    Ignore,
    Invalid,
    Restart,
}

/// The state a new flow starts in, from its first packet.
pub(super) fn initial_state(proto: L4Proto, tcp_flags: u8) -> FlowState {
    match proto {
        L4Proto::Udp => FlowState::UdpUnreplied,
        L4Proto::Icmp => FlowState::Icmp,
        L4Proto::Sctp => FlowState::SctpCookieWait,
        L4Proto::Tcp if tcp_flags & RST != 0 => FlowState::Close,
        L4Proto::Tcp if tcp_flags & (SYN | ACK) == SYN => FlowState::SynSent,
        L4Proto::Tcp => FlowState::Established,
    }
}

/// Flags no valid segment carries: SYN with FIN or RST, or none of SYN, ACK, FIN, RST.
pub fn is_bogus(tcp_flags: u8) -> bool {
    segment(tcp_flags) == Segment::Bogus
}

/// The TCP segment kinds the machine distinguishes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Segment {
    Syn,
    SynAck,
    Fin,
    Ack,
    Rst,
    Bogus,
}

fn segment(flags: u8) -> Segment {
    let has = |bit: u8| flags & bit != 0;
    match (has(SYN), has(ACK), has(FIN), has(RST)) {
        (true, _, true, _) | (true, _, _, true) => Segment::Bogus,
        (false, _, _, true) => Segment::Rst,
        (true, true, false, false) => Segment::SynAck,
        (true, false, false, false) => Segment::Syn,
        (false, _, true, false) => Segment::Fin,
        (false, true, false, false) => Segment::Ack,
        (false, false, false, false) => Segment::Bogus,
    }
}

/// The effect of a packet travelling in `dir` with `tcp_flags` on a flow in `state`.
pub(super) fn step(state: FlowState, dir: Dir, tcp_flags: u8) -> Step {
    use FlowState as S;
    use Segment as G;
    use Step::{Enter, Ignore, Invalid, Restart};
    let (original, reply) = (dir == Dir::Original, dir == Dir::Reply);
    match state {
        S::UdpUnreplied | S::UdpAssured if reply => Enter(S::UdpAssured),
        S::UdpUnreplied | S::UdpAssured | S::Icmp => Enter(state),
        S::SctpCookieWait
        | S::SctpCookieEchoed
        | S::SctpEstablished
        | S::SctpShutdown
        | S::SctpClosed => super::sctp::step(state, dir, tcp_flags),
        _ => match (state, segment(tcp_flags)) {
            (_, G::Bogus) => Invalid,
            (_, G::Rst) => Enter(S::Close),
            (_, G::SynAck) if original => Invalid,
            (S::SynSent, G::Syn) if original => Enter(S::SynSent),
            (S::SynSent, G::Syn | G::SynAck) => Enter(S::SynRecv),
            (S::SynSent, _) => Invalid,
            (S::TimeWait | S::Close, G::Syn) if original => Restart,
            (_, G::Syn | G::SynAck) => Ignore,
            (S::Close, _) => Ignore,
            (S::SynRecv, G::Ack) if original => Enter(S::Established),
            (S::SynRecv, G::Ack) => Ignore,
            (S::SynRecv | S::Established, G::Fin) if original => Enter(S::FinWait),
            (S::SynRecv | S::Established, G::Fin) => Enter(S::CloseWait),
            (S::FinWait, G::Fin) if reply => Enter(S::LastAck),
            (S::CloseWait, G::Fin) if original => Enter(S::LastAck),
            (S::LastAck, G::Ack) => Enter(S::TimeWait),
            (_, G::Ack | G::Fin) => Enter(state),
        },
    }
}
