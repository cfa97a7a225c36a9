//! Keyset pagination shared by every list: ordered by a time-ordered UUIDv7 id, `after` is the
//! last id seen. No offsets, so pages stay stable while rows are added.

use uuid::Uuid;

/// A page request after clamping.
#[derive(Debug, Clone, Copy)]
pub struct PageRequest {
    pub first: u64,
    pub after: Option<Uuid>,
}

/// One page of rows, and whether more follow.
#[derive(Debug, Clone)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub has_next: bool,
}

impl<T> Page<T> {
    /// Builds a page from a query that fetched `first + 1` rows.
    pub fn from_overfetch(mut rows: Vec<T>, first: u64) -> Self {
        let has_next = rows.len() as u64 > first;
        rows.truncate(usize::try_from(first).unwrap_or(usize::MAX));
        Self {
            items: rows,
            has_next,
        }
    }
}
