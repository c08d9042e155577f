//! Fault injection for tests (feature `testing`): an [`ObjectStore`] decorator that fails chosen
//! requests with a transient error and can add latency, so reliability tests can prove that
//! nothing is lost when S3 misbehaves.
//!
//! Three failure modes ([`FaultMode`]) matter for a database over S3:
//! - the request fails before it reaches the store (nothing happened);
//! - the request reaches the store but its answer is lost ([`FaultPlan::answer_lost`]): the
//!   write happened, yet the caller sees an error. Conditional writes must cope with both;
//! - the request never answers (the process froze or died mid-request).
//!
//! A [`FaultPlan`] says which requests fail: by number ([`FaultPlan::fail_nth`]), by chance
//! ([`FaultPlan::fail_fraction`]) or all of them ([`FaultPlan::fail_all`]), among the requests it
//! targets ([`FaultPlan::only_kinds`], [`FaultPlan::only_keys`] and its shorthands), after letting
//! the first few through ([`FaultPlan::skip`]).
//!
//! A [`FaultSwitch`] changes the plan at run time, so a test can break the store between two
//! steps and repair it afterwards:
//!
//! ```
//! # use std::sync::Arc;
//! # use s3db_core::RequestKind;
//! # use s3db_core::testing::{FaultMode, FaultPlan, FaultSwitch, FaultyStore};
//! let switch = FaultSwitch::new(); // disarmed: nothing fails yet
//! let inner: Arc<dyn object_store::ObjectStore> = Arc::new(object_store::memory::InMemory::new());
//! let store = FaultyStore::switched(inner, &switch); // e.g. in `Database::builder().store_layer`
//! // … steps that must succeed …
//! switch.arm(
//!     FaultPlan::new()
//!         .only_kinds([RequestKind::Put])
//!         .keys_containing(["resource=wallets/data/"])
//!         .skip(1)
//!         .fail_all()
//!         .mode(FaultMode::AnswerLost),
//! );
//! // … the step that must fail on its second matching PUT …
//! switch.disarm();
//! assert_eq!(switch.hits(), 0); // no request was made here
//! # drop(store);
//! ```

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::accounting::RequestKind;

/// What an injected fault does to the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FaultMode {
    /// Fail before the store sees the request (nothing happened).
    #[default]
    Fail,
    /// Let the store apply the request, then fail: the answer is lost.
    AnswerLost,
    /// Never answer (the process froze or died mid-request). Abort the caller to end it.
    Hang,
}

type KeyFilter = Arc<dyn Fn(&str) -> bool + Send + Sync>;

/// Which requests fail, and how.
///
/// A request is *targeted* when its kind is among [`FaultPlan::only_kinds`] (every kind without
/// it) and its key passes every [`FaultPlan::only_keys`] filter. Requests that are not targeted
/// are neither counted nor failed. Of the targeted ones, the first [`FaultPlan::skip`] go through;
/// the others fail when they are the `n`-th of a [`FaultPlan::fail_nth`] (counted among targeted
/// requests of that kind) or by chance ([`FaultPlan::fail_fraction`]).
#[derive(Clone, Default)]
pub struct FaultPlan {
    fraction: f64,
    nth: Vec<(RequestKind, u64)>,
    mode: FaultMode,
    latency: Option<Duration>,
    seed: u64,
    kinds: Option<Vec<RequestKind>>,
    keys: Vec<KeyFilter>,
    skip: u64,
}

impl FaultPlan {
    /// A plan that injects nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Fail this fraction (0.0–1.0) of the targeted requests, chosen at random.
    #[must_use]
    pub fn fail_fraction(mut self, fraction: f64) -> Self {
        self.fraction = fraction.clamp(0.0, 1.0);
        self
    }

    /// Fail every targeted request (after the [`FaultPlan::skip`]ped ones).
    #[must_use]
    pub fn fail_all(self) -> Self {
        self.fail_fraction(1.0)
    }

    /// Fail the `n`-th targeted request (1-based) of `kind`.
    #[must_use]
    pub fn fail_nth(mut self, kind: RequestKind, n: u64) -> Self {
        self.nth.push((kind, n));
        self
    }

    /// Let failing requests reach the store first and lose only the answer
    /// ([`FaultMode::AnswerLost`]; `false`: [`FaultMode::Fail`]).
    #[must_use]
    pub fn answer_lost(self, lost: bool) -> Self {
        self.mode(if lost {
            FaultMode::AnswerLost
        } else {
            FaultMode::Fail
        })
    }

    /// What failing requests do (default [`FaultMode::Fail`]).
    #[must_use]
    pub fn mode(mut self, mode: FaultMode) -> Self {
        self.mode = mode;
        self
    }

