//! What the audit needs to know about a user resource, from its definition
//! ([`Resource::definition`]): its partitions' fields and which attributes are secrets.

use serde_json::{Map, Value};

use s3db_core::plugin::{Resource, ResourceDefinition};

use crate::entry::SECRET_MASK;

/// One resource's partitions and secret attributes.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Shape {
    /// Partition name and its fields, in name order.
    partitions: Vec<(String, Vec<String>)>,
    /// Dotted paths of the secret attributes.
    secret_paths: Vec<String>,
}

impl Shape {
    /// The shape of a definition.
    pub(crate) fn of(definition: &ResourceDefinition) -> Self {
        Self {
            partitions: definition
                .partitions()
                .iter()
                .map(|p| (p.name().to_owned(), p.fields().to_vec()))
                .collect(),
            secret_paths: definition.secret_paths(),
        }
    }

    /// The shape of a resource's current definition.
    pub(crate) fn of_resource(resource: &Resource) -> Self {
        Self::of(&resource.definition())
    }

    /// Every partition in which `data` has a value: `{name: {field: value}}` (fields missing from
    /// the data are null), in name order.
    pub(crate) fn partition_values(&self, data: &Map<String, Value>) -> Map<String, Value> {
        let mut out = Map::new();
        for (name, fields) in &self.partitions {
            let values: Map<String, Value> = fields
                .iter()
                .map(|f| (f.clone(), data.get(f).cloned().unwrap_or(Value::Null)))
                .collect();
            if values.values().any(|v| !v.is_null()) {
                out.insert(name.clone(), Value::Object(values));
            }
        }
        out
    }

    /// `data` with every secret attribute's value (not null) replaced by [`SECRET_MASK`].
    pub(crate) fn mask_secrets(&self, mut data: Map<String, Value>) -> Map<String, Value> {
        for path in &self.secret_paths {
            mask(&mut data, path);
        }
        data
    }
}

/// Masks the value at the dotted `path` of `data`, if there is one.
fn mask(data: &mut Map<String, Value>, path: &str) {
    let (head, rest) = match path.split_once('.') {
        Some((head, rest)) => (head, Some(rest)),
        None => (path, None),
    };
    match (data.get_mut(head), rest) {
        (Some(Value::Object(inner)), Some(rest)) => mask(inner, rest),
        (Some(value), None) if !value.is_null() => *value = Value::String(SECRET_MASK.to_owned()),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn shape() -> Shape {
        Shape {
            partitions: vec![
                ("byRegion".to_owned(), vec!["region".to_owned()]),
                (
                    "byRegionName".to_owned(),
                    vec!["name".to_owned(), "region".to_owned()],
                ),
            ],
            secret_paths: vec!["api_key".to_owned(), "address.pin".to_owned()],
        }
    }

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn masks_secrets_and_lists_partition_values() {
        let shape = shape();
        let data = object(
            json!({"name": "Ann", "api_key": "k", "address": {"pin": "1234", "city": "Rio"}}),
        );
        assert_eq!(
            Value::Object(shape.mask_secrets(data.clone())),
            json!({"name": "Ann", "api_key": "***", "address": {"pin": "***", "city": "Rio"}})
        );
        // A missing or null secret stays as it is.
        let partial = object(json!({"api_key": null, "address": "not an object"}));
        assert_eq!(shape.mask_secrets(partial.clone()), partial);
        // byRegion has no value: left out; byRegionName has one.
        assert_eq!(
            Value::Object(shape.partition_values(&data)),
            json!({"byRegionName": {"name": "Ann", "region": null}})
        );
    }

    #[test]
    fn a_plain_resource_has_an_empty_shape() {
        let shape = Shape::default();
        let data = object(json!({"a": 1}));
        assert_eq!(shape.mask_secrets(data.clone()), data);
        assert!(shape.partition_values(&data).is_empty());
    }
}
