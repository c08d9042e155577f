//! The `store` workload: the storage layer next to the raw `object_store` of the same backend.
//!
//! With N objects, layer and raw phases alternate (so drift of the backend hits both alike):
//!
//! 1. `put`: N sequential puts of a 200-byte body with 3 small metadata entries (`obj-00000`…);
//! 2. `get`: N sequential gets of those keys;
//! 3. `list`: one listing of the N keys (rates are keys per second);
//! 4. `put_conc` / `get_conc`: N puts, then N gets, of new keys (`conc-00000`…) from 32 tasks;
//! 5. `update` (layer only): N sequential conditional updates, each with the ETag its put returned
//!    (no read in between).
//!
//! Raw phases write the same body with the same metadata as `object_store` attributes. Before the
//! phases, one warm-up object is written, read and deleted on each side (connections, caches).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    Attribute, AttributeValue, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload,
};
use s3db_core::store::open_object_store;
use s3db_core::{ETag, Key, Metadata, Store};

use crate::backend::{BackendKind, Target};
use crate::measure::{BoxError, CONCURRENCY, Measurement, concurrently};

/// Body size of every object, in bytes.
pub const BODY_BYTES: usize = 200;

/// Keys `object_store` returns per LIST request on S3 (for the raw request count).
const LIST_PAGE: u64 = 1000;

/// The result of one phase.
#[derive(Debug, Clone, PartialEq)]
pub struct Phase {
    /// Name of the phase (`put`, `get`, `list`, `put_conc`, `get_conc`, `update`).
    pub name: &'static str,
    /// The storage layer.
    pub layer: Measurement,
    /// The raw `object_store`, for phases that have a raw counterpart.
    pub raw: Option<Measurement>,
}

impl Phase {
    /// Layer ops/s divided by raw ops/s (below 1: the layer is slower).
    pub fn ratio(&self) -> Option<f64> {
        self.raw.map(|raw| self.layer.ops_per_s() / raw.ops_per_s())
    }
}

/// Every phase of one backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendResult {
    /// Which backend.
    pub backend: BackendKind,
    /// Its connection string, credentials redacted.
    pub connection: String,
    /// Objects per phase.
    pub n: usize,
    /// The phases, in the order they ran.
    pub phases: Vec<Phase>,
}

/// The data both sides write (also the raw put of the `resources` workload).
pub struct Payload {
    /// Body of the puts.
    body: Bytes,
    /// Body of the updates (different, so S3 gives a new ETag).
    update_body: Bytes,
    /// Metadata of the puts, for the layer.
    metadata: Metadata,
    /// Metadata of the updates.
    update_metadata: Metadata,
    /// The same metadata as `object_store` attributes, for raw puts.
    attributes: Attributes,
}

impl Payload {
    /// The bodies and metadata of the workload.
    pub fn new() -> Self {
        let body = |fill: u8| {
            let mut body = br#"{"id":"bench","data":""#.to_vec();
            body.resize(BODY_BYTES - 2, fill);
            body.extend_from_slice(b"\"}");
            Bytes::from(body)
        };
        let metadata = |rev: &str| {
            Metadata::new()
                .with("kind", "bench")
                .with("rev", rev)
                .with("owner", "s3db-bench")
        };
        let put_metadata = metadata("1");
        let attributes = put_metadata
            .iter()
            .map(|(k, v)| {
                (
                    Attribute::Metadata(k.to_owned().into()),
                    AttributeValue::from(v.to_owned()),
                )
            })
            .collect();
        Self {
            body: body(b'a'),
            update_body: body(b'b'),
            metadata: put_metadata,
            update_metadata: metadata("2"),
            attributes,
        }
    }

    fn put_options(&self) -> PutOptions {
        PutOptions {
            attributes: self.attributes.clone(),
            ..PutOptions::default()
        }
    }
}

