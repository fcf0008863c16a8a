//! Copy-on-write containers two levels deep, for the collections a decision reads: the dense
//! record slots and the id → slot interners.
//!
//! `imbl`'s persistent vector and hash map are four to six nodes deep at a hospital's scale
//! (100,000 users), and a decision on a cold cache paid a miss at almost every node: most of
//! its time. Here a lookup is one step into a small top-level array (hot, shared by every
//! decision) and one into a chunk or a shard's table, whose entries hold the keys themselves.
//! A writer copies the top level once per batch of changes and each chunk or shard it touches
//! once; everything else is shared with the snapshot readers still hold, as before.

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;

const CHUNK_BITS: u32 = 6;
/// Slots per chunk: a chunk is copied whole by the first change to it in a batch.
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNK_MASK: usize = CHUNK - 1;

/// A growable array of slots addressed by a dense `u32`, shared between snapshots.
pub(crate) struct Slots<T> {
    chunks: Arc<Vec<Arc<[T]>>>,
    len: usize,
}

impl<T> Clone for Slots<T> {
    fn clone(&self) -> Self {
        Slots { chunks: self.chunks.clone(), len: self.len }
    }
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Slots { chunks: Arc::default(), len: 0 }
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Slots<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slots").field("len", &self.len).finish()
    }
}

impl<T> Slots<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, ix: usize) -> Option<&T> {
        if ix >= self.len {
            return None;
        }
        self.chunks.get(ix >> CHUNK_BITS)?.get(ix & CHUNK_MASK)
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.chunks.iter().flat_map(|c| c.iter()).take(self.len)
    }
}

impl<T: Clone + Default> Slots<T> {
    /// The slot, copied out of any snapshot that shares it first.
    pub fn get_mut(&mut self, ix: usize) -> Option<&mut T> {
        if ix >= self.len {
            return None;
        }
        let chunk = Arc::make_mut(&mut self.chunks).get_mut(ix >> CHUNK_BITS)?;
        Arc::make_mut(chunk).get_mut(ix & CHUNK_MASK)
    }

    pub fn push_back(&mut self, value: T) {
        let ix = self.len;
        if ix & CHUNK_MASK == 0 {
            let fresh: Arc<[T]> = std::iter::repeat_with(T::default).take(CHUNK).collect();
            Arc::make_mut(&mut self.chunks).push(fresh);
        }
        self.len += 1;
        if let Some(slot) = self.get_mut(ix) {
            *slot = value;
        }
    }
}

const SHARD_BITS: u32 = 7;
/// Shards per map: a shard is copied whole by the first change to it in a batch, so about
/// 1/128 of the ids of one kind (800 at 100,000 users).
const SHARDS: usize = 1 << SHARD_BITS;
/// The smallest table a shard grows to once it holds anything.
const MIN_TABLE: usize = 8;

/// The hasher of every interner. foldhash is seeded per process at random, and the keys are
/// ids and names an administrator or the server made, not a request's.
type Hasher = foldhash::fast::RandomState;

#[derive(Clone)]
struct Entry<K> {
    key: K,
    ix: u32,
    /// The low half of the key's hash: where its probe starts, and a cheap first comparison.
    hash: u32,
}

/// An open-addressing table (linear probing, never more than half full, removal by backward
/// shift so that no tombstones build up), its length a power of two.
#[derive(Clone)]
struct Shard<K> {
    table: Arc<[Option<Entry<K>>]>,
    len: usize,
}

impl<K> Default for Shard<K> {
    fn default() -> Self {
        Shard { table: Arc::new([]), len: 0 }
    }
}

/// Id → slot. 128 shards, each a table with the keys inline and copied on write: a lookup
/// reads the shard's pointer from an array every decision keeps in cache, then (at most half
/// full) mostly a single line of entries. A change copies one shard's table.
pub(crate) struct IdMap<K> {
    shards: Arc<Vec<Shard<K>>>,
    hasher: Hasher,
    len: usize,
}

impl<K> Clone for IdMap<K> {
    fn clone(&self) -> Self {
        IdMap { shards: self.shards.clone(), hasher: self.hasher.clone(), len: self.len }
    }
}

impl<K> Default for IdMap<K> {
    fn default() -> Self {
        IdMap {
            shards: Arc::new(std::iter::repeat_with(Shard::default).take(SHARDS).collect()),
            hasher: Hasher::default(),
            len: 0,
        }
    }
}

impl<K> std::fmt::Debug for IdMap<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMap").field("len", &self.len).finish()
    }
}

