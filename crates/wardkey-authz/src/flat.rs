//! Copy-on-write containers two levels deep, for the collections a decision reads: the dense
//! record slots and the id → slot interners.
//!
//! `imbl`'s persistent vector and hash map are four to six nodes deep at a hospital's scale
//! (100,000 users), and a decision on a cold cache paid a miss at almost every node: most of
//! its time. Here a lookup is one step into a small top-level array (hot, shared by every
//! decision) and one into a chunk or a shard. A writer copies the top level once per batch
//! of changes and each chunk or shard it touches once; everything else is shared with the
//! snapshot readers still hold, as before.

use std::borrow::Borrow;
use std::collections::HashMap;
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

/// The hasher of every interner. foldhash is seeded per process at random, and the keys are
/// ids and names an administrator or the server made, not a request's.
type Hasher = foldhash::fast::RandomState;

/// Id → slot, sharded so that a change copies one shard rather than the whole map.
pub(crate) struct IdMap<K> {
    shards: Arc<[Arc<HashMap<K, u32, Hasher>>]>,
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
        let hasher = Hasher::default();
        let shards = std::iter::repeat_with(|| Arc::new(HashMap::with_hasher(hasher.clone()))).take(SHARDS).collect();
        IdMap { shards, hasher, len: 0 }
    }
}

impl<K> std::fmt::Debug for IdMap<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdMap").field("len", &self.len).finish()
    }
}

impl<K: Hash + Eq + Clone> IdMap<K> {
    /// The shard of a key. Bits 32 to 38 of the hash: the maps inside use the low bits for the
    /// bucket and the top seven for the tag, which would be all alike within a shard chosen by
    /// either.
    fn shard_of<Q: Hash + ?Sized>(&self, k: &Q) -> usize {
        ((self.hasher.hash_one(k) >> 32) as usize) & (SHARDS - 1)
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get<Q>(&self, k: &Q) -> Option<&u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shards.get(self.shard_of(k))?.get(k)
    }

    pub fn insert(&mut self, k: K, v: u32) -> Option<u32> {
        let shard = self.shard_of(&k);
        let map = Arc::make_mut(Arc::make_mut(&mut self.shards).get_mut(shard)?);
        let old = map.insert(k, v);
        if old.is_none() {
            self.len += 1;
        }
        old
    }

    pub fn remove<Q>(&mut self, k: &Q) -> Option<u32>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let shard = self.shard_of(k);
        // Not copying a shard for a key it does not hold.
        self.shards.get(shard)?.get(k)?;
        let map = Arc::make_mut(Arc::make_mut(&mut self.shards).get_mut(shard)?);
        let old = map.remove(k);
        if old.is_some() {
            self.len -= 1;
        }
        old
    }

    pub fn iter(&self) -> impl Iterator<Item = (&K, &u32)> {
        self.shards.iter().flat_map(|s| s.iter())
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
        let shared = a.shards.iter().zip(b.shards.iter()).filter(|(x, y)| Arc::ptr_eq(x, y)).count();
        assert!((SHARDS - 2..SHARDS).contains(&shared), "only the written shards are copies ({shared} shared)");
    }
}
