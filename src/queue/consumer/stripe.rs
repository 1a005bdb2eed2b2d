//! Which waiting messages a consumer tries, and when it lists `messages/` again.
//!
//! Consumers that all walk one sorted listing from its head race for the same
//! messages: a lost race costs a failed `multi` (still a transaction), and a cache
//! full of names other consumers took forces a new listing of the whole queue, so a
//! message's cost grew with the queue's depth and with the number of consumers.
//!
//! Instead each consumer owns a *stripe*: of the `n` live consumers (those whose
//! `status` exists, ranked by id), the one ranked `r` prefers the messages whose
//! sequence number is `r` modulo `n`. Racing consumers then rarely meet, and a
//! consumer lists the queue again only once its own stripe of the cached listing
//! is used up: one O(depth) listing pays for depth/n takes, so the cost of a
//! message stays flat however deep the queue is.
//!
//! Stripes pay only on a queue deep enough that every consumer gets full
//! batches from its own: a listing shorter than two batches per consumer, or
//! one that holds less than a batch of ours (a dead or slow consumer's stripe is
//! what is left), is taken whole, oldest first, spread over the oldest few
//! blocks when races were lost lately, as before stripes. So a shallow queue
//! stays FIFO and nothing is starved.
//!
//! Views of who is live may differ for a moment (a consumer joining or leaving):
//! then stripes overlap and races are lost, exactly as before stripes, and every
//! guarantee rests on the take's `multi`, never on the stripe. FIFO is best effort.

/// How many blocks of the oldest messages a contended consumer picks from.
const BLOCK_SPREAD: usize = 8;

/// The share of the queue a consumer prefers: sequence numbers `rank` modulo `of`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stripe {
    rank: u64,
    of: u64,
}

impl Stripe {
    /// A lone consumer: the whole queue, strict FIFO.
    pub(super) const WHOLE: Stripe = Stripe { rank: 0, of: 1 };

    /// The stripe of consumer `me` among the live consumer ids `live` (any order;
    /// `me` counts whether it is listed or not: our own `status` may be missing
    /// from a listing read at the wrong moment, but we are live).
    pub(super) fn among(me: &str, live: &[String]) -> Stripe {
        let mut ids: Vec<&str> = live.iter().map(String::as_str).collect();
        ids.push(me);
        ids.sort_unstable();
        ids.dedup();
        let rank = ids.iter().position(|id| *id == me).expect("me was added");
        Stripe { rank: rank as u64, of: ids.len() as u64 }
    }

    fn owns(self, seq: u64) -> bool {
        seq % self.of == self.rank
    }
}