/// Runs every phase on `target` with `n` objects.
pub async fn run(target: &Target, n: usize) -> Result<BackendResult, BoxError> {
    let store = Store::builder(target.layer_connection()?).build()?;
    let raw = open_object_store(&target.base)?;
    let payload = Arc::new(Payload::new());

    warm_up(&store, &raw, target, &payload).await?;

    let keys = names("obj", n)
        .map(|name| Key::parse(&name))
        .collect::<Result<Vec<_>, _>>()?;
    let raw_paths = names("obj", n)
        .map(|name| target.raw_path(&name))
        .collect::<Result<Vec<_>, _>>()?;
    let conc_keys: Arc<Vec<Key>> = Arc::new(
        names("conc", n)
            .map(|name| Key::parse(&name))
            .collect::<Result<_, _>>()?,
    );
    let conc_paths: Arc<Vec<Path>> = Arc::new(
        names("conc", n)
            .map(|name| target.raw_path(&name))
            .collect::<Result<_, _>>()?,
    );

    let mut phases = Vec::new();

    // put
    let (layer, etags) = layer_put(&store, &keys, &payload).await?;
    let raw_m = raw_put(&raw, &raw_paths, &payload).await?;
    phases.push(Phase {
        name: "put",
        layer,
        raw: Some(raw_m),
    });

    // get
    let layer = layer_get(&store, &keys).await?;
    let raw_m = raw_get(&raw, &raw_paths).await?;
    phases.push(Phase {
        name: "get",
        layer,
        raw: Some(raw_m),
    });

    // list
    let layer = layer_list(&store, n).await?;
    let raw_m = raw_list(&raw, &target.raw_root()?, n).await?;
    phases.push(Phase {
        name: "list",
        layer,
        raw: Some(raw_m),
    });

    // put_conc
    let before = store.requests();
    let elapsed = {
        let (store, keys, payload) = (store.clone(), Arc::clone(&conc_keys), Arc::clone(&payload));
        concurrently(n, CONCURRENCY, move |i| {
            let (store, keys, payload) = (store.clone(), Arc::clone(&keys), Arc::clone(&payload));
            async move {
                store
                    .put(&keys[i], &payload.metadata, payload.body.clone())
                    .await?;
                Ok(())
            }
        })
        .await?
    };
    let layer = Measurement::new(n, elapsed, store.requests().since(&before).total());
    let elapsed = {
        let (raw, paths, payload) = (
            Arc::clone(&raw),
            Arc::clone(&conc_paths),
            Arc::clone(&payload),
        );
        concurrently(n, CONCURRENCY, move |i| {
            let (raw, paths, payload) =
                (Arc::clone(&raw), Arc::clone(&paths), Arc::clone(&payload));
            async move {
                raw.put_opts(
                    &paths[i],
                    PutPayload::from_bytes(payload.body.clone()),
                    payload.put_options(),
                )
                .await?;
                Ok(())
            }
        })
        .await?
    };
    phases.push(Phase {
        name: "put_conc",
        layer,
        raw: Some(Measurement::new(n, elapsed, n as u64)),
    });

    // get_conc
    let before = store.requests();
    let elapsed = {
        let (store, keys) = (store.clone(), Arc::clone(&conc_keys));
        concurrently(n, CONCURRENCY, move |i| {
            let (store, keys) = (store.clone(), Arc::clone(&keys));
            async move { check_body(store.get(&keys[i]).await?.body.len()) }
        })
        .await?
    };
    let layer = Measurement::new(n, elapsed, store.requests().since(&before).total());
    let elapsed = {
        let (raw, paths) = (Arc::clone(&raw), Arc::clone(&conc_paths));
        concurrently(n, CONCURRENCY, move |i| {
            let (raw, paths) = (Arc::clone(&raw), Arc::clone(&paths));
            async move { check_body(raw.get(&paths[i]).await?.bytes().await?.len()) }
        })
        .await?
    };
    phases.push(Phase {
        name: "get_conc",
        layer,
        raw: Some(Measurement::new(n, elapsed, n as u64)),
    });

    // update
    let layer = layer_update(&store, &keys, &etags, &payload).await?;
    phases.push(Phase {
        name: "update",
        layer,
        raw: None,
    });

    Ok(BackendResult {
        backend: target.kind,
        connection: target.description(),
        n,
        phases,
    })
}

/// `prefix-00000`, `prefix-00001`, … (`n` names).
pub fn names(prefix: &str, n: usize) -> impl Iterator<Item = String> + '_ {
    (0..n).map(move |i| format!("{prefix}-{i:05}"))
}

/// Fails unless a body read back has the size written.
fn check_body(len: usize) -> Result<(), BoxError> {
    if len == BODY_BYTES {
        Ok(())
    } else {
        Err(format!("read a body of {len} bytes, wrote {BODY_BYTES}").into())
    }
}

/// Writes, reads and deletes one object on each side, outside any measurement.
async fn warm_up(
    store: &Store,
    raw: &Arc<dyn ObjectStore>,
    target: &Target,
    payload: &Payload,
) -> Result<(), BoxError> {
    let key = Key::parse("warm-up")?;
    store
        .put(&key, &payload.metadata, payload.body.clone())
        .await?;
    check_body(store.get(&key).await?.body.len())?;
    store.delete(&key).await?;
    let path = target.raw_path("warm-up")?;
    raw.put_opts(
        &path,
        PutPayload::from_bytes(payload.body.clone()),
        payload.put_options(),
    )
    .await?;
    check_body(raw.get(&path).await?.bytes().await?.len())?;
    raw.delete(&path).await?;
    Ok(())
}

/// Sequential layer puts; returns the measurement and the ETag of every key.
async fn layer_put(
    store: &Store,
    keys: &[Key],
    payload: &Payload,
) -> Result<(Measurement, Vec<ETag>), BoxError> {
    let before = store.requests();
    let started = Instant::now();
    let mut etags = Vec::with_capacity(keys.len());
    for key in keys {
        etags.push(
            store
                .put(key, &payload.metadata, payload.body.clone())
                .await?,
        );
    }
    let elapsed = started.elapsed();
    let requests = store.requests().since(&before).total();
    Ok((Measurement::new(keys.len(), elapsed, requests), etags))
}

