//! Helpers resolvers use to reach request data: the caller, the request id, the services,
//! ids and page arguments. Each turns a missing or malformed value into an `AppError`.

use async_graphql::{
    Context, ID,
    connection::{Connection, Edge},
};
use uuid::Uuid;

use crate::{
    auth::{Caller, RequestMeta},
    error::{AppError, AppResult},
    pagination::{Page, PageRequest},
    services::Services,
};

/// The request id of the current operation (set by the HTTP layer or the WebSocket).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The client's address: the TCP peer of the connection, or, when that peer is a trusted
/// proxy (`AURUM_TRUSTED_PROXIES`), the client it names in `X-Forwarded-For`.
#[derive(Debug, Clone)]
pub struct ClientAddr(pub String);

/// The services, from schema data.
pub fn services<'a>(ctx: &Context<'a>) -> AppResult<&'a Services> {
    ctx.data::<Services>()
        .map_err(|_| AppError::Internal(anyhow::anyhow!("Services missing from schema data")))
}

/// The caller of this request; anonymous when the transport attached none.
pub fn caller<'a>(ctx: &Context<'a>) -> &'a Caller {
    ctx.data_opt::<Caller>().unwrap_or(&Caller::Anonymous)
}

/// Who is calling and the request id, for a service mutation.
pub fn meta(ctx: &Context<'_>) -> RequestMeta {
    RequestMeta {
        caller: caller(ctx).clone(),
        request_id: ctx
            .data_opt::<RequestId>()
            .map(|r| r.0.clone())
            .unwrap_or_default(),
        client: ctx.data_opt::<ClientAddr>().map(|c| c.0.clone()),
    }
}

/// Parses a GraphQL `ID` that must hold a UUID.
pub fn parse_id(field: &'static str, id: &ID) -> AppResult<Uuid> {
    Uuid::parse_str(id.as_str())
        .map_err(|_| AppError::bad_field(field, format!("{field} is not a valid id")))
}

/// Page size of a connection queried without `first` (never above the configured maximum).
pub const DEFAULT_PAGE_SIZE: u64 = 20;

/// A connection's `first`: the default page size when omitted, never above the configured
/// maximum; a negative one is `BAD_USER_INPUT`.
pub fn page_size(services: &Services, first: Option<i32>) -> AppResult<u64> {
    let max = services.max_page_size;
    match first {
        None => Ok(max.min(DEFAULT_PAGE_SIZE)),
        Some(n) => Ok(u64::try_from(n)
            .map_err(|_| AppError::bad_field("first", "first must not be negative"))?
            .min(max)),
    }
}

/// Validates `first`/`after` and clamps `first` to the configured maximum.
pub fn page_request(
    services: &Services,
    first: Option<i32>,
    after: Option<String>,
) -> AppResult<PageRequest> {
    let first = page_size(services, first)?;
    let after = after
        .map(|c| {
            Uuid::parse_str(&c)
                .map_err(|_| AppError::bad_field("after", "after is not a cursor from this list"))
        })
        .transpose()?;
    Ok(PageRequest { first, after })
}

/// Cost of a connection: its page size times the cost of one item (plus the count).
pub fn page_cost(first: Option<i32>, child_complexity: usize) -> usize {
    let first = usize::try_from(first.unwrap_or(20))
        .unwrap_or(0)
        .clamp(1, 10_000);
    first.saturating_mul(child_complexity).saturating_add(1)
}

/// The extra fields every connection carries.
#[derive(async_graphql::SimpleObject)]
pub struct ConnectionFields {
    /// Number of items matching the filter, over all pages.
    pub total_count: u64,
}

/// `true` when the client selected `totalCount`, so the count query runs only when asked for.
pub fn wants_total(ctx: &Context<'_>) -> bool {
    ctx.look_ahead().field("totalCount").exists()
}

/// Builds a Relay connection from a page of rows, with the row's id as cursor.
pub fn connection<T, N>(
    page: Page<T>,
    request: PageRequest,
    total_count: u64,
    id: impl Fn(&T) -> Uuid,
    node: impl Fn(T) -> N,
) -> Connection<String, N, ConnectionFields>
where
    N: async_graphql::OutputType,
{
    let mut conn = Connection::with_additional_fields(
        request.after.is_some(),
        page.has_next,
        ConnectionFields { total_count },
    );
    conn.edges.extend(
        page.items
            .into_iter()
            .map(|row| Edge::new(id(&row).to_string(), node(row))),
    );
    conn
}