/// The sequence number of `message-<seq10>`, exactly as producers name them (the
/// name is rebuilt from it, so only names that round-trip count).
fn parse(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("message-")?;
    if digits.len() != 10 || !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn name(seq: u64) -> String {
    format!("message-{seq:010}")
}

/// A consumer's cached listing of `messages/`, and where it is in its stripe.
#[derive(Debug)]
pub(super) struct Listing {
    /// Sequence numbers of the last listing, ascending: the one copy of it, at 8
    /// bytes a message rather than a `String` each (a million waiting messages are
    /// 8 MB here, not 56).
    seqs: Vec<u64>,
    /// Listed names that are not `message-<seq10>`: never taken, kept only so that
    /// the watch compares against the listing exactly as it was.
    odd: Vec<String>,
    /// The stripe this listing is walked for.
    stripe: Stripe,
    /// Index in `seqs` from which our stripe has not been offered yet.
    mine: usize,
    /// Index in `seqs` from which the whole listing has not been offered yet (when
    /// it is not walked by stripe).
    whole: usize,
    /// This listing is walked by stripe: deep enough (two batches per consumer)
    /// and holding at least a batch of ours. Otherwise it is taken whole.
    striped: bool,
    /// Offered but not tried (it did not fit the batch, or the take failed): offered
    /// first next time, so that it is not skipped until the next listing.
    back: Vec<u64>,
}

impl Default for Listing {
    fn default() -> Self {
        Listing {
            seqs: Vec::new(),
            odd: Vec::new(),
            stripe: Stripe::WHOLE,
            mine: 0,
            whole: 0,
            striped: false,
            back: Vec::new(),
        }
    }
}

impl Listing {
    /// Replaces the cache with a new listing of `messages/`, walked for `stripe`;
    /// `batch` is how many messages a take asks for.
    pub(super) fn replace(&mut self, children: Vec<String>, stripe: Stripe, batch: usize) {
        self.seqs.clear();
        self.odd.clear();
        for child in children {
            match parse(&child) {
                Some(seq) => self.seqs.push(seq),
                None => self.odd.push(child),
            }
        }
        self.seqs.sort_unstable();
        self.seqs.shrink_to_fit();
        self.stripe = stripe;
        self.mine = 0;
        self.whole = 0;
        self.back.clear();
        let batch = batch.max(1);
        let own = self.seqs.iter().filter(|seq| stripe.owns(**seq)).take(batch).count();
        let deep = self.seqs.len() as u64 >= 2 * stripe.of * batch as u64;
        self.striped = stripe.of > 1 && deep && own >= batch;
    }

    /// The stripe the cache is walked for.
    pub(super) fn stripe(&self) -> Stripe {
        self.stripe
    }

    /// Up to `max` names to try next: what was given back, then our stripe, oldest
    /// first, or, when the listing is taken whole, the oldest (from a random one of
    /// the oldest few blocks when `spread`). Empty: the cache has nothing more
    /// worth trying; list again.
    pub(super) fn next(&mut self, max: usize, spread: bool) -> Vec<String> {
        let max = max.max(1);
        let mut picked: Vec<u64> = Vec::with_capacity(max);
        let from_back = self.back.len().min(max);
        picked.extend(self.back.drain(..from_back));
        if self.striped {
            while picked.len() < max && self.mine < self.seqs.len() {
                let seq = self.seqs[self.mine];
                self.mine += 1;
                if self.stripe.owns(seq) {
                    picked.push(seq);
                }
            }
        } else {
            // Blocks of `max`; skipped ones stay for the others racing us (and come
            // back in the next listing if nobody takes them).
            let skip = if spread { max * rand::random_range(0..BLOCK_SPREAD) } else { 0 };
            let mut skipped = 0;
            while picked.len() < max && self.whole < self.seqs.len() {
                let seq = self.seqs[self.whole];
                self.whole += 1;
                if skipped < skip && self.whole_left() > max {
                    skipped += 1;
                    continue;
                }
                picked.push(seq);
            }
        }
        picked.into_iter().map(name).collect()
    }

    /// How many names of the listing taken whole are not offered yet.
    fn whole_left(&self) -> usize {
        self.seqs.len() - self.whole
    }

    /// `name` was offered but not tried: offer it first next time.
    pub(super) fn give_back(&mut self, name: &str) {
        if let Some(seq) = parse(name) {
            self.back.insert(0, seq);
        }
    }

    /// The names of the listing as it was read, for the watch that waits for it to
    /// change (only called when nothing was takeable, so rarely large).
    pub(super) fn seen(&self) -> Vec<String> {
        self.seqs.iter().copied().map(name).chain(self.odd.iter().cloned()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listing(seqs: &[u64], stripe: Stripe, batch: usize) -> Listing {
        let mut listing = Listing::default();
        listing.replace(seqs.iter().map(|seq| name(*seq)).collect(), stripe, batch);
        listing
    }

    fn seqs(names: &[String]) -> Vec<u64> {
        names.iter().map(|name| parse(name).expect("a message name")).collect()
    }

    #[test]
    fn stripes_rank_consumers_by_id_and_count_me() {
        let live = vec!["b".to_owned(), "a".to_owned(), "d".to_owned()];
        assert_eq!(Stripe::among("a", &live), Stripe { rank: 0, of: 3 });
        assert_eq!(Stripe::among("d", &live), Stripe { rank: 2, of: 3 });
        // Not listed (our status read at the wrong moment): counted anyway.
        assert_eq!(Stripe::among("c", &live), Stripe { rank: 2, of: 4 });
        assert_eq!(Stripe::among("a", &[]), Stripe::WHOLE);
    }

    #[test]
    fn a_consumer_takes_its_own_stripe_oldest_first() {
        let all: Vec<u64> = (0..40).rev().collect();
        let mut listing = listing(&all, Stripe { rank: 1, of: 4 }, 3);
        assert_eq!(seqs(&listing.next(3, true)), vec![1, 5, 9]);
        assert_eq!(seqs(&listing.next(3, true)), vec![13, 17, 21]);
        assert_eq!(seqs(&listing.next(8, true)), vec![25, 29, 33, 37]);
        // Ours used up in a listing that held plenty of ours: list again rather
        // than take the others' messages.
        assert!(listing.next(3, true).is_empty());
    }

    #[test]
    fn consumers_with_different_ranks_never_pick_the_same_message() {
        let all: Vec<u64> = (100..1100).collect();
        let mut taken = std::collections::HashSet::new();
        for rank in 0..4 {
            let mut listing = listing(&all, Stripe { rank, of: 4 }, 16);
            loop {
                let names = listing.next(16, false);
                if names.is_empty() {
                    break;
                }
                for seq in seqs(&names) {
                    assert!(taken.insert(seq), "{seq} picked twice");
                }
            }
        }
        assert_eq!(taken.len(), all.len(), "every message is someone's");
    }

    #[test]
    fn a_lone_consumer_is_strict_fifo() {
        // A lone consumer never loses a race, so it never spreads its takes.
        let mut listing = listing(&[7, 3, 5, 4], Stripe::WHOLE, 2);
        assert_eq!(seqs(&listing.next(2, false)), vec![3, 4]);
        assert_eq!(seqs(&listing.next(2, false)), vec![5, 7]);
        assert!(listing.next(2, false).is_empty());
    }

    #[test]
    fn a_shallow_listing_is_taken_whole_oldest_first() {
        // Fewer than two batches per consumer: stripes would not pay.
        let mut listing = listing(&[1, 2, 3, 4, 5, 7, 9], Stripe { rank: 0, of: 2 }, 4);
        assert_eq!(seqs(&listing.next(4, false)), vec![1, 2, 3, 4]);
        assert_eq!(seqs(&listing.next(4, false)), vec![5, 7, 9]);
        assert!(listing.next(4, false).is_empty());
    }

    #[test]
    fn a_listing_with_less_than_a_batch_of_ours_is_taken_whole() {
        // Deep, but rank 0 of 2 (the even numbers) has one: the rest is a dead or
        // slow consumer's stripe, not to be starved.
        let mut all: Vec<u64> = (0..40).map(|seq| seq * 2 + 1).collect();
        all.push(100);
        let mut listing = listing(&all, Stripe { rank: 0, of: 2 }, 4);
        assert_eq!(seqs(&listing.next(4, false)), vec![1, 3, 5, 7]);
    }

    #[test]
    fn contended_whole_takes_come_from_the_oldest_few_blocks() {
        let all: Vec<u64> = (0..1000).map(|seq| seq * 2 + 1).collect();
        for _ in 0..50 {
            let mut listing = listing(&all, Stripe { rank: 0, of: 2 }, 4);
            let first = seqs(&listing.next(4, true));
            assert_eq!(first.len(), 4);
            let block = (first[0] as usize - 1) / 2 / 4;
            assert!(block < BLOCK_SPREAD, "block {block} is past the oldest {BLOCK_SPREAD}");
            assert!(first.windows(2).all(|pair| pair[1] == pair[0] + 2), "{first:?}");
        }
    }

    #[test]
    fn given_back_names_come_first_and_a_new_listing_forgets_them() {
        let mut listing = listing(&[1, 2, 3, 4], Stripe::WHOLE, 2);
        let names = listing.next(2, false);
        listing.give_back(&names[1]);
        assert_eq!(seqs(&listing.next(2, false)), vec![2, 3]);
        listing.give_back("message-0000000003");
        listing.replace(vec![name(9)], Stripe::WHOLE, 2);
        assert_eq!(seqs(&listing.next(2, false)), vec![9]);
    }

    #[test]
    fn the_watch_sees_the_listing_as_it_was() {
        let mut listing = Listing::default();
        let children = vec![name(12), "lock".to_owned(), name(3), "message-12".to_owned(), name(5)];
        listing.replace(children.clone(), Stripe::WHOLE, 1);
        let mut seen = listing.seen();
        let mut expected = children;
        seen.sort();
        expected.sort();
        assert_eq!(seen, expected);
        // Odd names are never offered.
        assert_eq!(seqs(&listing.next(10, false)), vec![3, 5, 12]);
    }
}
