//! Keyset pagination shared by every list: ordered by a time-ordered UUIDv7 id, `after` is the
//! last id seen. No offsets, so pages stay stable while rows are added. Lists are oldest first;
//! a log read from its end (the audit log) is newest first.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Select,
};
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

/// Runs `select` as one keyset page ordered by `id` (a UUIDv7 column), oldest first.
pub async fn keyset_page<E, C>(
    select: Select<E>,
    id: E::Column,
    page: PageRequest,
    conn: &C,
) -> Result<Page<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    page_in_order(select, id, page, conn, false).await
}

/// Like [`keyset_page`], newest first: `after` is the last (oldest) id seen, so the next page
/// holds older rows and rows added meanwhile never shift it.
pub async fn keyset_page_newest_first<E, C>(
    select: Select<E>,
    id: E::Column,
    page: PageRequest,
    conn: &C,
) -> Result<Page<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    page_in_order(select, id, page, conn, true).await
}

async fn page_in_order<E, C>(
    select: Select<E>,
    id: E::Column,
    page: PageRequest,
    conn: &C,
    newest_first: bool,
) -> Result<Page<E::Model>, DbErr>
where
    E: EntityTrait,
    C: ConnectionTrait,
{
    let mut query = if newest_first {
        select.order_by_desc(id)
    } else {
        select.order_by_asc(id)
    }
    .limit(page.first + 1);
    if let Some(after) = page.after {
        query = query.filter(if newest_first {
            id.lt(after)
        } else {
            id.gt(after)
        });
    }
    Ok(Page::from_overfetch(query.all(conn).await?, page.first))
}
