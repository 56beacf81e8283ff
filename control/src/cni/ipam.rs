//! Pod addresses from the node's podCIDR, kept on disk in the manner of the reference
//! `host-local` plugin: `<dataDir>/<network>/<ip>` holds `<containerID>\n<ifname>` of the
//! attachment that owns the address.
//!
//! Invariants:
//! - Every change happens under an exclusive flock on `<dataDir>/<network>/lock`, so
//!   concurrent plugins (one process per ADD/DEL) never hand out one address twice.
//! - An address file appears whole or not at all: it is written under a temporary name,
//!   synced, then hard-linked to its final name (which fails if the name exists).
//! - The network address, the gateway (first address) and the broadcast address are never
//!   handed out.
//! - An allocation survives a crash of the plugin or the node: only DEL or GC removes it.
//! - The podCIDR in use is recorded (`subnet`); a different podCIDR while addresses of the
//!   old one are held is refused, so two ranges never mix.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use super::spec::{Attachment, CniError, code};

/// An IPv4 podCIDR and the addresses in it that may be handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodRange {
    pub network: Ipv4Addr,
    pub prefix_len: u8,
}

impl PodRange {
    /// Parses `10.244.1.0/24`; host bits must be zero, and the range must hold at least one
    /// address besides network, gateway and broadcast.
    pub fn parse(text: &str) -> Result<PodRange, String> {
        let (addr, len) = text
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("podCIDR {text:?} is not ADDRESS/LENGTH"))?;
        let network: Ipv4Addr = addr
            .parse()
            .map_err(|_| format!("podCIDR {text:?}: {addr:?} is not an IPv4 address"))?;
        let prefix_len: u8 = len
            .parse()
            .ok()
            .filter(|l| *l <= 30)
            .ok_or_else(|| format!("podCIDR {text:?}: the prefix length must be 0..=30"))?;
        let range = PodRange {
            network,
            prefix_len,
        };
        if u32::from(network) & !range.mask() != 0 {
            return Err(format!("podCIDR {text:?} has host bits set"));
        }
        Ok(range)
    }

    fn mask(&self) -> u32 {
        u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0)
    }

    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    fn broadcast(&self) -> u32 {
        u32::from(self.network) | !self.mask()
    }

    /// The first and last address that may be handed out.
    fn usable(&self) -> (u32, u32) {
        (u32::from(self.network) + 2, self.broadcast() - 1)
    }

    pub fn is_usable(&self, ip: Ipv4Addr) -> bool {
        let (first, last) = self.usable();
        (first..=last).contains(&u32::from(ip))
    }

    pub fn usable_count(&self) -> u32 {
        let (first, last) = self.usable();
        last - first + 1
    }
}

impl std::fmt::Display for PodRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len)
    }
}

/// One allocation on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub ip: Ipv4Addr,
    pub container_id: String,
    pub ifname: String,
}

/// The address store of one network, locked for as long as it lives.
pub struct Store {
    dir: PathBuf,
    _lock: File,
}

const LOCK_FILE: &str = "lock";
const SUBNET_FILE: &str = "subnet";
const LAST_FILE: &str = "last_reserved_ip.0";

