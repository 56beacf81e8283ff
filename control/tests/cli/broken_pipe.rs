//! Every verb ends quietly when the reader of its output goes away (`... | head`): killed by
//! SIGPIPE as other Unix tools are (status 141 in a shell), with no panic message.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixListener;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Output, Stdio};
use std::thread;

use super::harness::{BIN, Cluster};

const SIGPIPE: i32 = 13;

/// Runs `command` with standard output a pipe whose reader is already closed.
fn into_closed_reader(mut command: Command) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap()
}

fn assert_quiet_sigpipe(what: &str, output: &Output) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.signal(),
        Some(SIGPIPE),
        "{what}: {:?}, stderr: {stderr}",
        output.status
    );
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    assert!(!stderr.contains("Broken pipe"), "{what}: {stderr}");
}

#[test]
fn state_verbs_end_quietly_when_the_reader_went_away() {
    let cluster = Cluster::new();
    assert!(cluster.run(&["init"]).success);
    for args in [
        &["get", "namespaces"][..],
        &["get", "namespaces", "-o", "yaml"],
        &["get", "namespaces", "-o", "json"],
        &["init"],
    ] {
        assert_quiet_sigpipe(&args.join(" "), &into_closed_reader(cluster.command(args)));
    }
}

#[test]
fn conntrack_list_and_stats_end_quietly_when_the_reader_went_away() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("admin.sock");
    let listener = UnixListener::bind(&socket).unwrap();
    // A stand-in node: answers every request with a long flow list (or stats JSON).
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = String::new();
            let _ = BufReader::new(&stream).read_line(&mut request);
            let body = if request.contains("/stats") {
                "{\"node\":\"node-1\",\"conntrack\":{},\"workers\":[]}".to_owned()
            } else {
                "tcp 6 86399 ESTABLISHED src=10.244.0.10 dst=10.96.0.1 sport=1 dport=443\n"
                    .repeat(10_000)
            };
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    let socket = socket.to_str().unwrap();
    for args in [
        &["conntrack", "list", "--socket", socket][..],
        &["stats", "--socket", socket],
        &["stats", "--socket", socket, "-o", "json"],
    ] {
        let mut command = Command::new(BIN);
        command.args(args);
        assert_quiet_sigpipe(&args.join(" "), &into_closed_reader(command));
    }
}
