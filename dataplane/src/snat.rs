//! SNAT port choice that an observer cannot predict (kube-proxy's `--random-fully`).
//!
//! A masqueraded flow's port is drawn uniformly from the node's range by a per-worker ChaCha8
//! stream seeded from the OS CSPRNG (`getrandom`) when the worker's pipeline is built: seeing
//! any number of ports tells nothing about the next one, or about another worker's, or about
//! the next process's (a pod's DNS source-port randomisation survives masquerade).
//!
//! Invariants: drawing a port costs no syscall, lock or allocation (ChaCha8 refills a small
//! block buffer in place); a port is always inside the inclusive range it is asked for.

use rand::rngs::{ChaCha8Rng, SysError, SysRng};
use rand::{Rng, SeedableRng};

pub struct SnatPortRng(ChaCha8Rng);

impl SnatPortRng {
    /// A generator keyed by the OS CSPRNG.
    pub fn from_os() -> Result<Self, SysError> {
        ChaCha8Rng::try_from_rng(&mut SysRng).map(Self)
    }

    /// A generator with a fixed key (tests, deterministic tools).
    pub fn from_seed(seed: [u8; 32]) -> Self {
        Self(ChaCha8Rng::from_seed(seed))
    }

    /// A port in `lo..=hi` (`hi < lo` is read as `lo..=lo`). Multiply-shift on 32 random bits:
    /// the bias is below span / 2^32 (at most 1.5e-5), far under what an observer could use.
    #[inline]
    pub fn port(&mut self, (lo, hi): (u16, u16)) -> u16 {
        let span = u64::from(hi.saturating_sub(lo)) + 1;
        let offset = (u64::from(self.0.next_u32()) * span) >> 32;
        lo.saturating_add(offset as u16)
    }
}

impl std::fmt::Debug for SnatPortRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SnatPortRng(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_stay_in_range_and_cover_it() {
        let mut rng = SnatPortRng::from_seed([7; 32]);
        let mut seen = [false; 8];
        for _ in 0..1000 {
            let p = rng.port((65528, 65535));
            assert!((65528..=65535).contains(&p), "{p}");
            seen[usize::from(p - 65528)] = true;
        }
        assert!(
            seen.iter().all(|s| *s),
            "every port of a small range is drawn"
        );
        assert_eq!(rng.port((5000, 5000)), 5000);
        assert_eq!(rng.port((5000, 4000)), 5000);
    }

    #[test]
    fn two_generators_from_the_os_differ() {
        let mut a = SnatPortRng::from_os().expect("getrandom");
        let mut b = SnatPortRng::from_os().expect("getrandom");
        let xs: Vec<u16> = (0..16).map(|_| a.port((1024, 65535))).collect();
        let ys: Vec<u16> = (0..16).map(|_| b.port((1024, 65535))).collect();
        assert_ne!(xs, ys, "independent keys give independent streams");
    }
}
