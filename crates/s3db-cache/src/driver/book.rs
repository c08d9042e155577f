//! Which keys a driver holds for one resource, by family, so that a write finds what it must
//! drop without looking at the rest: the record's own keys by its id, every collection key
//! (all of them are affected), and the partition keys (checked one by one; a resource has few
//! partition values cached compared to records).

use std::collections::{HashMap, HashSet};

use crate::key::{CacheKey, Family, Invalidation, Scope};

/// The keys a driver holds for one resource, by family; values are key paths.
#[derive(Debug, Default)]
pub(crate) struct ResourceBook {
    records: HashMap<String, Vec<String>>,
    collection: HashSet<String>,
    partitions: HashMap<String, CacheKey>,
    len: usize,
}

impl ResourceBook {
    /// Whether it holds no key.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// How many keys it holds.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Adds `key` (a no-op if it is there).
    pub(crate) fn add(&mut self, key: &CacheKey) {
        let path = key.path();
        let added = match key.family() {
            Family::Record { id } => {
                if let Some(paths) = self.records.get_mut(id.as_str()) {
                    let new = !paths.iter().any(|p| p == path);
                    if new {
                        paths.push(path.to_owned());
                    }
                    new
                } else {
                    self.records.insert(id.clone(), vec![path.to_owned()]);
                    true
                }
            }
            Family::Collection => {
                !self.collection.contains(path) && self.collection.insert(path.to_owned())
            }
            Family::Partition { .. } => {
                !self.partitions.contains_key(path)
                    && self
                        .partitions
                        .insert(path.to_owned(), key.clone())
                        .is_none()
            }
        };
        self.len += usize::from(added);
    }

    /// Forgets `key`; whether it was there.
    pub(crate) fn remove(&mut self, key: &CacheKey) -> bool {
        let removed = self.remove_key(key);
        self.len -= usize::from(removed);
        removed
    }

    fn remove_key(&mut self, key: &CacheKey) -> bool {
        let path = key.path();
        match key.family() {
            Family::Record { id } => {
                let Some(paths) = self.records.get_mut(id.as_str()) else {
                    return false;
                };
                let before = paths.len();
                paths.retain(|p| p != path);
                let removed = paths.len() != before;
                if paths.is_empty() {
                    self.records.remove(id.as_str());
                }
                removed
            }
            Family::Collection => self.collection.remove(path),
            Family::Partition { .. } => self.partitions.remove(path).is_some(),
        }
    }

    /// Forgets every key `invalidation` affects (of its resource: the caller picked the book)
    /// and appends their paths to `out`.
    pub(crate) fn take_affected(&mut self, invalidation: &Invalidation, out: &mut Vec<String>) {
        let before = out.len();
        self.take_affected_keys(invalidation, out);
        self.len = self.len.saturating_sub(out.len() - before);
    }

    fn take_affected_keys(&mut self, invalidation: &Invalidation, out: &mut Vec<String>) {
        match invalidation.scope() {
            Scope::Everything => {
                out.extend(self.records.drain().flat_map(|(_, paths)| paths));
                out.extend(self.collection.drain());
                out.extend(self.partitions.drain().map(|(path, _)| path));
            }
            Scope::Record { id, .. } => {
                if let Some(paths) = id.as_deref().and_then(|id| self.records.remove(id)) {
                    out.extend(paths);
                }
                out.extend(self.collection.drain());
                if !self.partitions.is_empty() {
                    self.partitions.retain(|path, key| {
                        let affected = invalidation.affects(key);
                        if affected {
                            out.push(path.clone());
                        }
                        !affected
                    });
                }
            }
        }
    }

    /// Forgets every key and appends their paths to `out`.
    pub(crate) fn take_all(&mut self, out: &mut Vec<String>) {
        out.extend(self.records.drain().flat_map(|(_, paths)| paths));
        out.extend(self.collection.drain());
        out.extend(self.partitions.drain().map(|(path, _)| path));
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get(id: &str) -> CacheKey {
        CacheKey::new("u", "v1", Family::Record { id: id.into() }, "get", None)
    }

    fn part(region: &str) -> CacheKey {
        CacheKey::new(
            "u",
            "v1",
            Family::Partition {
                name: "byRegion".into(),
                values: [("region".to_owned(), json!(region))].into(),
            },
            "count",
            None,
        )
    }

    #[test]
    fn a_write_takes_exactly_what_it_affects() {
        let mut book = ResourceBook::default();
        let exists_a = CacheKey::new("u", "v1", Family::Record { id: "a".into() }, "exists", None);
        let count = CacheKey::new("u", "v1", Family::Collection, "count", None);
        for key in [
            get("a"),
            exists_a.clone(),
            get("b"),
            count.clone(),
            part("eu"),
            part("us"),
        ] {
            book.add(&key);
            book.add(&key);
        }
        assert_eq!(book.len(), 6);
        let data = json!({"region": "eu"})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let mut out = Vec::new();
        book.take_affected(
            &Invalidation::record("u", Some("a"), Some(vec![data])),
            &mut out,
        );
        out.sort();
        let mut expected = vec![
            get("a").path().to_owned(),
            exists_a.path().to_owned(),
            count.path().to_owned(),
            part("eu").path().to_owned(),
        ];
        expected.sort();
        assert_eq!(out, expected);
        assert_eq!(book.len(), 2, "b and us stay");
        assert!(book.remove(&get("b")));
        assert!(!book.remove(&get("b")));
        out.clear();
        book.take_affected(&Invalidation::resource("u"), &mut out);
        assert_eq!(out, [part("us").path().to_owned()]);
        assert!(book.is_empty());
    }
}