impl Store {
    /// Opens (creating) `<data_dir>/<network>` and takes its lock, waiting for other plugins.
    pub fn open(data_dir: &Path, network: &str) -> Result<Store, CniError> {
        if network.is_empty()
            || network.contains('/')
            || network.starts_with('.')
            || network.len() > 128
        {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!("network name {network:?} cannot name a directory"),
            ));
        }
        let dir = data_dir.join(network);
        fs::create_dir_all(&dir).map_err(|e| CniError::io(dir.display(), e))?;
        let lock_path = dir.join(LOCK_FILE);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| CniError::io(lock_path.display(), e))?;
        flock(&lock, FlockOperation::LockExclusive)
            .map_err(|e| CniError::io(format!("locking {}", lock_path.display()), e))?;
        Ok(Store { dir, _lock: lock })
    }

    /// Every allocation on disk.
    pub fn leases(&self) -> Result<Vec<Lease>, CniError> {
        let entries = fs::read_dir(&self.dir).map_err(|e| CniError::io(self.dir.display(), e))?;
        let mut leases = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| CniError::io(self.dir.display(), e))?;
            let Some(ip) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<Ipv4Addr>().ok())
            else {
                continue;
            };
            let text = match fs::read_to_string(entry.path()) {
                Ok(text) => text,
                // Removed by nobody else (we hold the lock), but tolerate it.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(CniError::io(entry.path().display(), e)),
            };
            let mut lines = text.lines();
            leases.push(Lease {
                ip,
                container_id: lines.next().unwrap_or_default().trim().to_owned(),
                ifname: lines.next().unwrap_or_default().trim().to_owned(),
            });
        }
        leases.sort_by_key(|l| l.ip);
        Ok(leases)
    }

    /// Checks the podCIDR against the one the held addresses came from, and records it.
    pub fn check_range(&self, range: PodRange) -> Result<(), CniError> {
        let path = self.dir.join(SUBNET_FILE);
        let recorded = fs::read_to_string(&path).ok();
        let current = range.to_string();
        if recorded.as_deref().map(str::trim) == Some(current.as_str()) {
            return Ok(());
        }
        let held: Vec<Lease> = self
            .leases()?
            .into_iter()
            .filter(|l| !range.is_usable(l.ip))
            .collect();
        if let (Some(old), Some(first)) = (&recorded, held.first()) {
            return Err(CniError::new(
                code::INVALID_CONFIG,
                format!(
                    "the podCIDR changed from {} to {current} while {} address(es) of the old \
                     one are held (e.g. {} by container {}); delete those pods first",
                    old.trim(),
                    held.len(),
                    first.ip,
                    first.container_id
                ),
            )
            .details(format!("address files in {}", self.dir.display())));
        }
        write_atomically(&self.dir, SUBNET_FILE, current.as_bytes(), true)
    }

    /// The address of attachment (`container_id`, `ifname`): the one it already holds (a
    /// repeated ADD), the one `requested`, or the next free one after the last handed out.
    pub fn allocate(
        &self,
        range: PodRange,
        container_id: &str,
        ifname: &str,
        requested: Option<Ipv4Addr>,
    ) -> Result<Ipv4Addr, CniError> {
        let leases = self.leases()?;
        if let Some(own) = leases
            .iter()
            .find(|l| l.container_id == container_id && l.ifname == ifname)
        {
            return Ok(own.ip);
        }
        let owner = format!("{container_id}\n{ifname}\n");
        if let Some(ip) = requested {
            if !range.is_usable(ip) {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "requested address {ip} (CNI_ARGS IP) is not a pod address of {range} \
                         (network, gateway and broadcast are reserved)"
                    ),
                ));
            }
            if let Some(other) = leases.iter().find(|l| l.ip == ip) {
                return Err(CniError::new(
                    code::INVALID_CONFIG,
                    format!(
                        "requested address {ip} (CNI_ARGS IP) is held by container {}",
                        other.container_id
                    ),
                ));
            }
            self.claim(ip, &owner)?;
            return Ok(ip);
        }
        let (first, last) = range.usable();
        let start = fs::read_to_string(self.dir.join(LAST_FILE))
            .ok()
            .and_then(|t| t.trim().parse::<Ipv4Addr>().ok())
            .map(u32::from)
            .filter(|ip| (first..=last).contains(ip))
            .map_or(first, |ip| if ip == last { first } else { ip + 1 });
        let count = last - first + 1;
        for step in 0..count {
            let ip = Ipv4Addr::from(first + (start - first + step) % count);
            if leases.iter().any(|l| l.ip == ip) {
                continue;
            }
            if self.claim(ip, &owner)? {
                write_atomically(&self.dir, LAST_FILE, ip.to_string().as_bytes(), true)?;
                return Ok(ip);
            }
        }
        Err(CniError::new(
            code::TRY_AGAIN_LATER,
            format!("no free pod address: all {count} addresses of podCIDR {range} are allocated"),
        )
        .details(format!("address files in {}", self.dir.display())))
    }

    /// Writes the address file of `ip`; false when it exists already.
    fn claim(&self, ip: Ipv4Addr, owner: &str) -> Result<bool, CniError> {
        match write_atomically(&self.dir, &ip.to_string(), owner.as_bytes(), false) {
            Ok(()) => Ok(true),
            Err(_) if self.dir.join(ip.to_string()).exists() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Frees what attachment (`container_id`, `ifname`) holds; returns the addresses freed.
    pub fn release(&self, container_id: &str, ifname: &str) -> Result<Vec<Ipv4Addr>, CniError> {
        let mut freed = Vec::new();
        for lease in self.leases()? {
            if lease.container_id == container_id && lease.ifname == ifname {
                self.remove(lease.ip)?;
                freed.push(lease.ip);
            }
        }
        Ok(freed)
    }

    /// Frees every address whose attachment is not in `valid` (GC).
    pub fn collect_garbage(&self, valid: &[Attachment]) -> Result<Vec<Lease>, CniError> {
        let mut freed = Vec::new();
        for lease in self.leases()? {
            let live = valid
                .iter()
                .any(|a| a.container_id == lease.container_id && a.ifname == lease.ifname);
            if !live {
                self.remove(lease.ip)?;
                freed.push(lease);
            }
        }
        Ok(freed)
    }

    fn remove(&self, ip: Ipv4Addr) -> Result<(), CniError> {
        let path = self.dir.join(ip.to_string());
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(CniError::io(path.display(), e)),
        }
    }
}

