//! Who holds a lock file: the processes that `/proc/locks` lists on its inode, with their
//! user and command, for the message of a lock wait that timed out.
//!
//! Invariant: best effort and read-only: anything unreadable is left out of the description,
//! never an error of its own.

use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;

/// "pid 1234 (flock, uid 65534 nobody, sleep)" for each holder of `file`'s locks, joined;
/// `None` when none can be found.
pub fn describe(file: &File) -> Option<String> {
    let meta = file.metadata().ok()?;
    let (major, minor) = split_dev(meta.dev());
    let wanted = format!("{major:02x}:{minor:02x}:{}", meta.ino());
    let locks = fs::read_to_string("/proc/locks").ok()?;
    let holders: Vec<String> = locks
        .lines()
        .filter(|line| !line.contains("->")) // a waiter, not a holder
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // "1: FLOCK  ADVISORY  WRITE 1234 00:2a:5678 0 EOF"
            let (kind, mode, pid, inode) = (
                fields.get(1)?,
                fields.get(3)?,
                fields.get(4)?,
                fields.get(5)?,
            );
            (*inode == wanted).then(|| describe_pid(pid, kind, mode))
        })
        .collect();
    (!holders.is_empty()).then(|| holders.join(", "))
}

fn describe_pid(pid: &str, kind: &str, mode: &str) -> String {
    let mut parts = vec![format!("{} {}", kind.to_lowercase(), mode.to_lowercase())];
    let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let uid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().next());
    if let Some(uid) = uid {
        match user_name(uid) {
            Some(name) => parts.push(format!("uid {uid} {name}")),
            None => parts.push(format!("uid {uid}")),
        }
    }
    if let Ok(comm) = fs::read_to_string(format!("/proc/{pid}/comm")) {
        parts.push(comm.trim().to_owned());
    }
    format!("pid {pid} ({})", parts.join(", "))
}

/// The name of `uid` in /etc/passwd.
fn user_name(uid: &str) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        (fields.nth(1)? == uid).then(|| name.to_owned())
    })
}

/// Linux's `dev_t` as (major, minor), as /proc/locks prints them.
fn split_dev(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}
