//! `ferroplane delete KIND NAME... [-n NS]`: deletes in one transaction; the controllers drop
//! what the deleted objects held (endpoints, addresses, ports).

use crate::model::{Kind, ObjectRef};
use crate::store::StateDir;
use crate::transaction::Transaction;

use super::DeleteArgs;
use super::output::outln;

pub fn run(dir: &StateDir, args: &DeleteArgs) -> Result<bool, String> {
    let kind = Kind::from_cli_name(&args.kind)
        .ok_or_else(|| format!("the server doesn't have a resource type {:?}", args.kind))?;
    let namespace = args.namespace.as_deref().unwrap_or("default");
    let mut transaction = Transaction::begin(dir).map_err(|e| e.to_string())?;
    let mut all_good = true;
    for name in &args.names {
        let key = ObjectRef::new(kind, namespace, name);
        match transaction.server().delete(&key) {
            Ok(_) => outln!("{} {name:?} deleted", kind.name().to_ascii_lowercase()),
            Err(rejection) => {
                eprintln!("error: {rejection}");
                all_good = false;
            }
        }
    }
    let committed = transaction.commit().map_err(|e| e.to_string())?;
    for warning in &committed.warnings {
        eprintln!("warning: {warning}");
    }
    Ok(all_good)
}