    /// Delay every request by this much (targeted or not).
    #[must_use]
    pub fn latency(mut self, latency: Duration) -> Self {
        self.latency = Some(latency);
        self
    }

    /// Seed of the random choice (the default seed is 0, so runs repeat).
    #[must_use]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Target only requests of these kinds (`put_opts` is [`RequestKind::Put`], a delete
    /// [`RequestKind::Delete`], a `head` [`RequestKind::Head`], a multipart upload
    /// [`RequestKind::Post`]).
    #[must_use]
    pub fn only_kinds(mut self, kinds: impl IntoIterator<Item = RequestKind>) -> Self {
        self.kinds = Some(kinds.into_iter().collect());
        self
    }

    /// Target only requests whose key passes `filter` (the full key as the backing store sees
    /// it, store prefix included; for a listing its prefix, for a copy its destination). Filters
    /// add up: a key must pass all of them.
    #[must_use]
    pub fn only_keys(mut self, filter: impl Fn(&str) -> bool + Send + Sync + 'static) -> Self {
        self.keys.push(Arc::new(filter));
        self
    }

    /// Target only keys that contain one of `needles` (e.g. `resource=wallets/data/`).
    #[must_use]
    pub fn keys_containing<S: Into<String>>(self, needles: impl IntoIterator<Item = S>) -> Self {
        let needles: Vec<String> = needles.into_iter().map(Into::into).collect();
        self.only_keys(move |key| needles.iter().any(|n| key.contains(n.as_str())))
    }

    /// Target only keys with this whole `/`-separated part (e.g. `resource=plg_audits`).
    #[must_use]
    pub fn key_part(self, part: impl Into<String>) -> Self {
        let part = part.into();
        self.only_keys(move |key| key.split('/').any(|p| p == part))
    }

    /// Let the first `n` targeted requests through, whatever the rest of the plan says.
    #[must_use]
    pub fn skip(mut self, n: u64) -> Self {
        self.skip = n;
        self
    }

    fn targets(&self, kind: RequestKind, key: &str) -> bool {
        self.kinds
            .as_ref()
            .is_none_or(|kinds| kinds.contains(&kind))
            && self.keys.iter().all(|filter| filter(key))
    }
}

impl fmt::Debug for FaultPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultPlan")
            .field("fraction", &self.fraction)
            .field("nth", &self.nth)
            .field("mode", &self.mode)
            .field("latency", &self.latency)
            .field("seed", &self.seed)
            .field("kinds", &self.kinds)
            .field("key_filters", &self.keys.len())
            .field("skip", &self.skip)
            .finish()
    }
}

/// The error of an injected fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("injected transient fault on {kind} request #{n}")]
pub struct InjectedFault {
    /// Kind of the failed request.
    pub kind: RequestKind,
    /// Its 1-based number among targeted requests of that kind (since the plan was armed).
    pub n: u64,
}

/// The decorator.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<FaultState>,
}

/// The plan in force, with its counts.
#[derive(Debug)]
struct Armed {
    plan: FaultPlan,
    counts: [u64; 7],
    targeted: u64,
    hits: u64,
    rng: StdRng,
}

impl Armed {
    fn new(plan: FaultPlan) -> Self {
        Self {
            rng: StdRng::seed_from_u64(plan.seed),
            plan,
            counts: [0; 7],
            targeted: 0,
            hits: 0,
        }
    }
}

#[derive(Debug)]
struct FaultState {
    armed: Mutex<Armed>,
    injected: AtomicU64,
}

impl FaultState {
    fn new(plan: FaultPlan) -> Self {
        Self {
            armed: Mutex::new(Armed::new(plan)),
            injected: AtomicU64::new(0),
        }
    }

    fn armed(&self) -> MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl FaultyStore {
    /// Wraps `inner` with `plan` (which a [`FaultyStore::switch`] can replace later).
    pub fn new(inner: Arc<dyn ObjectStore>, plan: FaultPlan) -> Self {
        Self {
            inner,
            state: Arc::new(FaultState::new(plan)),
        }
    }

    /// Wraps `inner` under the plan `switch` arms (nothing while it is disarmed). Stores wrapped
    /// with the same switch share its plan and counts.
    pub fn switched(inner: Arc<dyn ObjectStore>, switch: &FaultSwitch) -> Self {
        Self {
            inner,
            state: Arc::clone(&switch.0),
        }
    }

    /// How many faults were injected so far.
    #[must_use]
    pub fn injected(&self) -> u64 {
        self.state.injected.load(Ordering::Relaxed)
    }

    /// A handle that reads the injected count after the store was moved into a database.
    #[must_use]
    pub fn counter(&self) -> FaultCounter {
        FaultCounter(Arc::clone(&self.state))
    }

    /// A handle that changes this store's plan at run time.
    #[must_use]
    pub fn switch(&self) -> FaultSwitch {
        FaultSwitch(Arc::clone(&self.state))
    }
}

/// Reads how many faults a [`FaultyStore`] injected.
#[derive(Debug, Clone)]
pub struct FaultCounter(Arc<FaultState>);

impl FaultCounter {
    /// Faults injected so far (under every plan armed so far).
    #[must_use]
    pub fn injected(&self) -> u64 {
        self.0.injected.load(Ordering::Relaxed)
    }

