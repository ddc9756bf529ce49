//! Merkle tree over canonical record bytes, with inclusion proofs.
//!
//! Leaves and inner nodes are hashed under different domain tags, so a leaf can never pass for a
//! node. An odd node at the end of a level is carried up unchanged (not duplicated), so two
//! different record lists never share a root.

use serde::{Deserialize, Serialize};

use crate::codec::to_canonical;
use crate::crypto::Hash;

const LEAF: &str = "leasemesh/v1/merkle-leaf";
const NODE: &str = "leasemesh/v1/merkle-node";
const EMPTY: &str = "leasemesh/v1/merkle-empty";

/// Hash of one leaf: the canonical bytes of a record.
pub fn leaf_hash<T: Serialize>(item: &T) -> Hash {
    Hash::domain(LEAF, &[&to_canonical(item)])
}

fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Hash::domain(NODE, &[left.as_bytes(), right.as_bytes()])
}

/// Root over `items` in the order given.
pub fn root<T: Serialize>(items: &[T]) -> Hash {
    let leaves: Vec<Hash> = items.iter().map(leaf_hash).collect();
    root_of_leaves(leaves)
}

/// Root over leaf hashes.
pub fn root_of_leaves(mut level: Vec<Hash>) -> Hash {
    if level.is_empty() {
        return Hash::domain(EMPTY, &[]);
    }
    while level.len() > 1 {
        level = next_level(&level);
    }
    level[0]
}

fn next_level(level: &[Hash]) -> Vec<Hash> {
    level
        .chunks(2)
        .map(|pair| match pair {
            [l, r] => node_hash(l, r),
            [single] => *single,
            _ => Hash::ZERO, // chunks(2) yields one or two items
        })
        .collect()
}

/// Proof that the leaf at `index` is in a tree of `leaves` leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proof {
    pub index: u64,
    pub leaves: u64,
    /// Sibling hashes from the leaf level up.
    pub siblings: Vec<Hash>,
}

/// Builds the proof for `index`, or `None` if it is out of range.
pub fn prove(leaf_hashes: &[Hash], index: usize) -> Option<Proof> {
    if index >= leaf_hashes.len() {
        return None;
    }
    let mut siblings = Vec::new();
    let mut level = leaf_hashes.to_vec();
    let mut idx = index;
    while level.len() > 1 {
        let sib = idx ^ 1;
        if sib < level.len() {
            siblings.push(level[sib]);
        }
        level = next_level(&level);
        idx /= 2;
    }
    Some(Proof { index: index as u64, leaves: leaf_hashes.len() as u64, siblings })
}

impl Proof {
    /// The root this proof leads to from `leaf`, or `None` if the proof is malformed.
    pub fn root_from(&self, leaf: Hash) -> Option<Hash> {
        if self.index >= self.leaves {
            return None;
        }
        let mut acc = leaf;
        let mut idx = self.index;
        let mut n = self.leaves;
        let mut sibs = self.siblings.iter();
        while n > 1 {
            let carried = idx % 2 == 0 && idx + 1 == n;
            if !carried {
                let s = sibs.next()?;
                acc = if idx % 2 == 0 { node_hash(&acc, s) } else { node_hash(s, &acc) };
            }
            idx /= 2;
            n = n.div_ceil(2);
        }
        if sibs.next().is_some() {
            return None;
        }
        Some(acc)
    }

    /// True if `item` is the leaf at `self.index` under `root`.
    pub fn verify<T: Serialize>(&self, item: &T, root: &Hash) -> bool {
        self.root_from(leaf_hash(item)) == Some(*root)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_leaf_proves_for_every_size() {
        for n in 0..40u32 {
            let items: Vec<u32> = (0..n).collect();
            let leaves: Vec<Hash> = items.iter().map(leaf_hash).collect();
            let r = root(&items);
            for (i, item) in items.iter().enumerate() {
                let p = prove(&leaves, i).unwrap();
                assert!(p.verify(item, &r), "n={n} i={i}");
                assert!(!p.verify(&(item + 1000), &r));
                let mut wrong = p.clone();
                wrong.index = (wrong.index + 1) % u64::from(n.max(1));
                if n > 1 {
                    assert!(!wrong.verify(item, &r), "n={n} i={i} moved index");
                }
            }
            assert!(prove(&leaves, n as usize).is_none());
        }
    }

    #[test]
    fn roots_differ_for_different_lists() {
        assert_ne!(root(&[1u32, 2, 3]), root(&[1u32, 2, 3, 3]));
        assert_ne!(root(&[1u32, 2]), root(&[2u32, 1]));
        assert_ne!(root::<u32>(&[]), root(&[0u32]));
        // A leaf never equals an inner node over the same bytes.
        let l = [leaf_hash(&1u32), leaf_hash(&2u32)];
        assert_ne!(root_of_leaves(l.to_vec()), leaf_hash(&l));
    }
}
