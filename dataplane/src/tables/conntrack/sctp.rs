//! SCTP association states, stepped on the type of each packet's first chunk and its
//! direction: the kernel's nf_conntrack_proto_sctp, simplified (`o` original, `r` reply).
//!
//! | state         | enters on                          | leaves on                                 |
//! |---------------|------------------------------------|-------------------------------------------|
//! | COOKIE_WAIT   | first packet an INIT               | r INIT_ACK, o COOKIE_ECHO -> COOKIE_ECHOED |
//! | COOKIE_ECHOED | the handshake's second half        | r COOKIE_ACK (or any other r chunk) -> SCTP_ESTABLISHED |
//! | SCTP_ESTABLISHED | the association is up           | SHUTDOWN, SHUTDOWN_ACK -> SHUTDOWN         |
//! | SHUTDOWN      | either side shuts down             | SHUTDOWN_COMPLETE -> CLOSED               |
//! | CLOSED        | ABORT or SHUTDOWN_COMPLETE (any state) | o INIT -> RESTART                     |
//!
//! - A new flow starts only with an INIT (the conntrack stage drops other first packets as
//!   `ct_invalid`, as it does TCP without SYN). In COOKIE_WAIT anything but o INIT, r INIT_ACK,
//!   o COOKIE_ECHO and ABORT is INVALID: nothing passes a half-open association.
//! - Timeouts are the kernel's defaults (`Timeouts`): 3 s for the handshake and shutdown states,
//!   210 s established (heartbeats keep it alive), 10 s closed.
//! - Only the first chunk is looked at (the kernel walks every chunk): INIT, INIT_ACK and
//!   SHUTDOWN_COMPLETE travel alone, COOKIE_ECHO leads a bundle; an ABORT bundled behind DATA
//!   lets the flow expire instead of closing it.

use crate::flow::Dir;
use crate::wire::sctp::chunk;

use super::state::{FlowState, Step};

pub(super) fn step(state: FlowState, dir: Dir, first_chunk: u8) -> Step {
    use FlowState as S;
    use Step::{Enter, Ignore, Invalid, Restart};
    let original = dir == Dir::Original;
    match (state, first_chunk) {
        (S::SctpClosed, chunk::INIT) if original => Restart,
        (S::SctpClosed, _) => Ignore,
        (_, chunk::ABORT | chunk::SHUTDOWN_COMPLETE) => Enter(S::SctpClosed),
        (S::SctpCookieWait, chunk::INIT) if original => Enter(state),
        (S::SctpCookieWait, chunk::INIT_ACK) if !original => Enter(S::SctpCookieEchoed),
        (S::SctpCookieWait, chunk::COOKIE_ECHO) if original => Enter(S::SctpCookieEchoed),
        (S::SctpCookieWait, _) => Invalid,
        (S::SctpCookieEchoed, chunk::INIT_ACK | chunk::COOKIE_ECHO) => Enter(state),
        (S::SctpCookieEchoed, _) if !original => Enter(S::SctpEstablished),
        (S::SctpCookieEchoed, _) => Enter(state),
        (S::SctpEstablished | S::SctpShutdown, chunk::SHUTDOWN | chunk::SHUTDOWN_ACK) => {
            Enter(S::SctpShutdown)
        }
        // An INIT on a live association (a restart, RFC 9260 §5.2.2) is left to the endpoints.
        (_, chunk::INIT) => Ignore,
        _ => Enter(state),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Dir::{Original as O, Reply as R};

    fn walk(steps: &[(Dir, u8)]) -> FlowState {
        let mut s = FlowState::SctpCookieWait;
        for &(dir, c) in steps {
            match step(s, dir, c) {
                Step::Enter(next) => s = next,
                other => panic!("{s:?} {dir:?} chunk {c}: {other:?}"),
            }
        }
        s
    }

    #[test]
    fn the_four_way_handshake_establishes_and_shutdown_closes() {
        let up = [
            (R, chunk::INIT_ACK),
            (O, chunk::COOKIE_ECHO),
            (R, chunk::COOKIE_ACK),
        ];
        assert_eq!(walk(&up), FlowState::SctpEstablished);
        let mut all = up.to_vec();
        all.extend([
            (O, chunk::DATA),
            (O, chunk::SHUTDOWN),
            (R, chunk::SHUTDOWN_ACK),
            (O, chunk::SHUTDOWN_COMPLETE),
        ]);
        assert_eq!(walk(&all), FlowState::SctpClosed);
    }

    #[test]
    fn nothing_but_the_handshake_passes_a_half_open_association() {
        let s = FlowState::SctpCookieWait;
        assert_eq!(step(s, O, chunk::DATA), Step::Invalid);
        assert_eq!(step(s, R, chunk::COOKIE_ACK), Step::Invalid);
        assert_eq!(step(s, R, chunk::ABORT), Step::Enter(FlowState::SctpClosed));
    }

    #[test]
    fn an_init_after_close_restarts_and_is_ignored_while_up() {
        assert_eq!(step(FlowState::SctpClosed, O, chunk::INIT), Step::Restart);
        assert_eq!(step(FlowState::SctpClosed, O, chunk::DATA), Step::Ignore);
        assert_eq!(
            step(FlowState::SctpEstablished, O, chunk::INIT),
            Step::Ignore
        );
    }
}