    /// A handle that changes the store's plan at run time.
    #[must_use]
    pub fn switch(&self) -> FaultSwitch {
        FaultSwitch(Arc::clone(&self.0))
    }
}

/// Changes the plan of a [`FaultyStore`] at run time: [`FaultSwitch::arm`] puts a plan in force,
/// [`FaultSwitch::disarm`] stops every fault (and latency). Cloning gives another handle on the
/// same store(s). Make one with [`FaultSwitch::new`] before the store (then
/// [`FaultyStore::switched`]), or take it from [`FaultyStore::switch`] or
/// [`FaultCounter::switch`].
#[derive(Debug, Clone)]
pub struct FaultSwitch(Arc<FaultState>);

impl Default for FaultSwitch {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultSwitch {
    /// A disarmed switch.
    #[must_use]
    pub fn new() -> Self {
        Self(Arc::new(FaultState::new(FaultPlan::new())))
    }

    /// Puts `plan` in force from the next request on, counting afresh: its `fail_nth` numbers,
    /// `skip` and [`FaultSwitch::hits`] start from zero and its random choice from its seed.
    /// Requests already decided are not affected.
    pub fn arm(&self, plan: FaultPlan) {
        *self.0.armed() = Armed::new(plan);
    }

    /// Stops injecting: the plan becomes [`FaultPlan::new`]. [`FaultSwitch::hits`] keeps the
    /// count of the last arming.
    pub fn disarm(&self) {
        let mut armed = self.0.armed();
        let hits = armed.hits;
        *armed = Armed::new(FaultPlan::new());
        armed.hits = hits;
    }

    /// Faults injected since the last [`FaultSwitch::arm`].
    #[must_use]
    pub fn hits(&self) -> u64 {
        self.0.armed().hits
    }

    /// Faults injected so far, under every plan.
    #[must_use]
    pub fn injected(&self) -> u64 {
        self.0.injected.load(Ordering::Relaxed)
    }
}

impl FaultState {
    /// Decides whether this request fails, and how.
    fn decide(&self, kind: RequestKind, key: &str) -> Option<(InjectedFault, FaultMode)> {
        let mut armed = self.armed();
        let armed = &mut *armed;
        if !armed.plan.targets(kind, key) {
            return None;
        }
        armed.counts[kind as usize] += 1;
        let n = armed.counts[kind as usize];
        armed.targeted += 1;
        if armed.targeted <= armed.plan.skip {
            return None;
        }
        let by_number = armed.plan.nth.iter().any(|&(k, nth)| k == kind && nth == n);
        let by_chance = armed.plan.fraction > 0.0 && armed.rng.random_bool(armed.plan.fraction);
        (by_number || by_chance).then(|| {
            armed.hits += 1;
            self.injected.fetch_add(1, Ordering::Relaxed);
            (InjectedFault { kind, n }, armed.plan.mode)
        })
    }

