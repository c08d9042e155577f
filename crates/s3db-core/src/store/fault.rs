//! Fault injection for tests (feature `testing`): an [`ObjectStore`] decorator that fails chosen
//! requests with a transient error and can add latency, so reliability tests can prove that
//! nothing is lost when S3 misbehaves.
//!
//! Two failure modes matter for a database over S3:
//! - the request fails before it reaches the store (nothing happened);
//! - the request reaches the store but its answer is lost ([`FaultPlan::answer_lost`]): the
//!   write happened, yet the caller sees an error. Conditional writes must cope with both.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// Which requests fail, and how.
#[derive(Debug, Clone, Default)]
pub struct FaultPlan {
    fraction: f64,
    nth: Vec<(RequestKind, u64)>,
    answer_lost: bool,
    latency: Option<Duration>,
    seed: u64,
}

impl FaultPlan {
    /// A plan that injects nothing.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Fail this fraction (0.0–1.0) of all requests, chosen at random.
    #[must_use]
    pub fn fail_fraction(mut self, fraction: f64) -> Self {
        self.fraction = fraction.clamp(0.0, 1.0);
        self
    }

    /// Fail the `n`-th request (1-based) of `kind`.
    #[must_use]
    pub fn fail_nth(mut self, kind: RequestKind, n: u64) -> Self {
        self.nth.push((kind, n));
        self
    }

    /// Let failing requests reach the store first and lose only the answer.
    #[must_use]
    pub fn answer_lost(mut self, lost: bool) -> Self {
        self.answer_lost = lost;
        self
    }

    /// Delay every request by this much.
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
}

/// The error of an injected fault.
#[derive(Debug, Clone, thiserror::Error)]
#[error("injected transient fault on {kind} request #{n}")]
pub struct InjectedFault {
    /// Kind of the failed request.
    pub kind: RequestKind,
    /// Its 1-based number among requests of that kind.
    pub n: u64,
}

/// The decorator.
pub struct FaultyStore {
    inner: Arc<dyn ObjectStore>,
    state: Arc<FaultState>,
}

#[derive(Debug)]
struct FaultState {
    plan: FaultPlan,
    counts: [AtomicU64; 7],
    injected: AtomicU64,
    rng: Mutex<StdRng>,
}

impl FaultyStore {
    /// Wraps `inner` with `plan`.
    pub fn new(inner: Arc<dyn ObjectStore>, plan: FaultPlan) -> Self {
        let rng = Mutex::new(StdRng::seed_from_u64(plan.seed));
        Self {
            inner,
            state: Arc::new(FaultState {
                plan,
                counts: Default::default(),
                injected: AtomicU64::new(0),
                rng,
            }),
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
}

/// Reads how many faults a [`FaultyStore`] injected.
#[derive(Debug, Clone)]
pub struct FaultCounter(Arc<FaultState>);

impl FaultCounter {
    /// Faults injected so far.
    #[must_use]
    pub fn injected(&self) -> u64 {
        self.0.injected.load(Ordering::Relaxed)
    }
}

impl FaultState {
    /// Decides whether this request fails.
    fn decide(&self, kind: RequestKind) -> Option<InjectedFault> {
        let n = self.counts[kind as usize].fetch_add(1, Ordering::Relaxed) + 1;
        let by_number = self.plan.nth.iter().any(|&(k, nth)| k == kind && nth == n);
        let by_chance = self.plan.fraction > 0.0
            && self
                .rng
                .lock()
                .map(|mut rng| rng.random_bool(self.plan.fraction))
                .unwrap_or(false);
        (by_number || by_chance).then(|| {
            self.injected.fetch_add(1, Ordering::Relaxed);
            InjectedFault { kind, n }
        })
    }

    async fn delay(&self) {
        if let Some(latency) = self.plan.latency {
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
            .field("plan", &self.state.plan)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for FaultyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faulty({})", self.inner)
    }
}

impl FaultyStore {
    /// Runs `call` under the plan for one request of `kind`.
    async fn run<T, Fut>(&self, kind: RequestKind, call: Fut) -> object_store::Result<T>
    where
        Fut: Future<Output = object_store::Result<T>>,
    {
        self.state.delay().await;
        let fault = self.state.decide(kind);
        match fault {
            None => call.await,
            Some(fault) if self.state.plan.answer_lost => {
                let _ = call.await;
                Err(to_error(fault))
            }
            Some(fault) => Err(to_error(fault)),
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
        self.run(kind, self.inner.get_opts(location, options)).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<bytes::Bytes>> {
        self.run(RequestKind::Get, self.inner.get_ranges(location, ranges))
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
                    let fault = state.decide(RequestKind::Delete);
                    if let Some(fault) = fault {
                        if state.plan.answer_lost {
                            let _ = inner
                                .delete_stream(stream::iter([Ok(location)]).boxed())
                                .next()
                                .await;
                        }
                        return Err(to_error(fault));
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
        match self.state.decide(RequestKind::List) {
            Some(fault) => stream::once(async move { Err(to_error(fault)) }).boxed(),
            None => self.inner.list(prefix),
        }
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        match self.state.decide(RequestKind::List) {
            Some(fault) => stream::once(async move { Err(to_error(fault)) }).boxed(),
            None => self.inner.list_with_offset(prefix, offset),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.run(RequestKind::List, self.inner.list_with_delimiter(prefix))
            .await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        self.run(RequestKind::Copy, self.inner.copy_opts(from, to, options))
            .await
    }
}
