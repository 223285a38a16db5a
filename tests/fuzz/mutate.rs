//! Byte-level mutations of valid seed files: bit flips, truncations, splices, insertions and
//! deletions, the damage a disk, a transfer or a careless edit does. Each mutation picks its
//! position as a fraction of the current length, so proptest shrinks towards fewer mutations at
//! earlier offsets.

use proptest::prelude::*;
use proptest::sample::Index;

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    /// Flips bit `bit` of one byte.
    Flip(Index, u8),
    /// Sets one byte to a boundary value.
    Set(Index, u8),
    /// Cuts the file there.
    Truncate(Index),
    /// Copies `len` bytes from one position over another (a splice of the file into itself).
    Splice(Index, Index, usize),
    /// Inserts bytes.
    Insert(Index, Vec<u8>),
    /// Removes up to `len` bytes.
    Delete(Index, usize),
}

impl Mutation {
    fn apply(&self, bytes: &mut Vec<u8>) {
        let len = bytes.len();
        let at = |index: &Index| if len == 0 { 0 } else { index.index(len) };
        match self {
            Mutation::Flip(index, bit) if len > 0 => bytes[at(index)] ^= 1 << (bit % 8),
            Mutation::Set(index, value) if len > 0 => bytes[at(index)] = *value,
            Mutation::Truncate(index) => bytes.truncate(at(index)),
            Mutation::Splice(from, to, n) if len > 0 => {
                let (from, to) = (at(from), at(to));
                let n = (*n).min(len - from).min(len - to);
                let chunk = bytes[from..from + n].to_vec();
                bytes[to..to + n].copy_from_slice(&chunk);
            }
            Mutation::Insert(index, extra) => {
                let at = at(index);
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::Delete(index, n) if len > 0 => {
                let at = at(index);
                bytes.drain(at..(at + n).min(len));
            }
            _ => {}
        }
    }
}

fn mutation() -> impl Strategy<Value = Mutation> {
    let boundary = prop::sample::select(vec![0u8, 1, 0x7f, 0x80, 0xff, b'-', b'9', b'"', b',']);
    prop_oneof![
        4 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        2 => (any::<Index>(), boundary).prop_map(|(i, v)| Mutation::Set(i, v)),
        1 => any::<Index>().prop_map(Mutation::Truncate),
        1 => (any::<Index>(), any::<Index>(), 1usize..256)
            .prop_map(|(a, b, n)| Mutation::Splice(a, b, n)),
        1 => (any::<Index>(), prop::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        1 => (any::<Index>(), 1usize..64).prop_map(|(i, n)| Mutation::Delete(i, n)),
    ]
}

/// One of `seeds` with one to eight mutations applied.
pub fn mutated(seeds: Vec<Vec<u8>>) -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(seeds),
        prop::collection::vec(mutation(), 1..8),
    )
        .prop_map(|(mut bytes, mutations)| {
            for m in &mutations {
                m.apply(&mut bytes);
            }
            bytes
        })
}
