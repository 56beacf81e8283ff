//! The manifests in `deploy/`: every document decodes into its k8s-openapi type without
//! losing a field (a misspelt field would be dropped, so the round trip would differ), the RBAC
//! grants read access to exactly the kinds the source watches, and the DaemonSet runs
//! `--source kubernetes` the way a kube-proxy replacement must run.

use std::collections::BTreeSet;
use std::path::Path;

use control::ClusterSettings;
use control::kube_source::WATCHED_KINDS;
use k8s_openapi::Resource;
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Node, Pod, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Every document of every `deploy/*.yaml`, with its file name.
fn documents() -> Vec<(String, Value)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no manifests in {}", dir.display());
    let mut documents = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let parsed: Vec<Value> = serde_saphyr::from_multiple(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        documents.extend(parsed.into_iter().map(|doc| (name.clone(), doc)));
    }
    documents
}

/// The one document of type `T`, decoded, after checking that re-encoding it gives back the
/// document exactly.
fn the_one<T: Resource + DeserializeOwned + Serialize>() -> T {
    let mut found: Vec<(String, Value)> = documents()
        .into_iter()
        .filter(|(_, doc)| doc["kind"] == T::KIND && doc["apiVersion"] == T::API_VERSION)
        .collect();
    assert_eq!(found.len(), 1, "one {} expected", T::KIND);
    let (file, document) = found.remove(0);
    let typed: T = serde_json::from_value(document.clone())
        .unwrap_or_else(|e| panic!("{file}: {}: {e}", T::KIND));
    assert_eq!(
        serde_json::to_value(&typed).unwrap(),
        document,
        "{file}: {} has fields its type does not know",
        T::KIND
    );
    typed
}

#[test]
fn every_document_is_a_known_object() {
    let kinds: Vec<String> = documents()
        .iter()
        .map(|(file, doc)| format!("{file}: {}/{}", doc["apiVersion"], doc["kind"]))
        .collect();
    assert_eq!(kinds.len(), 5, "{kinds:?}");
    the_one::<ServiceAccount>();
    the_one::<ClusterRole>();
    the_one::<ClusterRoleBinding>();
    the_one::<ConfigMap>();
    the_one::<DaemonSet>();
}

/// `(apiGroup, resource)` of a k8s-openapi type, from the type itself.
fn resource_of<T: Resource>() -> (String, String, &'static str) {
    (T::GROUP.to_owned(), T::URL_PATH_SEGMENT.to_owned(), T::KIND)
}

#[test]
fn the_cluster_role_reads_exactly_the_watched_kinds_and_patches_only_nodes() {
    let watched = [
        resource_of::<Namespace>(),
        resource_of::<Node>(),
        resource_of::<Pod>(),
        resource_of::<Service>(),
        resource_of::<EndpointSlice>(),
        resource_of::<NetworkPolicy>(),
    ];
    let source_kinds: BTreeSet<&str> = WATCHED_KINDS.iter().map(|k| k.name()).collect();
    let type_kinds: BTreeSet<&str> = watched.iter().map(|(_, _, kind)| *kind).collect();
    assert_eq!(source_kinds, type_kinds);

    let role = the_one::<ClusterRole>();
    let mut granted = BTreeSet::new();
    let mut patched = BTreeSet::new();
    for rule in role.rules.unwrap() {
        let verbs: BTreeSet<&str> = rule.verbs.iter().map(String::as_str).collect();
        assert!(rule.resource_names.is_none() && rule.non_resource_urls.is_none());
        for group in rule.api_groups.unwrap() {
            for resource in rule.resources.iter().flatten() {
                if verbs == BTreeSet::from(["patch"]) {
                    // The node's own VTEP annotations (kube_source/publish.rs): the only write.
                    patched.insert((group.clone(), resource.clone()));
                } else {
                    assert_eq!(
                        verbs,
                        BTreeSet::from(["get", "list", "watch"]),
                        "{resource}"
                    );
                    granted.insert((group.clone(), resource.clone()));
                }
            }
        }
    }
    assert_eq!(
        patched,
        BTreeSet::from([(String::new(), "nodes".to_owned())]),
        "patch on nodes and nothing else is written"
    );
    let expected: BTreeSet<(String, String)> = watched
        .into_iter()
        .map(|(group, resource, _)| (group, resource))
        .collect();
    assert_eq!(granted, expected);

    let account = the_one::<ServiceAccount>();
    let binding = the_one::<ClusterRoleBinding>();
    assert_eq!(binding.role_ref.kind, "ClusterRole");
    assert_eq!(Some(&binding.role_ref.name), role.metadata.name.as_ref());
    let subjects = binding.subjects.unwrap();
    assert_eq!(subjects.len(), 1);
    assert_eq!(subjects[0].kind, "ServiceAccount");
    assert_eq!(Some(&subjects[0].name), account.metadata.name.as_ref());
    assert_eq!(subjects[0].namespace, account.metadata.namespace);
    assert_eq!(account.metadata.namespace.as_deref(), Some("kube-system"));
}

