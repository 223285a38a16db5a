//! A JSON document as a flat list of numeric metrics named by dotted paths.

use serde_json::{Map, Number, Value};

/// One numeric leaf of a JSON document.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    /// Dotted path from the root: object keys, and for array elements their label (see
    /// [`flatten`]).
    pub path: String,
    /// The number as written in the file.
    pub number: Number,
}

impl Metric {
    /// The number as a float, for arithmetic.
    pub fn value(&self) -> f64 {
        self.number.as_f64().unwrap_or(f64::NAN)
    }
}

/// String fields that name an array element, in the order their values are joined: an element
/// `{"placement": "eplb", "strategy": "none", ...}` is labelled `eplb/none`, so that a path
/// stays the same when elements are added before it.
const IDENTITY_KEYS: [&str; 5] = ["name", "placement", "strategy", "kernel", "link"];

/// Every number in `value` (booleans, strings and nulls are skipped), in document order with
/// object keys sorted, so the order does not depend on how the JSON was parsed. Array elements
/// are labelled by their [`IDENTITY_KEYS`] when every element of the array has a distinct
/// label, else by their index.
pub fn flatten(value: &Value) -> Vec<Metric> {
    let mut metrics = Vec::new();
    walk(value, &mut String::new(), &mut metrics);
    metrics
}

fn walk(value: &Value, path: &mut String, out: &mut Vec<Metric>) {
    match value {
        Value::Number(number) => out.push(Metric {
            path: path.clone(),
            number: number.clone(),
        }),
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                descend(&map[key.as_str()], key, path, out);
            }
        }
        Value::Array(items) => {
            let labels = labels(items);
            for (index, item) in items.iter().enumerate() {
                let label = labels
                    .as_ref()
                    .map_or(index.to_string(), |l| l[index].clone());
                descend(item, &label, path, out);
            }
        }
        Value::Null | Value::Bool(_) | Value::String(_) => {}
    }
}

/// Walks `value` with `segment` appended to `path`, then restores `path`.
fn descend(value: &Value, segment: &str, path: &mut String, out: &mut Vec<Metric>) {
    let length = path.len();
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(segment);
    walk(value, path, out);
    path.truncate(length);
}

/// The elements' labels from their identity fields, or `None` when an element has none or two
/// elements share one.
fn labels(items: &[Value]) -> Option<Vec<String>> {
    let labels: Vec<String> = items
        .iter()
        .map(|item| item.as_object().and_then(label))
        .collect::<Option<_>>()?;
    let mut sorted: Vec<&String> = labels.iter().collect();
    sorted.sort();
    sorted.dedup();
    (sorted.len() == labels.len()).then_some(labels)
}

fn label(object: &Map<String, Value>) -> Option<String> {
    let parts: Vec<&str> = IDENTITY_KEYS
        .iter()
        .filter_map(|key| object.get(*key)?.as_str())
        .collect();
    (!parts.is_empty()).then(|| parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths(json: &str) -> Vec<(String, String)> {
        let value: Value = serde_json::from_str(json).unwrap();
        flatten(&value)
            .into_iter()
            .map(|m| (m.path, m.number.to_string()))
            .collect()
    }

    #[test]
    fn numbers_get_dotted_paths_and_everything_else_is_skipped() {
        let found = paths(r#"{"b": {"y": 2.5, "x": 1}, "a": [3, true, "s", null], "c": "x"}"#);
        let expected = [("a.0", "3"), ("b.x", "1"), ("b.y", "2.5")];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(p, t)| (p.to_string(), t.to_string()))
            .collect();
        assert_eq!(found, expected);
    }

    #[test]
    fn array_elements_are_named_by_their_identity_fields_when_unique() {
        let named = paths(
            r#"{"s": [{"placement": "eplb", "strategy": "none", "ns": 5},
                      {"placement": "eplb", "strategy": "dual", "ns": 4}]}"#,
        );
        assert_eq!(named[0].0, "s.eplb/none.ns");
        assert_eq!(named[1].0, "s.eplb/dual.ns");
        let clashing = paths(r#"{"s": [{"name": "a", "ns": 5}, {"name": "a", "ns": 4}]}"#);
        assert_eq!(clashing[1].0, "s.1.ns");
    }
}
