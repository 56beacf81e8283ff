//! TCP sequence checks on RSTs (RFC 5961 at the middlebox): a blind attacker who knows a flow's
//! tuple but not its sequence numbers can no longer close it.
//!
//! Each direction's record keeps a *mark*: the 256-byte granule of the end of the furthest
//! segment that direction sent (see `record`). An RST in a direction is then
//! - *exact* (same granule as the mark): it closes the flow;
//! - ahead of the mark by at most [`WINDOW`]: passed on untouched, the flow keeps its state (the
//!   endpoint decides: it answers a challenge ACK, or accepts it and a later exact RST follows);
//! - anything else: out of window, dropped.
//!
//! Invariants:
//! - A mark only moves forward, by at most [`WINDOW`] per segment, so a spoofed segment can move
//!   it only to where the attacker cannot know it is, unless its guess lands in that window (the
//!   kernel's window check has the same odds).
//! - A new TCP flow's original direction is marked by its SYN (the conntrack stage does it
//!   right after the insert); the reply direction by its first segment. With no mark yet (no
//!   reply seen, or a flow adopted from an older table) an RST is judged by state alone.

use super::record::MARK_MODULUS;

/// Bytes per granule, as a shift.
const GRANULE_SHIFT: u32 = 8;
/// How far ahead of its direction's mark a segment may move it, and an RST may lie and pass.
pub const WINDOW: u32 = 4 << 20;
const WINDOW_GRANULES: u32 = WINDOW >> GRANULE_SHIFT;

/// The mark of sequence number `seq` (never 0, which means "none").
pub(super) fn mark(seq: u32) -> u32 {
    match (seq >> GRANULE_SHIFT).wrapping_add(1) % MARK_MODULUS {
        0 => 1,
        m => m,
    }
}

fn ahead(from: u32, to: u32) -> u32 {
    to.wrapping_sub(from) % MARK_MODULUS
}

/// The mark after a segment ending at `seq_end` (its `mark`), if it moves the current one.
pub(super) fn advanced(current: u32, end: u32) -> Option<u32> {
    let d = ahead(current, end);
    (current == 0 || (d > 0 && d <= WINDOW_GRANULES)).then_some(end)
}

/// How an RST with sequence mark `rst` compares to its direction's mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum RstFit {
    /// Exact, or no mark to check against: the RST may close the flow.
    Close,
    /// In the window, not exact: pass it on, change nothing.
    Pass,
    OutOfWindow,
}

pub(super) fn rst_fit(current: u32, rst: u32) -> RstFit {
    if current == 0 || rst == current {
        return RstFit::Close;
    }
    if ahead(current, rst) <= WINDOW_GRANULES {
        RstFit::Pass
    } else {
        RstFit::OutOfWindow
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_move_forward_within_the_window_only() {
        let m = mark(1_000_000);
        assert_eq!(advanced(0, m), Some(m));
        assert_eq!(advanced(m, mark(1_000_000 + 1448)), Some(mark(1_001_448)));
        assert_eq!(advanced(m, mark(999_000)), None, "backwards");
        assert_eq!(
            advanced(m, mark(1_000_000 + WINDOW + 1024)),
            None,
            "too far"
        );
        assert_eq!(advanced(m, m), None, "same granule: no write");
    }

    #[test]
    fn rsts_are_exact_in_window_or_out() {
        let m = mark(0xffff_ff00);
        assert_eq!(rst_fit(m, mark(0xffff_ff00)), RstFit::Close);
        assert_eq!(
            rst_fit(m, mark(0xffff_ff00u32.wrapping_add(5000))),
            RstFit::Pass
        );
        assert_eq!(rst_fit(m, mark(0x100)), RstFit::Pass, "wraps");
        assert_eq!(rst_fit(m, mark(0x1000_0000)), RstFit::OutOfWindow);
        assert_eq!(rst_fit(m, mark(0xffff_0000)), RstFit::OutOfWindow, "behind");
        assert_eq!(rst_fit(0, mark(7)), RstFit::Close, "no mark");
    }
}
