//! Manifests as `apply -f` reads them: files, directories (their `.yaml`, `.yml` and `.json`
//! files, in name order) or standard input; YAML multi-document streams (serde-saphyr) and JSON
//! streams (serde_json); `kind: List` expanded into its items.
//!
//! Each document is parsed on its own, so one malformed document does not hide the others:
//! every entry carries its location (source, document number, first line, list item) and
//! either the decoded object or the reason it is not one.

pub mod decode;

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

use crate::model::Object;
pub use decode::DecodeError;

/// Where a document came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Location {
    pub source: String,
    /// 1-based, counting non-empty documents.
    pub document: usize,
    /// 1-based line of the document's first line in the source.
    pub line: usize,
    /// Index in `items` when the document is a List.
    pub item: Option<usize>,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: document {} (line {})",
            self.source, self.document, self.line
        )?;
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        Ok(())
    }
}

/// One object-sized piece of input.
#[derive(Clone, Debug)]
pub struct Entry {
    pub location: Location,
    /// `Kind namespace/name` from the raw document, when it says that much.
    pub describe: Option<String>,
    pub result: Result<Object, DecodeError>,
}

/// Reads the named sources (`-` is standard input) into `(name, text)` pairs.
pub fn read_sources(names: &[String]) -> Result<Vec<(String, String)>, String> {
    let mut texts = Vec::new();
    for name in names {
        if name == "-" {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .map_err(|e| format!("-: cannot read standard input: {e}"))?;
            texts.push(("-".to_owned(), text));
            continue;
        }
        let path = Path::new(name);
        if path.is_dir() {
            let mut files: Vec<_> = fs::read_dir(path)
                .map_err(|e| format!("{name}: {e}"))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.is_file()
                        && p.extension()
                            .is_some_and(|x| x == "yaml" || x == "yml" || x == "json")
                })
                .collect();
            files.sort();
            for file in files {
                let text =
                    fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
                texts.push((file.display().to_string(), text));
            }
        } else {
            let text = fs::read_to_string(path).map_err(|e| format!("{name}: {e}"))?;
            texts.push((name.clone(), text));
        }
    }
    Ok(texts)
}

/// Whether a source holds JSON: a `.json` name, or text starting with `{`.
fn is_json(source: &str, text: &str) -> bool {
    source.ends_with(".json") || text.trim_start().starts_with('{')
}

/// Parses one source into entries, one per object.
pub fn parse(source: &str, text: &str) -> Vec<Entry> {
    let documents = if is_json(source, text) {
        json_documents(text)
    } else {
        yaml_documents(source, text)
    };
    let mut entries = Vec::new();
    for (document, (line, parsed)) in documents.into_iter().enumerate() {
        let location = Location {
            source: source.to_owned(),
            document: document + 1,
            line,
            item: None,
        };
        match parsed {
            Err(message) => entries.push(Entry {
                location,
                describe: None,
                result: Err(DecodeError {
                    field: None,
                    message,
                }),
            }),
            Ok(value) => expand(location, value, &mut entries),
        }
    }
    entries
}

/// Adds the object of a document, or the items of a List.
fn expand(location: Location, value: Value, entries: &mut Vec<Entry>) {
    if decode::list_kind(&value).is_none() {
        let describe = decode::describe(&value);
        entries.push(Entry {
            location,
            describe,
            result: decode::decode(value),
        });
        return;
    }
    let Some(Value::Array(items)) = value.get("items").cloned() else {
        let error = DecodeError {
            field: Some("items".to_owned()),
            message: "a List needs an items array".to_owned(),
        };
        entries.push(Entry {
            location,
            describe: Some("List".to_owned()),
            result: Err(error),
        });
        return;
    };
    for (i, item) in items.into_iter().enumerate() {
        let location = Location {
            item: Some(i),
            ..location.clone()
        };
        if decode::list_kind(&item).is_some() {
            let error = DecodeError {
                field: None,
                message: "a List may not contain another List".to_owned(),
            };
            entries.push(Entry {
                location,
                describe: Some("List".to_owned()),
                result: Err(error),
            });
        } else {
            let describe = decode::describe(&item);
            entries.push(Entry {
                location,
                describe,
                result: decode::decode(item),
            });
        }
    }
}

fn json_documents(text: &str) -> Vec<(usize, Result<Value, String>)> {
    let mut documents = Vec::new();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<Value>();
    loop {
        let start = stream.byte_offset();
        let line = 1 + text[..start].matches('\n').count() + leading_blank_lines(&text[start..]);
        match stream.next() {
            None => break,
            Some(Ok(value)) => documents.push((line, Ok(value))),
            Some(Err(e)) => {
                documents.push((line, Err(format!("invalid JSON: {e}"))));
                break;
            }
        }
    }
    documents
}

fn leading_blank_lines(text: &str) -> usize {
    let skipped = text.len() - text.trim_start().len();
    text[..skipped].matches('\n').count()
}

/// Whether a line is a YAML document marker (`---` or `...`, alone or before a space/comment).
fn marker(line: &str) -> Option<&'static str> {
    let line = line.trim_end_matches(['\r', '\n']);
    ["---", "..."].into_iter().find(|m| {
        line.strip_prefix(m)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with([' ', '\t']))
    })
}

/// Splits a YAML stream at its document markers and parses each document; empty documents
/// (nothing but comments or blank lines) are dropped.
fn yaml_documents(source: &str, text: &str) -> Vec<(usize, Result<Value, String>)> {
    let mut pieces: Vec<(usize, String)> = vec![(1, String::new())];
    for (index, line) in text.split_inclusive('\n').enumerate() {
        match marker(line) {
            Some("---") if line[3..].trim().is_empty() => pieces.push((index + 2, String::new())),
            Some("---") => {
                // Text after the marker on the same line starts the next document.
                let rest = format!("{}{}", " ".repeat(3), &line[3..]);
                pieces.push((index + 1, rest));
            }
            Some(_) => pieces.push((index + 2, String::new())),
            None => {
                if let Some(last) = pieces.last_mut() {
                    last.1.push_str(line);
                }
            }
        }
    }
    pieces
        .into_iter()
        .filter_map(|(line, piece)| {
            let parsed: Result<Option<Value>, serde_saphyr::Error> = serde_saphyr::from_str(&piece);
            match parsed {
                Ok(None | Some(Value::Null)) => None,
                Ok(Some(value)) => Some((line, Ok(value))),
                Err(e) => {
                    let options = serde_saphyr::render_options! {
                        line_offset: u64::try_from(line - 1).unwrap_or(0),
                        source_name: Some(source),
                    };
                    Some((
                        line,
                        Err(format!("invalid YAML: {}", e.render_with_options(options))),
                    ))
                }
            }
        })
        .collect()
}

/// Every entry of every named source, and the sources that could not be read.
pub fn load(names: &[String]) -> Result<Vec<Entry>, String> {
    let sources = read_sources(names)?;
    Ok(sources
        .iter()
        .flat_map(|(name, text)| parse(name, text))
        .collect())
}

#[cfg(test)]
mod tests;
