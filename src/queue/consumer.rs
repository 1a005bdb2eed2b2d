//! Taking and acknowledging messages.

mod batch;
mod claim;
mod doubt;
mod stripe;

use std::collections::HashMap;
use std::time::Duration;

use tokio::time::Instant;

use self::batch::BatchInDoubt;
use self::claim::ClaimInDoubt;
use self::doubt::{judge_gone_slot, SourceFence, TakeOutcome};
use self::stripe::{Listing, Stripe};
use super::envelope::{Envelope, FLAG_FROM_PARTIAL};
use super::store::{CreateMode, MultiOp, NodeStat, StoreError, StoreResult};
use super::{
    legacy, now_ms, recover, retry_unknown, sorted_messages, Access, Algorithm, MessageId,
    QueueConfig, QueueError, Session, TakeProtocol, Tree,
};

/// One message handed to a consumer. Acknowledge it with [`Consumer::ack`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub id: MessageId,
    pub payload: Vec<u8>,
    /// CRC-32 recomputed from the payload received (compare with the produced one).
    pub checksum: u32,
    /// The node the message was taken from (`message-0000000012`).
    pub source: String,
    /// Taken from `partial/`: a dead consumer held it before.
    pub from_partial: bool,
    /// The node that holds the message until the ack deletes it: this consumer's
    /// slot, or the claimed message itself (a claim-protocol batch, see [`claim`]).
    slot: String,
    /// The slot's version when taken: the ack's versioned delete fails if recovery
    /// changed or moved the slot since. `None`: the legacy algorithm (unversioned).
    slot_version: Option<i32>,
    /// For a message held where it is (a claim-protocol batch): the consumer id
    /// that claimed it.
    claimed_by: Option<String>,
}

impl Delivery {
    fn from_slot(envelope: &Envelope, slot: String, slot_version: Option<i32>) -> Self {
        Delivery {
            id: envelope.id,
            checksum: super::checksum(&envelope.payload),
            payload: envelope.payload.clone(),
            source: envelope.source.clone(),
            from_partial: envelope.has_flag(FLAG_FROM_PARTIAL),
            slot,
            slot_version,
            claimed_by: None,
        }
    }
}

/// Takes messages from one queue, one at a time: take, then ack, then take again.
pub struct Consumer {
    session: Session,
    tree: Tree,
    /// Our name under `consumers/`: `consumer-<id>`. A new one after session expiry.
    id: String,
    /// A take's outcome was unknown: our slot must be read before taking again.
    slot_unknown: bool,
    /// Taken and not yet acknowledged: a second take returns it again.
    held: Option<Delivery>,
    /// Taken by [`Consumer::take_batch`] and not yet acknowledged.
    batch_held: Vec<Delivery>,
    /// The number in the next batch slot's name (`message-<n>`): slot names are
    /// never reused by one consumer id, so reading a slot back after an unknown
    /// outcome tells which transaction created it.
    next_slot: u64,
    /// A batch transaction whose outcome is unknown: settled before the next take.
    batch_in_doubt: Option<BatchInDoubt>,
    /// Acks whose outcome stayed unknown: slot -> the session the attempt was
    /// sent in. It outlives the `ack` call (and a re-registration) so that a later
    /// ack of the same delivery that finds the slot gone says "unknown", never
    /// "taken back": the first attempt may have deleted it.
    ack_in_doubt: HashMap<String, i64>,
    /// When this consumer last ran a recovery pass.
    last_recovery: Instant,
    /// The last listing of `messages/` and where we are in our stripe of it:
    /// listing the whole queue on every take would cost O(depth) per message.
    listing: Listing,
    /// Our stripe as last read from `consumers/`, and when: a consumer joining or
    /// leaving changes every stripe, and is seen within STRIPE_RECHECK.
    stripe: Stripe,
    stripe_checked: Instant,
    /// The last listing of `partial/`, for a race-free wait on the next change.
    seen_partial: Vec<String>,
    /// Empty nodes (a produce between its create and its set) skipped in the last
    /// look, with the version read: their sets change no listing, so an idle
    /// consumer waits for those sets themselves (see `wait_for_messages`).
    unset_seen: Vec<(String, i32)>,
    /// Races lost lately (decays with each take won): spread the first tries.
    contention: u32,
    /// Cached names found gone since the last listing.
    misses: u32,
    /// When `partial/` was last listed.
    partial_listed: Instant,
    /// An ack to fold into the next take's transaction (`ack_and_take`).
    fold_ack: Option<Delivery>,
    /// How the folded ack ended, once it was tried.
    fold_result: Option<Result<(), QueueError>>,
    /// A folded ack whose transaction ended unknown.
    unknown_fold: Option<Delivery>,
    /// A single take whose transaction ended unknown: settled by a write on its
    /// source before our slot is trusted (see [`doubt`]).
    take_in_doubt: Option<TakeInDoubt>,
    /// Claims of a claim-protocol batch whose outcome is unknown: settled before
    /// the next batch (see [`claim`]).
    claims_in_doubt: Vec<ClaimInDoubt>,
}