/// Writes `dir/name` whole: a synced temporary file, then a hard link (`replace` false: fails
/// if the name exists) or a rename (`replace` true).
fn write_atomically(dir: &Path, name: &str, data: &[u8], replace: bool) -> Result<(), CniError> {
    let temp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let target = dir.join(name);
    let result = (|| {
        let mut file = File::create(&temp)?;
        file.write_all(data)?;
        file.sync_all()?;
        if replace {
            fs::rename(&temp, &target)
        } else {
            let linked = fs::hard_link(&temp, &target);
            let _ = fs::remove_file(&temp);
            linked
        }
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.map_err(|e| CniError::io(target.display(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(text: &str) -> PodRange {
        PodRange::parse(text).unwrap()
    }

    #[test]
    fn ranges_parse_and_reserve_network_gateway_and_broadcast() {
        let r = range("10.244.1.0/24");
        assert_eq!(r.gateway(), Ipv4Addr::new(10, 244, 1, 1));
        assert!(!r.is_usable(Ipv4Addr::new(10, 244, 1, 0)));
        assert!(!r.is_usable(Ipv4Addr::new(10, 244, 1, 1)));
        assert!(r.is_usable(Ipv4Addr::new(10, 244, 1, 2)));
        assert!(r.is_usable(Ipv4Addr::new(10, 244, 1, 254)));
        assert!(!r.is_usable(Ipv4Addr::new(10, 244, 1, 255)));
        assert!(!r.is_usable(Ipv4Addr::new(10, 244, 2, 7)));
        assert_eq!(r.usable_count(), 253);
        assert_eq!(range("10.0.0.0/30").usable_count(), 1);
        for bad in [
            "10.244.1.1/24",
            "10.244.1.0",
            "10.0.0.0/31",
            "fd00::/64",
            "x/24",
        ] {
            assert!(PodRange::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn allocation_is_per_attachment_reused_released_and_exhausts_with_code_11() {
        let dir = tempfile::tempdir().unwrap();
        let r = range("10.0.0.0/29"); // .2 .. .6 usable
        let store = Store::open(dir.path(), "net").unwrap();
        store.check_range(r).unwrap();
        let a = store.allocate(r, "a", "eth0", None).unwrap();
        assert_eq!(a, Ipv4Addr::new(10, 0, 0, 2));
        assert_eq!(
            store.allocate(r, "a", "eth0", None).unwrap(),
            a,
            "repeat ADD"
        );
        let mut held = vec![a];
        for c in ["b", "c", "d", "e"] {
            held.push(store.allocate(r, c, "eth0", None).unwrap());
        }
        held.sort();
        held.dedup();
        assert_eq!(held.len(), 5);
        let full = store.allocate(r, "f", "eth0", None).unwrap_err();
        assert_eq!(full.code, code::TRY_AGAIN_LATER, "{full}");
        assert!(full.msg.contains("10.0.0.0/29"), "{full}");
        assert_eq!(store.release("c", "eth0").unwrap().len(), 1);
        assert!(store.release("c", "eth0").unwrap().is_empty(), "DEL twice");
        assert!(store.allocate(r, "f", "eth0", None).is_ok());
        let requested = store
            .allocate(r, "g", "eth0", Some(Ipv4Addr::new(10, 0, 0, 1)))
            .unwrap_err();
        assert_eq!(requested.code, code::INVALID_CONFIG, "the gateway");
        let taken = store.allocate(r, "g", "eth0", Some(a)).unwrap_err();
        assert!(taken.msg.contains("held by container a"), "{taken}");
    }

    #[test]
    fn a_changed_pod_cidr_is_refused_while_old_addresses_are_held() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), "net").unwrap();
        let old = range("10.0.1.0/24");
        store.check_range(old).unwrap();
        store.allocate(old, "a", "eth0", None).unwrap();
        let new = range("10.0.2.0/24");
        let e = store.check_range(new).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG);
        assert!(e.msg.contains("10.0.1.0/24 to 10.0.2.0/24"), "{e}");
        store.release("a", "eth0").unwrap();
        store.check_range(new).unwrap();
        store.check_range(new).unwrap();
    }

    #[test]
    fn gc_frees_what_the_runtime_no_longer_lists() {
        let dir = tempfile::tempdir().unwrap();
        let r = range("10.0.1.0/24");
        let store = Store::open(dir.path(), "net").unwrap();
        for c in ["a", "b", "c"] {
            store.allocate(r, c, "eth0", None).unwrap();
        }
        let valid = [Attachment {
            container_id: "b".to_owned(),
            ifname: "eth0".to_owned(),
        }];
        let freed = store.collect_garbage(&valid).unwrap();
        assert_eq!(freed.len(), 2);
        let left = store.leases().unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].container_id, "b");
    }
}
