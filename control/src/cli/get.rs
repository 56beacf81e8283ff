//! `ferroplane get KIND[,KIND...] [NAME] [-n NS | -A] [-o yaml|json|wide|name]`: reads a consistent
//! snapshot (shared lock) and prints one object or a list, as a kubectl-like table by default.

use crate::model::{Kind, Object, ObjectRef};
use crate::state::ClusterState;
use crate::store::StateDir;

use super::output::{out, outln};
use super::table;
use super::{GetArgs, GetOutput, short_name};

pub fn run(dir: &StateDir, args: &GetArgs) -> Result<bool, String> {
    let kinds = args
        .kind
        .split(',')
        .map(|name| {
            Kind::from_cli_name(name)
                .ok_or_else(|| format!("the server doesn't have a resource type {name:?}"))
        })
        .collect::<Result<Vec<Kind>, String>>()?;
    if kinds.len() > 1 && args.name.is_some() {
        return Err("a name may only be given with a single kind".to_owned());
    }
    let state = ClusterState::load(dir.root()).map_err(|e| e.to_string())?;
    for problem in state.problems() {
        eprintln!("warning: skipped unreadable object: {problem}");
    }
    if kinds
        .iter()
        .any(|k| matches!(k, Kind::Service | Kind::NetworkPolicy))
    {
        report_dataplane_problems(&state);
    }
    let namespace = args.namespace.as_deref().unwrap_or("default");
    let mut found = Vec::new();
    for &kind in &kinds {
        let objects: Vec<&Object> = match &args.name {
            Some(name) => match state.object(&ObjectRef::new(kind, namespace, name)) {
                Some(object) => vec![object],
                None => {
                    eprintln!(
                        "Error from server (NotFound): {} {name:?} not found",
                        kind.plural()
                    );
                    return Ok(false);
                }
            },
            None if args.all_namespaces || !kind.is_namespaced() => {
                state.objects_of(kind).collect()
            }
            None => state.objects_in(kind, namespace).collect(),
        };
        found.push((kind, objects));
    }
    let everything: Vec<&Object> = found
        .iter()
        .flat_map(|(_, objects)| objects.iter().copied())
        .collect();
    let single = args.name.is_some();
    match args.output {
        Some(GetOutput::Yaml) => out!(
            "{}",
            render(
                &everything,
                single,
                |v| serde_saphyr::to_string(v).unwrap_or_default(),
                Object::to_yaml
            )
        ),
        Some(GetOutput::Json) => outln!(
            "{}",
            render(
                &everything,
                single,
                |v| serde_json::to_string_pretty(v).unwrap_or_default(),
                |o| { serde_json::to_string_pretty(&o.to_json_value()).unwrap_or_default() }
            )
        ),
        Some(GetOutput::Name) => everything
            .iter()
            .for_each(|o| outln!("{}", short_name(&o.object_ref()))),
        output @ (None | Some(GetOutput::Wide)) => {
            if everything.is_empty() {
                match args.all_namespaces || kinds.iter().all(|k| !k.is_namespaced()) {
                    true => eprintln!("No resources found"),
                    false => eprintln!("No resources found in {namespace} namespace."),
                }
            }
            let wide = output == Some(GetOutput::Wide);
            let tables: Vec<String> = found
                .iter()
                .filter(|(_, objects)| !objects.is_empty())
                .map(|(kind, objects)| {
                    let show_namespace = args.all_namespaces && kind.is_namespaced();
                    table::render(
                        *kind,
                        objects,
                        &state,
                        wide,
                        show_namespace,
                        jiff::Timestamp::now(),
                    )
                })
                .collect();
            out!("{}", tables.join("\n"));
        }
    }
    Ok(true)
}

/// One object as itself; several as a `kind: List`, as kubectl prints them.
fn render(
    objects: &[&Object],
    single: bool,
    list: impl Fn(&serde_json::Value) -> String,
    one: impl Fn(&Object) -> String,
) -> String {
    match objects {
        [object] if single => one(object),
        _ => {
            let items: Vec<serde_json::Value> = objects.iter().map(|o| o.to_json_value()).collect();
            list(&serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items}))
        }
    }
}

/// Objects the API accepted but the dataplane compiler skips (duplicate front
/// ends, ...): a node logs them when it programs its tables; `get` shows them too, compiled
/// for the first node (they do not depend on the node).
fn report_dataplane_problems(state: &ClusterState) {
    let Some(node) = state.nodes().next().and_then(|n| n.metadata.name.clone()) else {
        return;
    };
    let ports = crate::compile::PortAssignments::sequential(state, &node);
    let local = crate::compile::NodeLocal::default();
    if let Ok(compiled) = crate::compile::compile(state, &node, &local, &ports) {
        for p in compiled.problems {
            eprintln!("warning: not programmed: {}: {}", p.object, p.message);
        }
    }
}
