//! Resource definitions: the builder users write, and the form recorded in `s3db.json`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::id::IdStrategy;
use super::partition::Partition;
use crate::codec::{Behavior, FieldMap};
use crate::error::{Error, Result};
use crate::key::check_part;
use crate::schema::{AttributeType, Schema};

/// Field names the resource layer adds when timestamps are on.
pub const CREATED_AT: &str = "created_at";
/// See [`CREATED_AT`].
pub const UPDATED_AT: &str = "updated_at";

/// How to create a resource: name, attributes in the compact rule syntax, behavior, partitions and
/// options.
///
/// ```
/// use s3db_core::{Behavior, ResourceConfig};
/// let users = ResourceConfig::new("users")
///     .attribute("name", "string|required|min:2")
///     .attribute("email", "email|required")
///     .attribute("address", serde_json::json!({"city": "string", "zip": "string|max:10"}))
///     .partition("byCity", ["region"])
///     .behavior(Behavior::BodyOverflow)
///     .timestamps(true);
/// ```
#[derive(Debug, Clone)]
pub struct ResourceConfig {
    pub(crate) name: String,
    pub(crate) attributes: Map<String, Value>,
    pub(crate) behavior: Behavior,
    pub(crate) partitions: BTreeMap<String, Vec<String>>,
    pub(crate) timestamps: bool,
    pub(crate) paranoid: bool,
    pub(crate) versioning: bool,
    pub(crate) id_strategy: IdStrategy,
}

impl ResourceConfig {
    /// A resource named `name` (letters, digits, `_`, `-`), no attributes yet, behavior
    /// `user-managed`, paranoid, no timestamps, no versioning, random ids.
    #[must_use]
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            attributes: Map::new(),
            behavior: Behavior::default(),
            partitions: BTreeMap::new(),
            timestamps: false,
            paranoid: true,
            versioning: false,
            id_strategy: IdStrategy::Random,
        }
    }

    /// Adds an attribute: a rule string (`"string|required|max:64"`) or a JSON object of nested
    /// attributes.
    #[must_use]
    pub fn attribute(mut self, name: impl Into<String>, rule: impl Into<Value>) -> Self {
        self.attributes.insert(name.into(), rule.into());
        self
    }

    /// Adds a named partition over some fields.
    #[must_use]
    pub fn partition<I, S>(mut self, name: impl Into<String>, fields: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.partitions
            .insert(name.into(), fields.into_iter().map(Into::into).collect());
        self
    }

    /// How records are split between metadata and body.
    #[must_use]
    pub fn behavior(mut self, behavior: Behavior) -> Self {
        self.behavior = behavior;
        self
    }

    /// Keep `created_at` and `updated_at` (RFC 3339) on every record.
    #[must_use]
    pub fn timestamps(mut self, on: bool) -> Self {
        self.timestamps = on;
        self
    }

    /// Refuse `delete_all` (on by default).
    #[must_use]
    pub fn paranoid(mut self, on: bool) -> Self {
        self.paranoid = on;
        self
    }

    /// Keep the previous version of each record under `resource=<r>/historical/id=<id>`.
    #[must_use]
    pub fn versioning(mut self, on: bool) -> Self {
        self.versioning = on;
        self
    }

    /// How ids are minted when an insert gives none.
    #[must_use]
    pub fn id_strategy(mut self, strategy: IdStrategy) -> Self {
        self.id_strategy = strategy;
        self
    }

    /// The resource's name.
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Checks the definition and compiles it.
    pub(crate) fn compile(&self) -> Result<(Schema, Vec<Partition>, StoredDefinition)> {
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 100
            && self
                .name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !name_ok {
            return Err(Error::BadSchema {
                attribute: String::new(),
                rule: self.name.clone(),
                reason: "resource names are 1-100 ASCII letters, digits, '_' or '-'".to_owned(),
            });
        }
        check_part(&format!("resource={}", self.name))?;
        let schema = Schema::parse(&self.attributes)?;
        let mut partitions = Vec::new();
        for (name, fields) in &self.partitions {
            let partition = Partition::new(name, fields.iter().cloned())?;
            for field in partition.fields() {
                let scalar = match schema.get(field).map(|a| &a.kind) {
                    Some(
                        AttributeType::String
                        | AttributeType::Number
                        | AttributeType::Integer
                        | AttributeType::Boolean
                        | AttributeType::Date
                        | AttributeType::Email
                        | AttributeType::Enum(_),
                    ) => true,
                    Some(_) => false,
                    None => {
                        return Err(Error::BadSchema {
                            attribute: field.clone(),
                            rule: format!("partition {name}"),
                            reason: "a partition field must be an attribute of the resource"
                                .to_owned(),
                        });
                    }
                };
                if !scalar {
                    return Err(Error::BadSchema {
                        attribute: field.clone(),
                        rule: format!("partition {name}"),
                        reason: "partition fields must be scalar (string, number, integer, boolean, date, email, enum); secrets cannot be partitioned".to_owned(),
                    });
                }
            }
            partitions.push(partition);
        }
        let stored = StoredDefinition {
            attributes: schema.to_json(),
            behavior: self.behavior,
            partitions: self.partitions.clone(),
            timestamps: self.timestamps,
            paranoid: self.paranoid,
            versioning: self.versioning,
            id_strategy: self.id_strategy.name().to_owned(),
        };
        Ok((schema, partitions, stored))
    }
}

/// One version of a resource's definition as recorded in `s3db.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredDefinition {
    pub(crate) attributes: Map<String, Value>,
    pub(crate) behavior: Behavior,
    #[serde(default)]
    pub(crate) partitions: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    pub(crate) timestamps: bool,
    #[serde(default = "default_true")]
    pub(crate) paranoid: bool,
    #[serde(default)]
    pub(crate) versioning: bool,
    #[serde(default)]
    pub(crate) id_strategy: String,
}

fn default_true() -> bool {
    true
}

impl StoredDefinition {
    /// The config this definition was made from (a custom id generator comes back as random ids).
    pub(crate) fn to_config(&self, name: &str) -> ResourceConfig {
        let id_strategy = match self.id_strategy.as_str() {
            "uuid-v7" => IdStrategy::UuidV7,
            "ulid" => IdStrategy::Ulid,
            _ => IdStrategy::Random,
        };
        ResourceConfig {
            name: name.to_owned(),
            attributes: self.attributes.clone(),
            behavior: self.behavior,
            partitions: self.partitions.clone(),
            timestamps: self.timestamps,
            paranoid: self.paranoid,
            versioning: self.versioning,
            id_strategy,
        }
    }

    /// The attribute names whose values are stored (top level), timestamps included.
    pub(crate) fn stored_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.attributes.keys().cloned().collect();
        if self.timestamps {
            names.push(CREATED_AT.to_owned());
            names.push(UPDATED_AT.to_owned());
        }
        names
    }
}

/// A resource as recorded in `s3db.json`: its versions and its field map (shared by all versions,
/// only ever extended).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct StoredResource {
    pub(crate) current_version: String,
    pub(crate) versions: BTreeMap<String, StoredDefinition>,
    pub(crate) fields: FieldMap,
}
