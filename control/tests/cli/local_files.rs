//! The state directory's files: owner-only modes (or the directory's group), and a lock held
//! by another user makes commands fail after the lock timeout, naming the holder, instead of
//! blocking forever.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use super::harness::Cluster;

const NOBODY: u32 = 65534;
const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  clusterIP: 10.96.0.50\n  ports:\n  - port: 80\n";

fn require_root() {
    assert_eq!(
        fs::metadata("/proc/self").unwrap().uid(),
        0,
        "this test needs root: it runs a process as the user nobody (uid {NOBODY})"
    );
}

/// Every directory and file under `dir`, with its mode and group.
fn modes(dir: &Path) -> Vec<(String, u32, u32)> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = fs::symlink_metadata(&path).unwrap();
        out.push((path.display().to_string(), meta.mode() & 0o7777, meta.gid()));
        if meta.is_dir() {
            out.extend(modes(&path));
        }
    }
    out
}

#[test]
fn state_files_are_owner_only_whatever_the_umask() {
    let cluster = Cluster::new();
    let init = cluster.command(&["init"]);
    // A umask that would make everything world-writable.
    let run = Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$@\"")
        .arg("sh")
        .arg(init.get_program())
        .args(init.get_args())
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(run.success());
    cluster.apply(SERVICE);
    let root = fs::metadata(cluster.path()).unwrap().mode() & 0o777;
    assert_eq!(root, 0o700, "state dir {root:o}");
    let entries = modes(cluster.path());
    assert!(entries.iter().any(|(p, _, _)| p.ends_with("/lock")));
    assert!(entries.iter().any(|(p, _, _)| p.ends_with("/web.json")));
    for (path, mode, _) in &entries {
        let expected = if Path::new(path).is_dir() {
            0o700
        } else {
            0o600
        };
        assert_eq!(*mode, expected, "{path}: {mode:o}");
    }
}

#[test]
fn a_state_directory_shared_with_a_group_gives_it_read_and_write() {
    require_root();
    let cluster = Cluster::new();
    std::os::unix::fs::chown(cluster.path(), None, Some(NOBODY)).unwrap();
    fs::set_permissions(cluster.path(), fs::Permissions::from_mode(0o2770)).unwrap();
    assert!(cluster.run(&["init"]).success);
    cluster.apply(SERVICE);
    let web = modes(cluster.path())
        .into_iter()
        .filter(|(p, _, _)| {
            !Path::new(p)
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with('.')
        })
        .collect::<Vec<_>>();
    assert!(
        web.iter().any(|(p, _, _)| p.ends_with("/web.json")),
        "{web:?}"
    );
    for (path, mode, gid) in web {
        let expected = if Path::new(&path).is_dir() {
            0o2770
        } else {
            0o660
        };
        assert_eq!((mode, gid), (expected, NOBODY), "{path}: {mode:o}");
    }
}

/// `flock -s -o LOCK sleep 60` as the user nobody, once it holds the lock (`-o`: sleep does
/// not inherit it, so killing flock releases it).
fn hold_as_nobody(lock: &Path) -> Child {
    let child = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "flock",
            "-s",
            "-o",
        ])
        .arg(lock)
        .args(["sleep", "60"])
        .spawn()
        .unwrap();
    let started = Instant::now();
    let holds = || {
        fs::read_to_string("/proc/locks")
            .unwrap()
            .lines()
            .any(|l| l.split_whitespace().nth(4) == Some(&child.id().to_string()))
    };
    while !holds() {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "nobody never took the lock"
        );
        thread::sleep(Duration::from_millis(20));
    }
    child
}

#[test]
fn a_lock_held_by_another_user_times_out_naming_the_holder() {
    require_root();
    let cluster = Cluster::new();
    assert!(cluster.run(&["init"]).success);
    let lock = cluster.path().join("lock");
    // A directory as an older version left it: readable by everyone.
    fs::set_permissions(cluster.path(), fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&lock, fs::Permissions::from_mode(0o644)).unwrap();
    let mut holder = hold_as_nobody(&lock);
    let started = Instant::now();
    let run = cluster.run_with_stdin(&["--lock-timeout", "1s", "apply", "-f", "-"], SERVICE);
    let took = started.elapsed();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert!(!run.success, "{}", run.stdout);
    assert!(
        took >= Duration::from_secs(1) && took < Duration::from_secs(10),
        "{took:?}"
    );
    let expected = format!(
        "held by pid {} (flock read, uid {NOBODY} nobody, flock)",
        holder.id()
    );
    assert!(run.stderr.contains(&expected), "{}", run.stderr);
    assert!(run.stderr.contains("lock"), "{}", run.stderr);
    // Opening the lock closed it and the directory to others: nobody cannot take it again,
    // and the apply goes through.
    assert_eq!(fs::metadata(&lock).unwrap().mode() & 0o777, 0o600);
    assert_eq!(fs::metadata(cluster.path()).unwrap().mode() & 0o777, 0o700);
    let retry = Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "flock",
            "-s",
            "-n",
        ])
        .arg(&lock)
        .arg("true")
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(!retry.success(), "nobody could still open the lock file");
    cluster.apply(SERVICE);
}