/// A single take whose outcome is unknown.
struct TakeInDoubt {
    fence: SourceFence,
    /// The message it would have put in our slot.
    taken: MessageId,
    /// The session it was sent in: only there are our slots ours alone.
    session: i64,
}

/// Cached names found gone before the cache is thrown away and the queue listed again.
const STALE_MISSES: u32 = 2;
/// How often a consumer reads who else is live (its stripe). Cheap: one listing of
/// `consumers/` and one read per consumer.
const STRIPE_RECHECK: Duration = Duration::from_secs(1);
/// How often a consumer looks at an empty `partial/` again.
const PARTIAL_RELIST: Duration = Duration::from_millis(100);
/// How many won takes a lost race is remembered for.
const LOST_RACE_MEMORY: u32 = 16;
/// At most this many empty nodes' data are watched while waiting; past it (or
/// without watches, on REST) a consumer looks again after UNSET_RELOOK.
const UNSET_WATCHES: usize = 64;
/// How soon a consumer looks again at empty nodes whose sets it cannot watch.
const UNSET_RELOOK: Duration = Duration::from_millis(20);

fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

impl Consumer {
    /// Registers a new consumer (`consumers/consumer-<id>` and its ephemeral `status`)
    /// and runs one recovery pass.
    pub async fn register(access: Access, config: QueueConfig) -> Result<Consumer, QueueError> {
        let session = Session::open(access, config).await?;
        let tree = Tree::new(&session.config);
        tree.ensure(session.store.as_ref(), session.config.op_timeout).await?;
        let mut consumer = Consumer {
            session,
            tree,
            id: new_id(),
            slot_unknown: false,
            held: None,
            batch_held: Vec::new(),
            next_slot: 1,
            batch_in_doubt: None,
            ack_in_doubt: HashMap::new(),
            last_recovery: Instant::now(),
            listing: Listing::default(),
            stripe: Stripe::WHOLE,
            // Due at once: the first listing is walked for our real stripe.
            stripe_checked: Instant::now().checked_sub(STRIPE_RECHECK).unwrap_or_else(Instant::now),
            seen_partial: Vec::new(),
            unset_seen: Vec::new(),
            contention: 0,
            misses: 0,
            partial_listed: Instant::now().checked_sub(PARTIAL_RELIST).unwrap_or_else(Instant::now),
            fold_ack: None,
            fold_result: None,
            unknown_fold: None,
            take_in_doubt: None,
            claims_in_doubt: Vec::new(),
        };
        consumer.register_id().await?;
        consumer.run_recovery().await;
        Ok(consumer)
    }

    /// The id this consumer is registered under (`consumers/consumer-<id>`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// True once this consumer's session has expired (or was dropped): its next
    /// call builds a new session and re-registers under a new id.
    pub fn session_expired(&self) -> bool {
        self.session.store.is_dead()
    }