/// Where the probe for `hash` finds `k`, or the empty entry that ends it. `None` only for an
/// empty table (a table is never full, but the walk is bounded all the same).
fn probe<K, Q>(table: &[Option<Entry<K>>], hash: u32, k: &Q) -> Option<(usize, bool)>
where
    K: Borrow<Q>,
    Q: Eq + ?Sized,
{
    let mask = table.len().checked_sub(1)?;
    let mut i = hash as usize & mask;
    for _ in 0..table.len() {
        match table.get(i)? {
            None => return Some((i, false)),
            Some(e) if e.hash == hash && e.key.borrow() == k => return Some((i, true)),
            Some(_) => i = (i + 1) & mask,
        }
    }
    None
}

impl<K: Hash + Eq + Clone> IdMap<K> {
    /// The shard and the probe hash of a key. The shard comes from bits 32 to 38, the probe
    /// from the low 32: independent, so keys spread within a shard.
    fn place<Q: Hash + ?Sized>(&self, k: &Q) -> (usize, u32) {
        let h = self.hasher.hash_one(k);
        (((h >> 32) as usize) & (SHARDS - 1), h as u32)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (s, hash) = self.place(k);
        let table = &self.shards.get(s)?.table;
        match probe(table, hash, k)? {
            (i, true) => table.get(i)?.as_ref().map(|e| &e.ix),
            (_, false) => None,
        }
    }

    pub fn insert(&mut self, k: K, v: u32) -> Option<u32> {
        let (s, hash) = self.place(&k);
        let shard = Arc::make_mut(&mut self.shards).get_mut(s)?;
        if let Some((i, true)) = probe(&shard.table, hash, &k) {
            let e = Arc::make_mut(&mut shard.table).get_mut(i)?.as_mut()?;
            return Some(std::mem::replace(&mut e.ix, v));
        }
        if (shard.len + 1) * 2 > shard.table.len() {
            let size = (shard.table.len() * 2).max(MIN_TABLE);
            let mut grown: Vec<Option<Entry<K>>> = vec![None; size];
            for e in shard.table.iter().flatten() {
                if let Some((i, false)) = probe(&grown, e.hash, &e.key)
                    && let Some(free) = grown.get_mut(i)
                {
                    *free = Some(e.clone());
                }
            }
            shard.table = grown.into();
        }
        let (i, _) = probe(&shard.table, hash, &k)?;
        *Arc::make_mut(&mut shard.table).get_mut(i)? = Some(Entry { key: k, ix: v, hash });
        shard.len += 1;
        self.len += 1;
        None
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (s, hash) = self.place(k);
        // Not copying a shard for a key it does not hold.
        let (mut hole, true) = probe(&self.shards.get(s)?.table, hash, k)? else { return None };
        let shard = Arc::make_mut(&mut self.shards).get_mut(s)?;
        let table = Arc::make_mut(&mut shard.table);
        let removed = table.get_mut(hole)?.take()?;
        // Backward shift: each entry after the hole, up to the next empty one, moves into the
        // hole if the hole lies between its home and where it sits, so no probe is cut short.
        let mask = table.len() - 1;
        let mut j = hole;
        for _ in 0..table.len() {
            j = (j + 1) & mask;
            let Some(home) = table.get(j)?.as_ref().map(|e| e.hash as usize & mask) else { break };
            if (j.wrapping_sub(home) & mask) >= (j.wrapping_sub(hole) & mask) {
                let moved = table.get_mut(j)?.take();
                *table.get_mut(hole)? = moved;
                hole = j;
            }
        }
        shard.len -= 1;
        self.len -= 1;
        Some(removed.ix)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &u32)> {
        self.shards.iter().flat_map(|s| s.table.iter().flatten().map(|e| (&e.key, &e.ix)))
    }
}

/// A small sorted set of slot numbers in one allocation (none while empty): a subject's
/// groups, which every decision walks. A change copies it, which is cheap at the sizes a
/// person's group list has.
#[derive(Clone, Default, Debug, PartialEq, Eq)]
pub(crate) struct IxSet(Option<Arc<[u32]>>);

impl IxSet {
    pub fn as_slice(&self) -> &[u32] {
        self.0.as_deref().unwrap_or(&[])
    }