    async fn delay(&self) {
        let latency = self.armed().plan.latency;
        if let Some(latency) = latency {
            tokio::time::sleep(latency).await;
        }
    }
}

fn to_error(fault: InjectedFault) -> object_store::Error {
    object_store::Error::Generic {
        store: "FaultyStore",
        source: Box::new(fault),
    }
}

impl fmt::Debug for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultyStore")
            .field("inner", &format_args!("{}", self.inner))
            .field("plan", &self.state.armed().plan)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl FaultyStore {
    /// Runs `call` under the plan for one request of `kind` on `key`.
    async fn run<T, Fut>(&self, kind: RequestKind, key: &str, call: Fut) -> object_store::Result<T>
    where
        Fut: Future<Output = object_store::Result<T>>,
    {
        self.state.delay().await;
        match self.state.decide(kind, key) {
            None => call.await,
            Some((fault, FaultMode::Fail)) => Err(to_error(fault)),
            Some((fault, FaultMode::AnswerLost)) => {
                let _ = call.await;
                Err(to_error(fault))
            }
            Some((_, FaultMode::Hang)) => futures::future::pending().await,
        }
    }

    /// A listing under the plan: one request, decided when the listing starts.
    fn list_under_plan(
        &self,
        prefix: Option<&Path>,
        list: impl FnOnce() -> BoxStream<'static, object_store::Result<ObjectMeta>>,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let key = prefix.map_or("", Path::as_ref);
        match self.state.decide(RequestKind::List, key) {
            None => list(),
            Some((fault, FaultMode::Fail | FaultMode::AnswerLost)) => {
                stream::once(async move { Err(to_error(fault)) }).boxed()
            }
            Some((_, FaultMode::Hang)) => stream::pending().boxed(),
        }
    }
}

#[async_trait]
impl ObjectStore for FaultyStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        self.run(
            RequestKind::Put,
            location.as_ref(),
            self.inner.put_opts(location, payload, opts),
        )
        .await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.run(
            RequestKind::Post,
            location.as_ref(),
            self.inner.put_multipart_opts(location, opts),
        )
        .await
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        let kind = if options.head {
            RequestKind::Head
        } else {
            RequestKind::Get
        };
        self.run(
            kind,
            location.as_ref(),
            self.inner.get_opts(location, options),
        )
        .await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.run(
            RequestKind::Get,
            location.as_ref(),
            self.inner.get_ranges(location, ranges),
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let inner = Arc::clone(&self.inner);
        let state = Arc::clone(&self.state);
        locations
            .then(move |location| {
                let inner = Arc::clone(&inner);
                let state = Arc::clone(&state);
                async move {
                    let location = location?;
                    state.delay().await;
                    match state.decide(RequestKind::Delete, location.as_ref()) {
                        None => {}
                        Some((fault, FaultMode::Fail)) => return Err(to_error(fault)),
                        Some((fault, FaultMode::AnswerLost)) => {
                            let _ = inner
                                .delete_stream(stream::iter([Ok(location)]).boxed())
                                .next()
                                .await;
                            return Err(to_error(fault));
                        }
                        Some((_, FaultMode::Hang)) => return futures::future::pending().await,
                    }
                    match inner
                        .delete_stream(stream::iter([Ok(location.clone())]).boxed())
                        .next()
                        .await
                    {
                        Some(result) => result,
                        None => Ok(location),
                    }
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_under_plan(prefix, || self.inner.list(prefix))
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.list_under_plan(prefix, || self.inner.list_with_offset(prefix, offset))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.run(
            RequestKind::List,
            prefix.map_or("", Path::as_ref),
            self.inner.list_with_delimiter(prefix),
        )
        .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.run(
            RequestKind::Copy,
            to.as_ref(),
            self.inner.copy_opts(from, to, options),
        )
        .await
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn store(plan: FaultPlan) -> (FaultyStore, Arc<dyn ObjectStore>) {
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        (FaultyStore::new(Arc::clone(&inner), plan), inner)
    }

    async fn put(store: &dyn ObjectStore, key: &str) -> object_store::Result<PutResult> {
        store.put(&Path::from(key), PutPayload::from("x")).await
    }

    async fn exists(store: &dyn ObjectStore, key: &str) -> bool {
        store.head(&Path::from(key)).await.is_ok()
    }

    fn injected(err: &object_store::Error) -> Option<&InjectedFault> {
        match err {
            object_store::Error::Generic { source, .. } => source.downcast_ref(),
            _ => None,
        }
    }

    #[tokio::test]
    async fn fail_nth_without_targets_counts_every_request_of_the_kind() -> TestResult {
        let (faulty, _) = store(FaultPlan::new().fail_nth(RequestKind::Put, 2));
        put(&faulty, "a").await?;
        let err = put(&faulty, "b").await.err().ok_or("the 2nd PUT fails")?;
        assert!(
            matches!(injected(&err), Some(f) if f.kind == RequestKind::Put && f.n == 2),
            "{err}"
        );
        put(&faulty, "c").await?;
        assert_eq!(faulty.injected(), 1);
        Ok(())
    }

    #[tokio::test]
    async fn only_targeted_keys_and_kinds_fail() -> TestResult {
        let (faulty, inner) = store(
            FaultPlan::new()
                .only_kinds([RequestKind::Put])
                .keys_containing(["res=a/", "/locks/"])
                .fail_all(),
        );
        assert!(put(&faulty, "p/res=a/1").await.is_err());
        assert!(put(&faulty, "p/locks/1").await.is_err());
        put(&faulty, "p/res=ab/1").await?;
        put(&inner, "p/res=a/2").await?;
        assert!(exists(&faulty, "p/res=a/2").await, "GETs are not targeted");
        faulty.delete(&Path::from("p/res=a/2")).await?;
        assert!(!exists(&inner, "p/res=a/1").await);
        assert_eq!(faulty.injected(), 2);

        // A whole key part, and filters that add up.
        let (faulty, _) = store(
            FaultPlan::new()
                .key_part("resource=plg_audits")
                .only_keys(|key| key.ends_with(".json"))
                .fail_all(),
        );
        assert!(
            put(&faulty, "p/resource=plg_audits/data/1.json")
                .await
                .is_err()
        );
        put(&faulty, "p/resource=plg_audits/data/1.bin").await?;
        put(&faulty, "p/resource=plg_audits_x/data/1.json").await?;
        put(&faulty, "p/x-resource=plg_audits/1.json").await?;
        Ok(())
    }

    #[tokio::test]
    async fn skip_lets_the_first_targeted_requests_through() -> TestResult {
        let (faulty, _) = store(
            FaultPlan::new()
                .only_kinds([RequestKind::Put])
                .keys_containing(["t/"])
                .skip(2)
                .fail_all(),
        );
        put(&faulty, "other").await?; // not targeted: not counted
        put(&faulty, "t/1").await?;
        put(&faulty, "other").await?;
        put(&faulty, "t/2").await?;
        let err = put(&faulty, "t/3").await.err().ok_or("the 3rd fails")?;
        assert!(matches!(injected(&err), Some(f) if f.n == 3), "{err}");
        assert!(put(&faulty, "t/4").await.is_err());
        assert_eq!(faulty.switch().hits(), 2);
        Ok(())
    }

    #[tokio::test]
    async fn a_switch_turns_faults_on_and_off() -> TestResult {
        let switch = FaultSwitch::new();
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = FaultyStore::switched(inner, &switch);
        let counter = faulty.counter();
        put(&faulty, "a").await?;
        assert_eq!(switch.hits(), 0);

        switch.arm(FaultPlan::new().fail_nth(RequestKind::Put, 2));
        put(&faulty, "b").await?;
        assert!(put(&faulty, "c").await.is_err());
        assert_eq!(switch.hits(), 1);
        switch.disarm();
        put(&faulty, "c").await?;
        assert_eq!(switch.hits(), 1, "kept after disarming");

        // Arming again counts afresh; another handle on the same store works the same.
        let other = counter.switch();
        other.arm(FaultPlan::new().fail_nth(RequestKind::Put, 2));
        assert_eq!(switch.hits(), 0);
        put(&faulty, "d").await?;
        assert!(put(&faulty, "e").await.is_err());
        other.disarm();
        assert_eq!((counter.injected(), switch.injected()), (2, 2));
        Ok(())
    }

    #[tokio::test]
    async fn the_modes_fail_before_or_lose_the_answer() -> TestResult {
        let switch = FaultSwitch::new();
        let inner: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let faulty = FaultyStore::switched(Arc::clone(&inner), &switch);
        let puts = |mode| {
            FaultPlan::new()
                .only_kinds([RequestKind::Put])
                .fail_all()
                .mode(mode)
        };

        switch.arm(puts(FaultMode::Fail));
        assert!(put(&faulty, "fail").await.is_err());
        assert!(!exists(&inner, "fail").await, "never reached the store");

        switch.arm(puts(FaultMode::AnswerLost));
        assert!(put(&faulty, "lost").await.is_err());
        assert!(exists(&inner, "lost").await, "applied, answer lost");

        switch.arm(puts(FaultMode::Hang));
        let hung = tokio::time::timeout(Duration::from_millis(50), put(&faulty, "hang")).await;
        assert!(hung.is_err(), "never answers");
        assert!(!exists(&inner, "hang").await);
        assert_eq!(switch.hits(), 1);

        // DELETEs, in both modes.
        put(&inner, "d1").await?;
        put(&inner, "d2").await?;
        let deletes = |mode| {
            FaultPlan::new()
                .only_kinds([RequestKind::Delete])
                .fail_all()
                .mode(mode)
        };
        switch.arm(deletes(FaultMode::Fail));
        put(&faulty, "puts-go-through").await?;
        assert!(faulty.delete(&Path::from("d1")).await.is_err());
        assert!(exists(&inner, "d1").await);
        switch.arm(deletes(FaultMode::AnswerLost).answer_lost(true));
        assert!(faulty.delete(&Path::from("d2")).await.is_err());
        assert!(!exists(&inner, "d2").await);
        switch.disarm();
        faulty.delete(&Path::from("d1")).await?;
        assert!(!exists(&inner, "d1").await);
        Ok(())
    }
}
