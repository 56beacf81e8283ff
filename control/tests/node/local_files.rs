//! The node's local files: the admin socket is owner-only whatever the umask, and the CLI
//! finds it by node name through the state directory, wherever node.yaml put it.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::process::Command;

use crate::harness::{BIN, Backend, Node};

#[test]
fn the_admin_socket_is_owner_only_and_found_by_node_name_through_the_state_directory() {
    let node = Node::start("ls", Backend::Tap, 1, 1, "");
    let meta = std::fs::symlink_metadata(node.socket()).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.mode() & 0o777, 0o600, "{:o}", meta.mode());
    let name = node.node_name();
    let state = node.dir.path().join("state");
    let published = std::fs::read_to_string(state.join("sockets").join(&name)).unwrap();
    assert_eq!(published.trim_end(), node.socket().display().to_string());
    for args in [
        &["stats", "--node-name", name.as_str()][..],
        &["conntrack", "list", "--node-name", name.as_str()],
        // The only node publishing in this state directory: found without a name.
        &["stats"],
    ] {
        let run = Command::new(BIN)
            .arg("--state")
            .arg(&state)
            .args(args)
            .env_remove("FERROPLANE_ADMIN_SOCKET")
            .env_remove("FERROPLANE_NODE_NAME")
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&run.stderr)
        );
        if args[0] == "stats" {
            let text = String::from_utf8_lossy(&run.stdout);
            assert!(text.starts_with(&format!("node {name} ")), "{text}");
        }
    }
}