#[test]
fn the_daemon_set_runs_the_kubernetes_source_on_every_node() {
    let daemon_set = the_one::<DaemonSet>();
    let account = the_one::<ServiceAccount>();
    let config_map = the_one::<ConfigMap>();
    assert_eq!(
        daemon_set.metadata.namespace.as_deref(),
        Some("kube-system")
    );
    let spec = daemon_set.spec.unwrap();
    let template_labels = spec.template.metadata.unwrap().labels.unwrap();
    for (key, value) in spec.selector.match_labels.unwrap() {
        assert_eq!(template_labels.get(&key), Some(&value));
    }
    let pod = spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name, account.metadata.name);
    assert_eq!(pod.host_network, Some(true));
    assert_eq!(
        pod.priority_class_name.as_deref(),
        Some("system-node-critical")
    );
    // A toleration with operator Exists and no key, value or effect tolerates every taint.
    assert!(pod.tolerations.unwrap().iter().any(|t| {
        t.operator.as_deref() == Some("Exists")
            && t.key.is_none()
            && t.effect.is_none()
            && t.value.is_none()
    }));

    // The init container installs the plugin and its conflist on the host.
    let [install] = pod.init_containers.as_deref().unwrap_or_default() else {
        panic!("one init container expected");
    };
    assert_eq!(
        install.command.as_deref().unwrap(),
        ["/usr/local/bin/ferroplane-cni"]
    );
    let install_args = install.args.as_deref().unwrap();
    assert_eq!(install_args[0], "install");
    let host_path_of = |mount_path: &str| {
        let mount = install
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == mount_path)
            .unwrap_or_else(|| panic!("install-cni mounts nothing at {mount_path}"));
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == mount.name)
            .unwrap();
        volume.host_path.as_ref().unwrap().path.clone()
    };
    assert_eq!(host_path_of(&install_args[1]), "/opt/cni/bin");
    assert_eq!(host_path_of(&install_args[2]), "/etc/cni/net.d");
    assert_eq!(
        install_args[3], "/usr/share/ferroplane/10-ferroplane.conflist",
        "where deploy/Containerfile puts it"
    );

    let [container] = pod.containers.as_slice() else {
        panic!("one container expected");
    };
    assert_eq!(
        container.args.as_deref().unwrap(),
        [
            "run",
            "--config",
            "/etc/ferroplane/node.yaml",
            "--source",
            "kubernetes"
        ]
    );
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.privileged, Some(true));
    let probe = container
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(probe.path.as_deref(), Some("/healthz"));
    assert_eq!(probe.port, IntOrString::Int(10256));

    // Each mount's volume, by mount path.
    let volumes = pod.volumes.unwrap();
    let volume_at = |path: &str| {
        let mount = container
            .volume_mounts
            .iter()
            .flatten()
            .find(|m| m.mount_path == path)
            .unwrap_or_else(|| panic!("nothing mounted at {path}"));
        volumes.iter().find(|v| v.name == mount.name).unwrap()
    };
    let tun = volume_at("/dev/net/tun").host_path.as_ref().unwrap();
    assert_eq!(
        (tun.path.as_str(), tun.type_.as_deref()),
        ("/dev/net/tun", Some("CharDevice"))
    );
    // The flow table's file is on the host's tmpfs, so it outlives the container.
    let flow_state = volume_at("/run/ferroplane").host_path.as_ref().unwrap();
    assert_eq!(flow_state.path, "/run/ferroplane");
    let config = volume_at("/etc/ferroplane").config_map.as_ref().unwrap();
    assert_eq!(config.name, config_map.metadata.name.unwrap());
    let items = config.items.as_ref().unwrap();
    assert!(
        items
            .iter()
            .any(|i| i.key == "node.yaml" && i.path == "node.yaml")
    );
}

#[test]
fn the_example_node_config_carries_valid_cluster_settings() {
    let config_map = the_one::<ConfigMap>();
    let data = config_map.data.unwrap();
    let node_yaml: Value = serde_saphyr::from_str(data.get("node.yaml").unwrap()).unwrap();
    let settings: ClusterSettings = serde_json::from_value(node_yaml["cluster"].clone()).unwrap();
    settings.validate().unwrap();
    // The same numbers as the ecosystem defaults (flannel, kubeadm, kube-proxy).
    assert_eq!(settings, ClusterSettings::default());
    assert_eq!(
        node_yaml["health"]["bindAddress"].as_str(),
        Some("0.0.0.0:10256")
    );
}