/// Sequential raw puts with the same metadata as attributes.
pub async fn raw_put(
    raw: &Arc<dyn ObjectStore>,
    paths: &[Path],
    payload: &Payload,
) -> Result<Measurement, BoxError> {
    let started = Instant::now();
    for path in paths {
        raw.put_opts(
            path,
            PutPayload::from_bytes(payload.body.clone()),
            payload.put_options(),
        )
        .await?;
    }
    Ok(Measurement::new(
        paths.len(),
        started.elapsed(),
        paths.len() as u64,
    ))
}

/// Sequential layer gets.
async fn layer_get(store: &Store, keys: &[Key]) -> Result<Measurement, BoxError> {
    let before = store.requests();
    let started = Instant::now();
    for key in keys {
        check_body(store.get(key).await?.body.len())?;
    }
    let elapsed = started.elapsed();
    let requests = store.requests().since(&before).total();
    Ok(Measurement::new(keys.len(), elapsed, requests))
}

/// Sequential raw gets (body included).
async fn raw_get(raw: &Arc<dyn ObjectStore>, paths: &[Path]) -> Result<Measurement, BoxError> {
    let started = Instant::now();
    for path in paths {
        check_body(raw.get(path).await?.bytes().await?.len())?;
    }
    Ok(Measurement::new(
        paths.len(),
        started.elapsed(),
        paths.len() as u64,
    ))
}

/// One layer listing of the whole database (which holds exactly `n` keys at this point).
async fn layer_list(store: &Store, n: usize) -> Result<Measurement, BoxError> {
    let before = store.requests();
    let started = Instant::now();
    let listed = store
        .list(None)
        .try_fold(0usize, |count, _| async move { Ok(count + 1) })
        .await?;
    let elapsed = started.elapsed();
    let requests = store.requests().since(&before).total();
    check_listed(listed, n)?;
    Ok(Measurement::new(listed, elapsed, requests))
}

/// One raw listing below the raw prefix (which holds exactly `n` objects at this point).
async fn raw_list(
    raw: &Arc<dyn ObjectStore>,
    root: &Path,
    n: usize,
) -> Result<Measurement, BoxError> {
    let started = Instant::now();
    let listed = raw
        .list(Some(root))
        .try_fold(0usize, |count, _| async move { Ok(count + 1) })
        .await?;
    let elapsed = started.elapsed();
    check_listed(listed, n)?;
    let requests = (listed as u64).div_ceil(LIST_PAGE).max(1);
    Ok(Measurement::new(listed, elapsed, requests))
}

/// Fails unless a listing returned the `n` keys written.
fn check_listed(listed: usize, n: usize) -> Result<(), BoxError> {
    if listed == n {
        Ok(())
    } else {
        Err(format!("listed {listed} keys, expected {n}").into())
    }
}

/// Sequential conditional updates, each with the ETag of the key's previous write.
async fn layer_update(
    store: &Store,
    keys: &[Key],
    etags: &[ETag],
    payload: &Payload,
) -> Result<Measurement, BoxError> {
    let before = store.requests();
    let started = Instant::now();
    for (key, etag) in keys.iter().zip(etags) {
        store
            .update(
                key,
                &payload.update_metadata,
                payload.update_body.clone(),
                etag,
            )
            .await?;
    }
    let elapsed = started.elapsed();
    let requests = store.requests().since(&before).total();
    Ok(Measurement::new(keys.len(), elapsed, requests))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{Prepared, prepare};

    #[test]
    fn bodies_have_the_advertised_size() {
        let payload = Payload::new();
        assert_eq!(payload.body.len(), BODY_BYTES);
        assert_eq!(payload.update_body.len(), BODY_BYTES);
        assert_ne!(payload.body, payload.update_body);
        assert_eq!(payload.attributes.len(), 3);
        assert!(payload.metadata.check().is_ok());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_every_phase_on_memory_and_file() -> Result<(), BoxError> {
        for kind in [BackendKind::Memory, BackendKind::File] {
            let Prepared::Ready(target) = prepare(kind, crate::backend::run_id())? else {
                return Err("memory and file are always available".into());
            };
            let result = run(&target, 40).await?;
            let names: Vec<_> = result.phases.iter().map(|p| p.name).collect();
            assert_eq!(
                names,
                ["put", "get", "list", "put_conc", "get_conc", "update"]
            );
            for phase in &result.phases {
                assert_eq!(phase.layer.ops, 40);
                let expected = if phase.name == "list" { 1 } else { 40 };
                assert_eq!(phase.layer.requests, expected, "{kind} {}", phase.name);
            }
        }
        Ok(())
    }
}
