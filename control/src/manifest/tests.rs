//! Document splitting, numbering, line reporting, JSON streams and List expansion.

use super::*;
use crate::model::Kind;

const TWO_SERVICES: &str = "\
# leading comment
---
apiVersion: v1
kind: Service
metadata:
  name: a
spec:
  ports:
  - port: 80
---
# an empty document is skipped
---
apiVersion: v1
kind: Service
metadata:
  name: b
spec:
  ports:
  - port: 81
";

#[test]
fn yaml_stream_documents_are_numbered_and_located() {
    let entries = parse("svc.yaml", TWO_SERVICES);
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].location.document, 1);
    assert_eq!(entries[0].location.line, 3);
    assert_eq!(entries[1].location.document, 2);
    assert_eq!(entries[1].location.line, 13);
    let names: Vec<_> = entries
        .iter()
        .map(|e| e.result.as_ref().unwrap().object_ref().name)
        .collect();
    assert_eq!(names, ["a", "b"]);
}

#[test]
fn a_broken_document_does_not_hide_the_others() {
    let text = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: bad\n spec: {}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ok2\n";
    let entries = parse("mixed.yaml", text);
    assert_eq!(entries.len(), 3);
    assert!(entries[0].result.is_ok());
    let err = entries[1].result.as_ref().unwrap_err();
    assert!(err.message.starts_with("invalid YAML"), "{}", err.message);
    // Line 10 of the file, not of the document.
    assert!(err.message.contains("mixed.yaml:10"), "{}", err.message);
    assert!(entries[2].result.is_ok());
}

#[test]
fn json_stream_and_list_items() {
    let text = r#"{"apiVersion":"v1","kind":"List","items":[
        {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}},
        {"apiVersion":"v1","kind":"Bogus","metadata":{"name":"y"}}]}
    {"apiVersion":"v1","kind":"Node","metadata":{"name":"n"}}"#;
    let entries = parse("-", text);
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].location.item, Some(0));
    assert_eq!(entries[0].result.as_ref().unwrap().kind(), Kind::Namespace);
    assert_eq!(entries[1].location.item, Some(1));
    assert_eq!(entries[1].describe.as_deref(), Some("Bogus y"));
    assert!(entries[1].result.is_err());
    assert_eq!(entries[2].location.document, 2);
    assert_eq!(entries[2].location.line, 4);
    assert_eq!(entries[2].result.as_ref().unwrap().kind(), Kind::Node);
}

#[test]
fn invalid_json_is_reported() {
    let entries = parse("x.json", "{\"apiVersion\": \"v1\", ");
    assert_eq!(entries.len(), 1);
    assert!(
        entries[0]
            .result
            .as_ref()
            .unwrap_err()
            .message
            .contains("invalid JSON")
    );
}

#[test]
fn location_display() {
    let location = Location {
        source: "f.yaml".into(),
        document: 2,
        line: 7,
        item: Some(3),
    };
    assert_eq!(
        location.to_string(),
        "f.yaml: document 2 (line 7), items[3]"
    );
}
