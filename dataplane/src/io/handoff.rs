//! Hand-over of the flow tables between two generations of the node process: the stopping
//! process writes the table words to a file (on tmpfs by default), the starting one reads
//! them back and adopts them, so established connections keep their translation and backend
//! across a restart or an upgrade.
//!
//! Invariants:
//! - The file is written to a temporary name, synced and renamed: a reader sees a whole
//!   table or none.
//! - The file format is the table's own word layout (which carries its own magic and layout
//!   version, checked by the table on adoption) behind a file header naming what it holds.
//! - Adopting a file removes it, so a stale table is never adopted twice.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

const MAGIC: &[u8; 8] = b"FPHANDv1";

/// Writes `words` under `kind` (e.g. "conntrack") to `path`, atomically.
pub fn save(path: &Path, kind: &str, words: &[AtomicU64]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut w = BufWriter::new(File::create(&tmp)?);
        w.write_all(MAGIC)?;
        let name = kind.as_bytes();
        w.write_all(&(name.len() as u64).to_le_bytes())?;
        w.write_all(name)?;
        w.write_all(&(words.len() as u64).to_le_bytes())?;
        for word in words {
            w.write_all(&word.load(Ordering::Acquire).to_le_bytes())?;
        }
        w.flush()?;
        w.get_ref().sync_all()?;
    }
    fs::rename(&tmp, path)
}

/// Reads a table of `kind` saved by `save` and removes the file. `Ok(None)` if there is none.
pub fn take(path: &Path, kind: &str) -> io::Result<Option<Box<[AtomicU64]>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let bad = |what: &str| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("hand-off file {}: {what}", path.display()),
        )
    };
    let mut r = BufReader::new(file);
    let mut magic = [0u8; 8];
    r.read_exact(&mut magic)?;
    if &magic != MAGIC {
        return Err(bad("not a ferroplane hand-off file"));
    }
    let name_len = read_u64(&mut r)?;
    if name_len > 64 {
        return Err(bad("corrupt header"));
    }
    let mut name = vec![0u8; name_len as usize];
    r.read_exact(&mut name)?;
    if name != kind.as_bytes() {
        return Err(bad(&format!(
            "holds {:?}, not {kind:?}",
            String::from_utf8_lossy(&name)
        )));
    }
    let len = read_u64(&mut r)?;
    let expected = path.metadata()?.len().saturating_sub(8 + 8 + name_len + 8) / 8;
    if len != expected {
        return Err(bad("truncated"));
    }
    let words: Box<[AtomicU64]> = (0..len)
        .map(|_| read_u64(&mut r).map(AtomicU64::new))
        .collect::<io::Result<_>>()?;
    fs::remove_file(path)?;
    Ok(Some(words))
}

fn read_u64(r: &mut impl Read) -> io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{FlowKey, L4Proto};
    use crate::tables::conntrack::{Conntrack, ConntrackConfig, NewFlow, flags};

    #[test]
    fn a_saved_table_is_adopted_with_its_flows_and_only_once() {
        let dir = std::env::temp_dir().join(format!("fp-handoff-{}", std::process::id()));
        fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("conntrack");
        let cfg = ConntrackConfig::default();
        let ct = Conntrack::new(cfg);
        let c = std::net::Ipv4Addr::new(10, 244, 1, 5);
        let vip = std::net::Ipv4Addr::new(10, 96, 0, 1);
        let b = std::net::Ipv4Addr::new(10, 244, 2, 7);
        let flow = NewFlow {
            original: FlowKey::new(L4Proto::Tcp, c, 40000, vip, 80),
            reply: FlowKey::new(L4Proto::Tcp, b, 8080, c, 40000),
            service: 1,
            backend: 0,
            flags: flags::DNAT,
            tcp_flags: 0x02,
        };
        ct.insert(&flow, 100).expect("insert");
        save(&path, "conntrack", ct.words()).expect("save");
        assert!(take(&path, "affinity").is_err(), "the kind is checked");
        let words = take(&path, "conntrack").expect("read").expect("present");
        let adopted = Conntrack::adopt(words, cfg).expect("adopt");
        let hit = adopted.lookup(&flow.original, 101).expect("flow survived");
        assert_eq!(hit.xlate, flow.reply.reversed());
        assert!(
            take(&path, "conntrack").expect("read").is_none(),
            "taken once"
        );
        fs::remove_dir_all(&dir).expect("cleanup");
    }
}