    pub fn iter(&self) -> std::slice::Iter<'_, u32> {
        self.as_slice().iter()
    }

    pub fn len(&self) -> usize {
        self.as_slice().len()
    }

    pub fn insert(&mut self, v: u32) -> bool {
        let now = self.as_slice();
        let Err(pos) = now.binary_search(&v) else { return false };
        let mut next = Vec::with_capacity(now.len() + 1);
        next.extend_from_slice(now.get(..pos).unwrap_or_default());
        next.push(v);
        next.extend_from_slice(now.get(pos..).unwrap_or_default());
        self.0 = Some(next.into());
        true
    }

    pub fn remove(&mut self, v: &u32) -> bool {
        let now = self.as_slice();
        let Ok(pos) = now.binary_search(v) else { return false };
        self.0 = (now.len() > 1).then(|| now.iter().enumerate().filter(|(i, _)| *i != pos).map(|(_, x)| *x).collect());
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_share_until_written() {
        let mut a: Slots<u32> = Slots::default();
        for i in 0..200 {
            a.push_back(i);
        }
        let b = a.clone();
        *a.get_mut(130).unwrap() = 7;
        a.push_back(999);
        assert_eq!(a.get(130), Some(&7));
        assert_eq!(b.get(130), Some(&130));
        assert_eq!((a.len(), b.len()), (201, 200));
        assert_eq!(b.get(200), None);
        assert_eq!(a.get(200), Some(&999));
        assert_eq!(a.iter().count(), 201);
        assert_eq!(b.iter().copied().collect::<Vec<_>>(), (0..200).collect::<Vec<_>>());
        // Untouched chunks are the same allocation in both.
        assert!(Arc::ptr_eq(&a.chunks[0], &b.chunks[0]));
        assert!(!Arc::ptr_eq(&a.chunks[2], &b.chunks[2]));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        /// Keep a copy of the map as it is now, which later changes must not touch.
        Snapshot,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        // A small key space, so that keys are replaced, removed and probed for often, and
        // shards grow and clusters form and are shifted back.
        prop_oneof![
            4 => (0u16..600, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
            3 => (0u16..600).prop_map(Op::Remove),
            1 => Just(Op::Snapshot),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]
        /// The id map answers like `std`'s hash map after any sequence of changes, and a copy
        /// taken along the way keeps answering as it did when it was taken.
        #[test]
        fn id_map_is_a_map(ops in proptest::collection::vec(op(), 1..3000)) {
            let mut map: IdMap<u16> = IdMap::default();
            let mut model = std::collections::HashMap::new();
            let mut copies = Vec::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => proptest::prop_assert_eq!(map.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => proptest::prop_assert_eq!(map.remove(&k), model.remove(&k)),
                    Op::Snapshot => copies.push((map.clone(), model.clone())),
                }
                proptest::prop_assert_eq!(map.len(), model.len());
            }
            copies.push((map, model));
            for (map, model) in copies {
                for k in 0u16..600 {
                    proptest::prop_assert_eq!(map.get(&k), model.get(&k));
                }
                let mut listed: Vec<(u16, u32)> = map.iter().map(|(k, v)| (*k, *v)).collect();
                let mut expected: Vec<(u16, u32)> = model.into_iter().collect();
                listed.sort_unstable();
                expected.sort_unstable();
                proptest::prop_assert_eq!(listed, expected);
            }
        }
    }

    #[test]
    fn ix_set_stays_sorted_and_unique() {
        let mut s = IxSet::default();
        for v in [5, 1, 9, 5, 3] {
            s.insert(v);
        }
        assert_eq!(s.as_slice(), &[1, 3, 5, 9]);
        assert!(s.remove(&5) && !s.remove(&5) && s.as_slice().contains(&9));
        let copy = s.clone();
        for v in [1, 3, 9] {
            s.remove(&v);
        }
        assert_eq!((s.len(), s, copy.as_slice()), (0, IxSet::default(), &[1, 3, 9][..]));
    }

    #[test]
    fn id_map_shares_until_written() {
        let mut a: IdMap<String> = IdMap::default();
        for i in 0..1000u32 {
            assert_eq!(a.insert(format!("k{i}"), i), None);
        }
        let b = a.clone();
        assert_eq!(a.insert("k5".into(), 50), Some(5));
        assert_eq!(a.remove("k6"), Some(6));
        assert_eq!(a.remove("k6"), None);
        assert_eq!(a.remove("absent"), None);
        assert_eq!((a.len(), b.len()), (999, 1000));
        assert_eq!((a.get("k5"), b.get("k5")), (Some(&50), Some(&5)));
        assert_eq!((a.get("k6"), b.get("k6")), (None, Some(&6)));
        assert_eq!(a.iter().count(), 999);
        let shared = a.shards.iter().zip(b.shards.iter()).filter(|(x, y)| Arc::ptr_eq(&x.table, &y.table)).count();
        assert!((SHARDS - 2..SHARDS).contains(&shared), "only the written shards are copies ({shared} shared)");
    }
}