    /// The access path in use ("native" or "rest").
    pub fn access_path(&self) -> &'static str {
        self.session.store.access_path()
    }

    async fn register_id(&mut self) -> Result<(), QueueError> {
        let store = self.session.store.clone();
        let budget = self.session.config.retry_budget;
        let node = self.tree.consumer(&self.id);
        retry_unknown(budget, || async {
            match store.create(&node, b"", CreateMode::Persistent).await {
                Ok(_) | Err(StoreError::NodeExists(_)) => Ok(()),
                Err(err) => Err(err),
            }
        })
        .await?;
        let status = self.tree.status(&self.id);
        retry_unknown(budget, || async {
            match store.create(&status, b"", CreateMode::Ephemeral).await {
                Ok(_) => Ok(()),
                Err(StoreError::NodeExists(path)) => match store.exists(&status).await? {
                    Some(stat)
                        if stat.ephemeral_owner == store.session_id()
                            || store.session_id() == 0 =>
                    {
                        Ok(())
                    }
                    _ => Err(StoreError::NodeExists(path)),
                },
                Err(err) => Err(err),
            }
        })
        .await?;
        tracing::debug!(consumer = %self.id, "registered");
        Ok(())
    }

    /// After the session expired (or recovery took us for dead): a new session if
    /// needed, and a new id. Whatever the old id held is recovery's now.
    async fn reregister(&mut self) -> Result<(), QueueError> {
        if self.session.store.is_dead() {
            self.session.renew().await?;
        }
        let old = std::mem::replace(&mut self.id, new_id());
        tracing::info!(old = %old, new = %self.id, "re-registering the consumer");
        self.slot_unknown = false;
        self.held = None;
        self.batch_held.clear();
        self.next_slot = 1;
        self.batch_in_doubt = None;
        self.fold_ack = None;
        self.unknown_fold = None;
        self.take_in_doubt = None;
        // A new id ranks elsewhere among the consumers: read our stripe again.
        self.stripe_checked =
            Instant::now().checked_sub(STRIPE_RECHECK).unwrap_or(self.stripe_checked);
        // The old id's claims are recovery's now, like its slots.
        self.claims_in_doubt.clear();
        self.register_id().await
    }

    async fn run_recovery(&mut self) {
        self.last_recovery = Instant::now();
        if let Err(err) = recover(self.session.store.as_ref(), &self.session.config).await {
            tracing::debug!("recovery pass failed: {err}");
        }
    }

    /// Takes one message, waiting up to `timeout` for one (woken by a watch on the
    /// queue, or polling on REST). `Ok(None)`: nothing came in time. A message taken
    /// and not acknowledged is returned again.
    pub async fn take(&mut self, timeout: Duration) -> Result<Option<Delivery>, QueueError> {
        if let Some(held) = self.held.as_ref().or(self.batch_held.first()) {
            return Ok(Some(held.clone()));
        }
        let deadline = Instant::now() + timeout;
        loop {
            let attempt = self.take_once().await;
            match attempt {
                Ok(Some(delivery)) => {
                    self.held = Some(delivery.clone());
                    return Ok(Some(delivery));
                }
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(consumer = %self.id, "take: {err}");
                    if Instant::now() >= deadline {
                        return Err(err.into());
                    }
                    if matches!(err, StoreError::SessionExpired(_)) || self.session.store.is_dead()
                    {
                        self.reregister().await?;
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                    continue;
                }
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            self.wait_for_messages(deadline).await;
        }
    }

    /// Nothing to take: runs a recovery pass when one is due, else waits until the
    /// queue changes (a watch; polling on REST), the pass is due, or `deadline`.
    async fn wait_for_messages(&mut self, deadline: Instant) {
        let now = Instant::now();
        if now >= self.last_recovery + self.session.config.recovery_interval {
            self.run_recovery().await;
            return;
        }
        let mut wait =
            deadline.saturating_duration_since(now).min(self.session.config.recovery_interval);
        let store = self.session.store.clone();
        // A message between its create and its set was seen empty: the create woke
        // us, and its set, which usually lands a write later, changes no listing.
        // Waiting on the listing alone would leave it until a timer fired; watch
        // the empty nodes' data instead, so the set itself wakes us.
        let unset = std::mem::take(&mut self.unset_seen);
        let watched = if store.watches_data() && unset.len() <= UNSET_WATCHES {
            unset.as_slice()
        } else {
            &[]
        };
        if watched.len() < unset.len() {
            wait = wait.min(UNSET_RELOOK);
        }
        let mut sets: futures::stream::FuturesUnordered<_> = watched
            .iter()
            .map(|(path, version)| store.wait_for_data_change(path, *version, wait))
            .collect();
        let any_set = async {
            if sets.is_empty() {
                std::future::pending::<()>().await;
            }
            futures::StreamExt::next(&mut sets).await;
        };
        let (messages, partial) = (self.tree.messages(), self.tree.partial());
        let seen_messages = self.listing.seen();
        tokio::select! {
            _ = store.wait_for_children_change(&messages, Some(&seen_messages), wait) => {}
            _ = store.wait_for_children_change(&partial, Some(&self.seen_partial), wait) => {}
            _ = any_set => {}
        }
        // Whichever fired, look at `partial/` first again.
        self.partial_listed =
            Instant::now().checked_sub(PARTIAL_RELIST).unwrap_or(self.partial_listed);
    }

    /// One look at the queue: our own slot if a take's outcome was unknown, then
    /// `partial/`, then `messages/`, lowest sequence first.
    async fn take_once(&mut self) -> StoreResult<Option<Delivery>> {
        if self.slot_unknown {
            let slot = self.tree.slot(&self.id);
            let read = match self.settle_take().await? {
                Some(TakeOutcome::Happened { data, stat }) => Ok((data, stat)),
                Some(TakeOutcome::DidNotHappen) => Err(StoreError::NoNode(slot.clone())),
                // No take in doubt (the slot was found to exist by a write), or one
                // from another session: the slot read as it is.
                None => self.session.store.get(&slot).await,
            };
            match read {
                Ok((data, stat)) => {
                    let envelope = Envelope::decode(&data)
                        .map_err(|err| StoreError::Refused(format!("{slot}: {err}")))?;
                    if !envelope.claim.is_empty() {
                        self.release_claimed_source(&envelope).await?;
                    }
                    self.slot_unknown = false;
                    let version =
                        (self.session.config.algorithm == Algorithm::Safe).then_some(stat.version);
                    return Ok(Some(Delivery::from_slot(&envelope, slot, version)));
                }
                Err(StoreError::NoNode(_)) => self.slot_unknown = false,
                Err(err) => return Err(err),
            }
        }
        self.unset_seen.clear();
        if self.session.config.algorithm == Algorithm::Legacy {
            return self.take_legacy().await;
        }
        let partial = self.tree.partial();
        // `partial/` is almost always empty: look at it when it was not last time,
        // or every PARTIAL_RELIST, not before every take (a read per message).
        if !self.seen_partial.is_empty() || self.partial_listed.elapsed() >= PARTIAL_RELIST {
            self.seen_partial = self.session.store.children(&partial).await?;
            self.partial_listed = Instant::now();
            for name in sorted_messages(self.seen_partial.clone()) {
                if let Some(delivery) = self.try_take(&partial, &name, true).await? {
                    return Ok(Some(delivery));
                }
            }
        }
        let messages = self.tree.messages();
        // A cached name that is gone was taken by another consumer; after a few
        // such misses the cache is mostly stale: list again (once per look).
        let mut relisted = self.recheck_stripe(1).await?;
        loop {
            if self.misses >= STALE_MISSES && !relisted {
                self.read_stripe().await;
                self.relist(1).await?;
                relisted = true;
            }
            let Some(name) = self.listing.next(1, self.contention > 0).pop() else {
                if relisted {
                    break;
                }
                self.relist(1).await?;
                relisted = true;
                continue;
            };
            match self.try_take(&messages, &name, false).await {
                Ok(Some(delivery)) => {
                    self.contention = self.contention.saturating_sub(1);
                    self.misses = 0;
                    return Ok(Some(delivery));
                }
                Ok(None) => {}
                Err(err) => {
                    self.listing.give_back(&name);
                    return Err(err);
                }
            }
        }
        Ok(None)
    }

    /// Reads who is live and, when our stripe changed, lists `messages/` again (the
    /// cache was walked for the old stripe). At most every STRIPE_RECHECK; true
    /// when it listed.
    async fn recheck_stripe(&mut self, batch: usize) -> StoreResult<bool> {
        if self.stripe_checked.elapsed() < STRIPE_RECHECK {
            return Ok(false);
        }
        self.read_stripe().await;
        if self.stripe == self.listing.stripe() {
            return Ok(false);
        }
        self.relist(batch).await?;
        Ok(true)
    }

    /// Our stripe among the live consumers (whose `status` exists). A failed read
    /// keeps the stripe we had: the stripe only spreads the load, the take's `multi`
    /// is what is safe.
    async fn read_stripe(&mut self) {
        self.stripe_checked = Instant::now();
        let store = self.session.store.clone();
        let ids: Vec<String> = match store.children(&self.tree.consumers()).await {
            Ok(children) => children
                .into_iter()
                .filter_map(|child| child.strip_prefix("consumer-").map(str::to_owned))
                .collect(),
            Err(err) => {
                tracing::debug!(consumer = %self.id, "reading the consumers: {err}");
                return;
            }
        };
        let statuses = futures::future::join_all(ids.iter().map(|id| {
            let (store, status) = (store.clone(), self.tree.status(id));
            async move { store.exists(&status).await }
        }))
        .await;
        let mut live = Vec::with_capacity(ids.len());
        for (id, status) in ids.into_iter().zip(statuses) {
            match status {
                Ok(Some(_)) => live.push(id),
                Ok(None) => {}
                Err(err) => {
                    tracing::debug!(consumer = %self.id, "reading the consumers: {err}");
                    return;
                }
            }
        }
        self.stripe = Stripe::among(&self.id, &live);
    }

    /// Lists `messages/` again, walked for our stripe as last read.
    async fn relist(&mut self, batch: usize) -> StoreResult<()> {
        let children = self.session.store.children(&self.tree.messages()).await?;
        self.listing.replace(children, self.stripe, batch);
        self.misses = 0;
        Ok(())
    }

    async fn try_take(
        &mut self,
        dir: &str,
        name: &str,
        from_partial: bool,
    ) -> StoreResult<Option<Delivery>> {
        let path = Tree::node(dir, name);
        let (data, stat) = match self.session.store.get(&path).await {
            Ok(found) => found,
            Err(StoreError::NoNode(_)) => {
                self.lost_race();
                return Ok(None);
            }
            Err(err) => return Err(err),
        };
        if data.is_empty() {
            self.pass_unset(&path, &stat).await;
            return Ok(None);
        }
        let envelope = match Envelope::decode(&data) {
            Ok(envelope) => envelope,
            Err(err) => {
                tracing::warn!("skipping {path}: {err}");
                return Ok(None);
            }
        };
        let source = SourceFence { path, version: stat.version, data };
        if let Some(claimer) = envelope.claimer() {
            if claimer == self.id && self.session.take_protocol() == TakeProtocol::Claim {
                // Our own claim whose take did not finish (its outcome was unknown).
                let token = envelope.claim.clone();
                return self
                    .finish_claim(
                        &source.path,
                        name,
                        envelope,
                        &token,
                        source.version,
                        from_partial,
                    )
                    .await;
            }
            // Claimed by a claim-protocol consumer (or a recovery move): not ours.
            return Ok(None);
        }
        match self.session.take_protocol() {
            TakeProtocol::Claim => {
                self.take_claim(&source.path, name, envelope, source.version, from_partial).await
            }
            _ => self.take_multi(source, name, envelope, from_partial).await,
        }
    }

    /// A listed message was gone when read: another consumer took it.
    fn lost_race(&mut self) {
        self.contention = LOST_RACE_MEMORY;
        self.misses += 1;
    }

    /// An empty node is a produce between its create and its set: wait for its
    /// set, or delete it once it is older than the orphan grace.
    async fn pass_unset(&mut self, path: &str, stat: &NodeStat) {
        let grace = self.session.config.orphan_grace.as_millis() as i64;
        if now_ms() - stat.ctime_ms > grace {
            // Versioned: if the producer's set lands first, this delete fails.
            let _ = self.session.store.delete(path, Some(0)).await;
        } else {
            self.unset_seen.push((path.to_owned(), stat.version));
        }
    }

    /// The claim protocol's step 3 for a slot found by reading it back (its
    /// create's outcome was unknown): the source, still claimed by this slot's
    /// token, is deleted before the slot is delivered. Delivered without it, the
    /// message would be acknowledged and then found again, claimed by us, and
    /// finished and delivered a second time.
    async fn release_claimed_source(&mut self, slot: &Envelope) -> StoreResult<()> {
        let dir = if slot.has_flag(FLAG_FROM_PARTIAL) {
            self.tree.partial()
        } else {
            self.tree.messages()
        };
        let path = Tree::node(&dir, &slot.source);
        let store = self.session.store.clone();
        let (data, stat) = match store.get(&path).await {
            Ok(found) => found,
            // Deleted already: by our own step 3, or (had recovery taken us for
            // dead) after a fence that also changed our slot, so the ack will fail.
            Err(StoreError::NoNode(_)) => return Ok(()),
            Err(err) => return Err(err),
        };
        let ours = Envelope::decode(&data).is_ok_and(|source| source.claim == slot.claim);
        if !ours {
            return Err(StoreError::SessionExpired(
                "recovery took this consumer's take back".into(),
            ));
        }
        match store.delete(&path, Some(stat.version)).await {
            Ok(()) | Err(StoreError::NoNode(_)) => Ok(()),
            Err(StoreError::BadVersion(_)) => {
                Err(StoreError::SessionExpired("recovery took this consumer's take back".into()))
            }
            // Unknown: the slot stays unknown and is read again at the next look.
            Err(err) => Err(err),
        }
    }

    fn slot_envelope(envelope: Envelope, name: &str, claim: &str, from_partial: bool) -> Envelope {
        Envelope {
            claim: claim.to_owned(),
            source: name.to_owned(),
            flags: if from_partial { FLAG_FROM_PARTIAL } else { 0 },
            ..envelope
        }
    }

    /// One `multi`: we are alive, the source is still as read, our slot gets it.
    async fn take_multi(
        &mut self,
        source: SourceFence,
        name: &str,
        envelope: Envelope,
        from_partial: bool,
    ) -> StoreResult<Option<Delivery>> {
        let (path, version) = (source.path.as_str(), source.version);
        let slot_envelope = Self::slot_envelope(envelope, name, "", from_partial);
        let slot = self.tree.slot(&self.id);
        loop {
            // An ack folded in (see `ack_and_take`): delete the old slot in the
            // same transaction that creates the new one.
            let fold = self.fold_ack.take();
            let mut ops = vec![MultiOp::Check { path: self.tree.status(&self.id), version: None }];
            if let Some(previous) = &fold {
                ops.push(MultiOp::Delete {
                    path: previous.slot.clone(),
                    version: previous.slot_version,
                });
            }
            let source_index = ops.len();
            ops.push(MultiOp::Delete { path: path.to_owned(), version: Some(version) });
            ops.push(MultiOp::Create {
                path: slot.clone(),
                data: slot_envelope.encode(),
                mode: CreateMode::Persistent,
            });
            match self.session.store.multi(&ops).await {
                Ok(_) => {
                    if fold.is_some() {
                        self.fold_result = Some(Ok(()));
                    }
                    return Ok(Some(Delivery::from_slot(&slot_envelope, slot, Some(0))));
                }
                Err(StoreError::MultiFailed { index: 1, cause }) if fold.is_some() => {
                    // The old slot changed (recovery's fence: taken back) or is gone
                    // (taken back, if recovery's copy says so).
                    let judged = match (*cause, &fold) {
                        (StoreError::NoNode(_), Some(previous)) => {
                            judge_gone_slot(self.session.store.as_ref(), &self.tree, previous).await
                        }
                        _ => QueueError::TakenBack,
                    };
                    self.fold_result = Some(Err(judged));
                    continue;
                }
                Err(StoreError::MultiFailed { index, .. }) if index == source_index => {
                    self.fold_ack = fold;
                    self.contention = LOST_RACE_MEMORY;
                    return Ok(None);
                }
                Err(StoreError::MultiFailed { index, cause })
                    if index == source_index + 1 && matches!(*cause, StoreError::NodeExists(_)) =>
                {
                    // We already hold a message (an earlier take's outcome was unknown).
                    self.fold_ack = fold;
                    self.slot_unknown = true;
                    return Err(StoreError::Unknown(format!(
                        "{slot} already exists: reading it back"
                    )));
                }
                Err(StoreError::MultiFailed { index, cause }) => {
                    self.fold_ack = fold;
                    return Err(StoreError::SessionExpired(format!(
                        "this consumer is no longer registered (take step {index}: {cause})"
                    )));
                }
                Err(err) => {
                    self.unknown_fold = fold;
                    self.slot_unknown = true;
                    self.take_in_doubt = Some(TakeInDoubt {
                        fence: source.clone(),
                        taken: slot_envelope.id,
                        session: self.session.store.session_id(),
                    });
                    return Err(err);
                }
            }
        }
    }

    /// Settles the single take in doubt, if any, by a write on its source (see
    /// [`doubt`]). `None`: there is none, or it was sent in another session. An
    /// error leaves it in doubt.
    async fn settle_take(&mut self) -> StoreResult<Option<TakeOutcome>> {
        let Some(doubt) = self.take_in_doubt.take() else { return Ok(None) };
        let store = self.session.store.clone();
        if store.is_dead() || store.session_id() != doubt.session {
            return Ok(None);
        }
        let slot = self.tree.slot(&self.id);
        match doubt.fence.settle(store.as_ref(), &slot, &doubt.taken).await {
            Ok(outcome) => Ok(Some(outcome)),
            Err(err) => {
                self.take_in_doubt = Some(doubt);
                Err(err)
            }
        }
    }

    /// Acknowledges `delivery` and takes the next message. With the native `multi`
    /// the ack's versioned delete rides in the take's transaction: one write per
    /// message instead of two. Same guarantees as [`Consumer::ack`] then
    /// [`Consumer::take`]; returns both outcomes.
    pub async fn ack_and_take(
        &mut self,
        delivery: &Delivery,
        timeout: Duration,
    ) -> (Result<(), QueueError>, Result<Option<Delivery>, QueueError>) {
        let foldable = self.session.config.algorithm == Algorithm::Safe
            && self.session.take_protocol() == TakeProtocol::Multi
            && !self.slot_unknown
            && delivery.slot_version.is_some()
            && delivery.slot == self.tree.slot(&self.id)
            && self.held.as_ref().is_some_and(|held| held.slot == delivery.slot);
        if !foldable {
            let ack = self.ack(delivery).await;
            return (ack, self.take(timeout).await);
        }
        self.held = None;
        self.fold_ack = Some(delivery.clone());
        self.fold_result = None;
        let attempt = self.take_once().await;
        let ack = if let Some(result) = self.fold_result.take() {
            result
        } else if let Some(previous) = self.unknown_fold.take() {
            self.resolve_fold(&previous).await
        } else {
            // Nothing was taken with it (an empty queue, an error): ack on its own.
            self.fold_ack = None;
            self.ack(delivery).await
        };
        match attempt {
            Ok(Some(next)) => {
                self.held = Some(next.clone());
                (ack, Ok(Some(next)))
            }
            _ => (ack, self.take(timeout).await),
        }
    }

    /// A take with an ack folded in ended unknown: a write on its source settles
    /// whether it happened (see [`doubt`]); if it did not, the ack goes on its own.
    async fn resolve_fold(&mut self, previous: &Delivery) -> Result<(), QueueError> {
        let deadline = Instant::now() + self.session.config.retry_budget;
        loop {
            match self.settle_take().await {
                // The slot holds the next message now: the take reads it back.
                Ok(Some(TakeOutcome::Happened { .. })) => return Ok(()),
                Ok(Some(TakeOutcome::DidNotHappen)) => {
                    // The old message is still ours, in the slot as it was.
                    self.slot_unknown = false;
                    return self.ack(previous).await;
                }
                Ok(None) => {
                    return Err(QueueError::Unknown(format!(
                        "{}: the ack folded into a take ended unknown, and the take can no \
                         longer be settled in the session it was sent in",
                        previous.slot
                    )))
                }
                Err(err) if Instant::now() >= deadline || self.session.store.is_dead() => {
                    return Err(QueueError::Unknown(format!(
                        "{}: the ack folded into a take ended unknown, and settling it \
                         failed: {err}",
                        previous.slot
                    )));
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// The claim protocol, step 1: mark the source as ours (one winner).
    async fn take_claim(
        &mut self,
        path: &str,
        name: &str,
        envelope: Envelope,
        version: i32,
        from_partial: bool,
    ) -> StoreResult<Option<Delivery>> {
        let token = format!("{}/{}", self.id, &new_id()[..8]);
        let claimed = envelope.with_claim(&token);
        let budget = self.session.config.retry_budget;
        let claimed_version =
            match self.session.store.set(path, &claimed.encode(), Some(version)).await {
                Ok(stat) => stat.version,
                Err(StoreError::NoNode(_) | StoreError::BadVersion(_)) => return Ok(None),
                Err(err) if err.is_unknown_outcome() => {
                    // Did the claim land? Only our token says so.
                    let store = self.session.store.clone();
                    match retry_unknown(budget, || store.get(path)).await {
                        Ok((data, stat))
                            if Envelope::decode(&data)
                                .map(|e| e.claim == token)
                                .unwrap_or(false) =>
                        {
                            stat.version
                        }
                        Ok(_) | Err(StoreError::NoNode(_)) => return Ok(None),
                        Err(err) => return Err(err),
                    }
                }
                Err(err) => return Err(err),
            };
        self.finish_claim(path, name, claimed, &token, claimed_version, from_partial).await
    }

    /// The claim protocol, steps 2 and 3: our slot, then delete the source at the
    /// claimed version. Recovery fences the source (bumps its version) before it
    /// rolls back a dead consumer's claim, so a zombie's step 3 fails.
    async fn finish_claim(
        &mut self,
        path: &str,
        name: &str,
        envelope: Envelope,
        token: &str,
        claimed_version: i32,
        from_partial: bool,
    ) -> StoreResult<Option<Delivery>> {
        let slot = self.tree.slot(&self.id);
        let slot_envelope = Self::slot_envelope(envelope, name, token, from_partial);
        let budget = self.session.config.retry_budget;
        let store = self.session.store.clone();
        let data = slot_envelope.encode();
        match claim::create_slot(store.as_ref(), &slot, &data, token, budget).await {
            Ok(()) => {}
            // Our consumer node is gone: recovery took us for dead.
            Err(StoreError::NoNode(_)) => {
                return Err(StoreError::SessionExpired("recovery removed this consumer".into()))
            }
            Err(StoreError::NodeExists(_)) => {
                self.slot_unknown = true;
                return Err(StoreError::Unknown(format!(
                    "{slot} already holds a message: reading it back"
                )));
            }
            Err(err) => {
                self.slot_unknown = true;
                return Err(err);
            }
        }
        let mut retried = false;
        loop {
            match store.delete(path, Some(claimed_version)).await {
                Ok(()) => return Ok(Some(Delivery::from_slot(&slot_envelope, slot, Some(0)))),
                Err(StoreError::NoNode(_)) if retried => {
                    // Our earlier delete landed, unless recovery already took the
                    // message back: then it changed our slot first.
                    return match store.exists(&slot).await? {
                        Some(stat) if stat.version == 0 => {
                            Ok(Some(Delivery::from_slot(&slot_envelope, slot, Some(0))))
                        }
                        _ => Err(StoreError::SessionExpired(
                            "recovery took this consumer's take back".into(),
                        )),
                    };
                }
                Err(StoreError::NoNode(_) | StoreError::BadVersion(_)) => {
                    return Err(StoreError::SessionExpired(
                        "recovery took this consumer's take back".into(),
                    ))
                }
                Err(StoreError::Unknown(reason)) => {
                    retried = true;
                    tracing::debug!("retrying the source delete: {reason}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => {
                    self.slot_unknown = true;
                    return Err(err);
                }
            }
        }
    }

    async fn take_legacy(&mut self) -> StoreResult<Option<Delivery>> {
        let slot = self.tree.slot(&self.id);
        let budget = self.session.config.retry_budget;
        match legacy::take(self.session.store.as_ref(), &self.tree, &slot, budget).await? {
            Some(envelope) => Ok(Some(Delivery::from_slot(&envelope, slot, None))),
            None => Ok(None),
        }
    }

    /// Acknowledges `delivery`: deletes the slot (or the claimed message) at the
    /// version it was taken with.
    /// `Err(TakenBack)`: recovery took the message back first (this consumer was
    /// considered dead); it will be delivered again. `Err(Unknown)`: the ack may or
    /// may not have happened.
    pub async fn ack(&mut self, delivery: &Delivery) -> Result<(), QueueError> {
        let deadline = Instant::now() + self.session.config.retry_budget;
        // The session of an attempt whose outcome was unknown: while that session
        // lives, nobody else touches the slots (or claims) of the registration it
        // holds (recovery acts only on dead consumers), so a later NoNode on one of
        // those means the attempt landed.
        let mut unknown_in_session: Option<i64> = self.ack_in_doubt.get(&delivery.slot).copied();
        let result = loop {
            if self.session.store.is_dead() {
                if let Err(err) = self.reregister().await {
                    break Err(err);
                }
            }
            let session_id = self.session.store.session_id();
            // A slot of an earlier registration (a zombie acking after it woke, or
            // a take from before the session was renewed) is recovery's to move at
            // any time: a NoNode there says nothing of our earlier attempt.
            let ours = self.holds_slot(&delivery.slot)
                || delivery.claimed_by.as_deref() == Some(self.id.as_str());
            match self.session.store.delete(&delivery.slot, delivery.slot_version).await {
                Ok(()) => break Ok(()),
                Err(StoreError::NoNode(_)) if ours && unknown_in_session == Some(session_id) => {
                    // Over REST a delete is not bound to the session, so an
                    // unchanged session id does not prove that the registration
                    // lived; our status still there does (an ephemeral never comes
                    // back), and recovery touches only consumers whose status is gone.
                    match self.session.store.exists(&self.tree.status(&self.id)).await {
                        Ok(Some(_)) => break Ok(()),
                        Ok(None) => {
                            break Err(QueueError::Unknown(format!(
                                "{}: an ack retried after an unknown outcome found the slot \
                                 gone and this consumer's registration gone too: either the \
                                 first attempt landed or recovery took the message back",
                                delivery.slot
                            )))
                        }
                        Err(err) => {
                            break Err(QueueError::Unknown(format!(
                                "{}: an ack retried after an unknown outcome found the slot \
                                 gone; whether this consumer still lives could not be read: \
                                 {err}",
                                delivery.slot
                            )))
                        }
                    }
                }
                Err(StoreError::NoNode(_)) if unknown_in_session.is_some() => {
                    break Err(QueueError::Unknown(format!(
                        "{}: an ack retried after an unknown outcome found the slot gone, and \
                         the slot is not this session's own: either the first attempt landed \
                         or recovery took the message back",
                        delivery.slot
                    )))
                }
                Err(StoreError::NoNode(_) | StoreError::BadVersion(_)) => {
                    break Err(QueueError::TakenBack)
                }
                Err(err) if err.is_unknown_outcome() => {
                    unknown_in_session.get_or_insert(session_id);
                    if Instant::now() >= deadline {
                        break Err(err.into());
                    }
                    if matches!(err, StoreError::SessionExpired(_)) {
                        if let Err(err) = self.reregister().await {
                            break Err(err);
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                Err(err) => break Err(err.into()),
            }
        };
        // Once an attempt may have landed, only a read of the slot can settle the
        // ack; any other failure after it (no session to be had, the budget spent)
        // leaves the outcome unknown, not definitely failed.
        let result = match (result, unknown_in_session) {
            (Err(err), Some(_))
                if !matches!(err, QueueError::TakenBack | QueueError::Unknown(_)) =>
            {
                Err(QueueError::Unknown(format!("an earlier attempt may have landed, then: {err}")))
            }
            (result, _) => result,
        };
        let settled = result.is_ok() || matches!(result, Err(QueueError::TakenBack));
        if settled {
            self.ack_in_doubt.remove(&delivery.slot);
            if self.held.as_ref().is_some_and(|held| held.slot == delivery.slot) {
                self.held = None;
            }
            self.batch_held.retain(|held| held.slot != delivery.slot);
        } else if let Some(session) = unknown_in_session {
            self.ack_in_doubt.insert(delivery.slot.clone(), session);
        }
        result
    }

    /// True when `slot` belongs to this consumer's current registration, whose
    /// `status` lives exactly as long as the current session.
    fn holds_slot(&self, slot: &str) -> bool {
        slot.strip_prefix(&self.tree.consumer(&self.id)).is_some_and(|rest| rest.starts_with('/'))
    }

    /// Drops the session without closing it, as a crashed process would: its
    /// `status` stays until the session times out, then recovery takes back what
    /// it held.
    pub fn crash(self) {
        self.session.store.abandon();
    }

    /// Closes the session: `status` goes at once; a message still held is taken
    /// back by the next recovery pass.
    pub async fn close(self) {
        self.session.store.close().await;
    }
}
