//! `ferroplane apply -f FILE|DIR|-`: every document is decoded, admitted and stored on its own
//! (like kubectl, a bad object does not stop the good ones), all in one transaction; the stored
//! objects are printed back, as the API server returns them.

use crate::manifest::{self, Entry};
use crate::model::ObjectRef;
use crate::store::StateDir;
use crate::transaction::Transaction;

use super::output::{out, outln};
use super::{ApplyArgs, ApplyOutput, short_name};

/// Formats a decode failure: location, object, field, message.
fn decode_failure(entry: &Entry, field: Option<&str>, message: &str) -> String {
    let mut line = entry.location.to_string();
    if let Some(object) = &entry.describe {
        line.push_str(&format!(": {object}"));
    }
    if let Some(field) = field {
        line.push_str(&format!(": {field}"));
    }
    format!("{line}: {message}")
}

pub fn run(dir: &StateDir, args: &ApplyArgs) -> Result<bool, String> {
    let entries = manifest::load(&args.files)?;
    let mut transaction = Transaction::begin(dir).map_err(|e| e.to_string())?;
    let mut all_good = true;
    let mut applied: Vec<(ObjectRef, &'static str)> = Vec::new();
    for entry in &entries {
        let object = match &entry.result {
            Ok(object) => object.clone(),
            Err(error) => {
                eprintln!(
                    "error: {}",
                    decode_failure(entry, error.field.as_deref(), &error.message)
                );
                all_good = false;
                continue;
            }
        };
        match transaction
            .server()
            .apply(object, args.namespace.as_deref())
        {
            Ok(done) => applied.push((done.object.object_ref(), done.outcome.verb())),
            Err(rejection) => {
                eprintln!("error: {}: {rejection}", entry.location);
                all_good = false;
            }
        }
    }
    let committed = transaction.commit().map_err(|e| e.to_string())?;
    for warning in &committed.warnings {
        eprintln!("warning: {warning}");
    }
    let stored: Vec<_> = applied
        .iter()
        .filter_map(|(key, verb)| Some((key, *verb, committed.state.object(key)?)))
        .collect();
    match args.output {
        ApplyOutput::Name => {
            for (key, verb, _) in &stored {
                outln!("{} {verb}", short_name(key));
            }
        }
        ApplyOutput::Yaml => {
            let documents: Vec<String> = stored
                .iter()
                .map(|(_, _, object)| object.to_yaml())
                .collect();
            out!("{}", documents.join("---\n"));
        }
        ApplyOutput::Json => {
            for (_, _, object) in &stored {
                outln!(
                    "{}",
                    serde_json::to_string_pretty(&object.to_json_value()).unwrap_or_default()
                );
            }
        }
    }
    if args.output != ApplyOutput::Name {
        for (key, verb, _) in &stored {
            eprintln!("{} {verb}", short_name(key));
        }
    }
    Ok(all_good)
}
