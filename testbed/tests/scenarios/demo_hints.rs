//! The commands `scripts/demo.sh` suggests at its end (printed by `scripts/demo-hints.sh`)
//! work as printed on the cluster the demo leaves: each one is run, in order, against a
//! testbed set up as the demo sets it up (two nodes, dual-stack, the store app, the
//! LoadBalancer Service), with only `FERROPLANE_STATE` and `TESTBED_PREFIX` in the environment, as a user
//! who copies them would have.

use std::process::{Child, Command, Output, Stdio};

use crate::cluster::{Cluster, DEMO, TESTBED, ferroplane};

const HINTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/demo-hints.sh");

/// One command of the hints, as printed.
struct Hint {
    line: String,
    background: bool,
}

/// The commands of the printed hints, in order: each line's command, then the commands its
/// comment names after "then:" (and on the comment lines that continue it).
fn parse(printed: &str) -> Vec<Hint> {
    let mut hints = Vec::new();
    let mut in_then = false;
    let lines = printed
        .lines()
        .skip_while(|l| !l.contains("Explore it:"))
        .skip(1);
    for line in lines {
        let line = line.trim();
        let (command, comment) = match line.split_once("  #") {
            Some((command, comment)) => (command.trim(), Some(comment.trim())),
            None if line.starts_with('#') => ("", Some(line.trim_start_matches('#').trim())),
            None => (line, None),
        };
        if !command.is_empty() {
            let background = command.ends_with('&');
            let line = command.trim_end_matches('&').trim().to_owned();
            hints.push(Hint { line, background });
            in_then = false;
        }
        let named = match comment {
            Some(comment) if comment.starts_with("then:") || command.is_empty() && in_then => {
                in_then = true;
                comment.trim_start_matches("then:")
            }
            _ => continue,
        };
        for command in named.split(", ").map(str::trim).filter(|c| !c.is_empty()) {
            let line = command.trim_end_matches(',').to_owned();
            hints.push(Hint {
                line,
                background: false,
            });
        }
    }
    hints
}

fn shell(line: &str, prefix: &str, state: &str) -> Command {
    let mut command = Command::new("bash");
    command
        .args(["-c", line])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TESTBED_PREFIX", prefix)
        .env("FERROPLANE_STATE", state);
    command
}

fn check(hint: &str, out: &Output) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "`{hint}` failed ({:?}): {stderr}",
        out.status
    );
    assert!(!stderr.contains("panicked"), "`{hint}`: {stderr}");
}

#[test]
fn every_command_the_demo_prints_at_its_end_works() {
    let cluster = Cluster::up("hint", &["--nodes", "2", "--ip-family", "dual"]);
    cluster.ok(&["apply", "-f", &format!("{DEMO}/40-store-be-lb.yaml")]);
    let state = cluster.status()["state_dir"].as_str().unwrap().to_owned();
    let vip = cluster.cluster_ip("store-be");
    let vip6 = cluster.get("service", "store-be")["spec"]["clusterIPs"][1]
        .as_str()
        .unwrap()
        .to_owned();
    let lb = cluster.get("service", "store-be-lb")["status"]["loadBalancer"]["ingress"][0]["ip"]
        .as_str()
        .unwrap()
        .to_owned();
    // The cloud LB routes an ingress IP once the nodes pass its health check.
    std::thread::sleep(std::time::Duration::from_secs(1));
    let printed = Command::new(HINTS)
        .env("T", TESTBED)
        .env("F", ferroplane())
        .env("FERROPLANE_STATE", &state)
        .env("VIP", &vip)
        .env("VIP6", &vip6)
        .env("LB", &lb)
        .output()
        .unwrap();
    check("demo-hints.sh", &printed);
    let printed = String::from_utf8(printed.stdout).unwrap();
    let hints = parse(&printed);
    let ran: Vec<&str> = hints.iter().map(|h| h.line.as_str()).collect();
    let probe6 = format!(" probe store-fe '[{vip6}]:80'");
    for verb in [
        probe6.as_str(),
        " stats --node-name node-1",
        " conntrack list --node-name node-1",
        " down",
    ] {
        assert!(
            ran.iter().any(|l| l.contains(verb)),
            "{verb} not in {ran:?}"
        );
    }
    let mut background: Vec<(String, Child)> = Vec::new();
    for hint in &hints {
        let mut state_for_run = state.clone();
        if let Some(exported) = hint.line.strip_prefix("export FERROPLANE_STATE=") {
            assert_eq!(exported, state, "the hint exports another state directory");
            state_for_run = exported.to_owned();
        }
        let mut command = shell(&hint.line, &cluster.prefix, &state_for_run);
        if hint.background {
            let child = command
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            background.push((hint.line.clone(), child));
            continue;
        }
        if hint.line.contains(" down") {
            for (line, child) in background.drain(..) {
                check(&line, &child.wait_with_output().unwrap());
            }
        }
        let out = command.output().unwrap();
        check(&hint.line, &out);
        let stdout = String::from_utf8_lossy(&out.stdout);
        if hint.line.contains(" stats --node-name node-1") {
            assert!(stdout.starts_with("node node-1 "), "{stdout}");
        }
        if hint.line.contains(" conntrack list --node-name node-1") {
            assert!(!stdout.is_empty(), "no flows listed after the probes");
        }
    }
    assert!(
        background.is_empty(),
        "a background command outlived `down`"
    );
}
