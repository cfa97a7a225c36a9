//! Shared subscription executions: subscribers whose document, variables, operation name and
//! visibility (the caller's scope) are identical share one execution, whose responses are
//! serialised once and fanned out to each of them; a subscriber only adds its envelope and its
//! socket write. A shared execution ends when its last subscriber leaves. A subscription that
//! resumes from a cursor replays events of its own and runs alone.
//!
//! Each response travels with the cursor of the last event its execution processed (read from
//! the execution's [`CursorSlot`]), so a subscriber that falls behind the feed is told where to
//! resume.

use std::{
    borrow::Cow,
    collections::HashMap,
    sync::{
        Arc, Mutex, Weak,
        atomic::{AtomicU64, Ordering},
    },
};

use async_graphql::{Data, Executor, Request, Response};
use futures::{Stream, StreamExt, stream::BoxStream};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_util::sync::CancellationToken;

use crate::{
    auth::Caller,
    error::{AppError, INTERNAL_CODE},
    graphql::{
        context::{ClientAddr, RequestId},
        events::CursorSlot,
        executor::{ObservedSchema, data_of},
    },
    subscriptions::{Registry, Tracked},
};

/// One subscriber of the shared feed for `key`: its messages, until the feed completes or the
/// subscriber lags (then one `SUBSCRIPTION_LAGGED` error and the end).
pub(super) fn subscriber_stream(
    hub: &Arc<SubscriptionHub>,
    key: FeedKey,
    request: Request,
    session: Arc<Data>,
    wrap: impl Fn(&str) -> String + Send + Unpin + 'static,
    tracked: Arc<Tracked>,
) -> BoxStream<'static, String> {
    let request_id = data_of::<RequestId>(&session).map(|id| id.0.clone());
    let (feed, receiver) = hub.join(key, request, session);
    tracked.reads(Arc::clone(&feed.produced));
    Subscriber {
        items: BroadcastStream::new(receiver),
        wrap,
        request_id,
        ended: false,
        last: feed.last.load(Ordering::Acquire),
        tracked: Some(tracked),
        _alive: Counted::new(feed),
    }
    .boxed()
}

/// A subscriber's messages from its shared feed: each payload in its envelope, with its own
/// request id on errors. One small state machine rather than a chain of stream adapters: it
/// is polled once per subscriber for every event the feed fans out.
struct Subscriber<W> {
    items: BroadcastStream<FeedItem>,
    wrap: W,
    request_id: Option<String>,
    /// Set by the feed's end or a lag error: nothing more is read.
    ended: bool,
    /// The cursor of the last event this subscriber received (or the feed's when it joined).
    last: u64,
    /// What subscription admin shows of it.
    tracked: Option<Arc<Tracked>>,
    /// Holding the feed keeps the shared execution alive.
    _alive: Counted,
}

impl<W: Fn(&str) -> String + Unpin> Stream for Subscriber<W> {
    type Item = String;

    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<String>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        let message = match futures::ready!(this.items.poll_next_unpin(cx)) {
            Some(Ok(FeedItem::Next(payload, cursor))) => {
                this.last = cursor;
                if let Some(tracked) = &this.tracked {
                    tracked.delivered();
                }
                (this.wrap)(&with_request_id(&payload, this.request_id.as_deref()))
            }
            Some(Ok(FeedItem::Complete)) | None => {
                this.ended = true;
                return Poll::Ready(None);
            }
            Some(Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(
                skipped,
            ))) => {
                // The subscriber is dropped after this error.
                this.ended = true;
                (this.wrap)(&lagged_payload(
                    skipped,
                    this.last,
                    this.request_id.as_deref(),
                ))
            }
        };
        Poll::Ready(Some(message))
    }
}

pub(super) fn serialize(response: &Response) -> String {
    serde_json::to_string(response).unwrap_or_else(|e| {
        let err = AppError::Internal(anyhow::anyhow!("encoding a GraphQL response: {e}"));
        let masked = Response::from_errors(vec![err.into_server_error()]);
        serde_json::to_string(&masked).unwrap_or_default()
    })
}

/// A shared feed's payload as one subscriber sees it: its errors carry that subscriber's
/// request id (the shared execution stamped its first subscriber's).
/// Payloads without errors, nearly all of them, are passed through untouched.
fn with_request_id<'a>(payload: &'a str, request_id: Option<&str>) -> Cow<'a, str> {
    let Some(id) = request_id else {
        return Cow::Borrowed(payload);
    };
    if !payload.contains("\"errors\"") {
        return Cow::Borrowed(payload);
    }
    let Ok(mut response) = serde_json::from_str::<serde_json::Value>(payload) else {
        return Cow::Borrowed(payload);
    };
    let Some(errors) = response
        .get_mut("errors")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return Cow::Borrowed(payload);
    };
    for error in errors
        .iter_mut()
        .filter_map(serde_json::Value::as_object_mut)
    {
        let extensions = error
            .entry("extensions")
            .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
        if let Some(extensions) = extensions.as_object_mut() {
            let previous = extensions.insert("requestId".into(), id.into());
            if extensions.get("code").and_then(serde_json::Value::as_str) == Some(INTERNAL_CODE) {
                // The cause was logged once, by the shared execution, under the request id of
                // the subscriber that started it: this line leads from this subscriber's id
                // to that one.
                tracing::error!(
                    feed.request_id = previous.as_ref().and_then(serde_json::Value::as_str),
                    "a shared subscription delivered a masked internal error"
                );
            }
        }
    }
    Cow::Owned(response.to_string())
}

/// The one error a lagging subscriber gets, with the cursor to resume from and its request id.
fn lagged_payload(skipped: u64, last: u64, request_id: Option<&str>) -> String {
    error_payload(
        &AppError::SubscriptionLagged {
            skipped,
            last_cursor: Some(last),
        },
        request_id,
    )
}

/// `error` as a subscription payload, with the subscriber's request id.
pub(super) fn error_payload(error: &AppError, request_id: Option<&str>) -> String {
    let err = async_graphql::ErrorExtensions::extend(error);
    let mut extensions = serde_json::to_value(&err.extensions).unwrap_or_default();
    if !extensions.is_object() {
        extensions = serde_json::json!({ "code": error.code() });
    }
    if let Some(id) = request_id {
        extensions["requestId"] = id.into();
    }
    serde_json::json!({
        "data": null,
        "errors": [{ "message": error.message(), "extensions": extensions }]
    })
    .to_string()
}

/// Copies the connection's caller and request id into a request's own data.
pub(super) fn clone_session(session: &Data) -> Data {
    let mut data = Data::default();
    if let Some(caller) = data_of::<Caller>(session) {
        data.insert(caller.clone());
    }
    if let Some(id) = data_of::<RequestId>(session) {
        data.insert(id.clone());
    }
    if let Some(client) = data_of::<ClientAddr>(session) {
        data.insert(client.clone());
    }
    data
}

/// What makes two subscriptions interchangeable: same document, variables, operation and
/// visibility.
#[derive(Clone, PartialEq, Eq, Hash)]
pub(super) struct FeedKey {
    query: String,
    variables: String,
    operation: Option<String>,
    visibility: String,
    /// Set for a subscription that runs alone (it resumes from a cursor).
    alone: Option<uuid::Uuid>,
}

impl FeedKey {
    pub(super) fn new(request: &Request, caller: &Caller, alone: bool) -> Self {
        Self {
            query: request.query.clone(),
            variables: serde_json::to_string(&request.variables).unwrap_or_default(),
            operation: request.operation_name.clone(),
            visibility: caller.visibility_key(),
            alone: alone.then(uuid::Uuid::new_v4),
        }
    }
}

#[derive(Clone)]
enum FeedItem {
    /// One response, serialised once for every subscriber, and the cursor of the last event
    /// the execution processed for it.
    Next(Arc<str>, u64),
    Complete,
}

/// One shared execution of a subscription.
struct Feed {
    tx: broadcast::Sender<FeedItem>,
    stop: CancellationToken,
    /// Responses produced so far (subscription admin's lag).
    produced: Arc<AtomicU64>,
    /// The cursor of the last response produced.
    last: Arc<AtomicU64>,
}

impl Drop for Feed {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Keeps the active-subscriptions gauge right for as long as a subscriber holds its feed.
struct Counted(#[expect(dead_code, reason = "held only to keep the feed alive")] Arc<Feed>);

impl Counted {
    fn new(feed: Arc<Feed>) -> Self {
        metrics::gauge!("aurum_graphql_subscriptions_active").increment(1.0);
        Self(feed)
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("aurum_graphql_subscriptions_active").decrement(1.0);
    }
}

/// The replica's shared subscription executions.
pub struct SubscriptionHub {
    pub(super) schema: ObservedSchema,
    capacity: usize,
    feeds: Mutex<HashMap<FeedKey, Weak<Feed>>>,
    /// This replica's live subscriptions, for subscription admin.
    pub(super) registry: Arc<Registry>,
}

impl SubscriptionHub {
    pub fn new(schema: ObservedSchema, capacity: usize, registry: Arc<Registry>) -> Self {
        Self {
            schema,
            capacity,
            feeds: Mutex::new(HashMap::new()),
            registry,
        }
    }

    /// Joins the feed for `key`, starting it when nobody runs it yet. The receiver exists
    /// before the execution starts, so the first subscriber misses nothing it produces.
    fn join(
        self: &Arc<Self>,
        key: FeedKey,
        mut request: Request,
        session: Arc<Data>,
    ) -> (Arc<Feed>, broadcast::Receiver<FeedItem>) {
        let mut feeds = match self.feeds.lock() {
            Ok(f) => f,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(feed) = feeds.get(&key).and_then(Weak::upgrade) {
            let rx = feed.tx.subscribe();
            return (feed, rx);
        }
        feeds.retain(|_, f| f.strong_count() > 0);
        let (tx, rx) = broadcast::channel(self.capacity);
        let stop = CancellationToken::new();
        let slot = CursorSlot::default();
        let feed = Arc::new(Feed {
            tx: tx.clone(),
            stop: stop.clone(),
            produced: Arc::default(),
            last: Arc::default(),
        });
        let (produced, last) = (Arc::clone(&feed.produced), Arc::clone(&feed.last));
        feeds.insert(key.clone(), Arc::downgrade(&feed));
        drop(feeds);
        metrics::gauge!("aurum_subscription_feeds_active").increment(1.0);
        let hub = Arc::clone(self);
        request.data = clone_session(&session);
        request.data.insert(slot.clone());
        let upstream = hub.schema.execute_stream(request, Some(session));
        // The feed runs in the span of the subscriber that started it, so its lines carry
        // that subscriber's request id; `with_request_id` links later subscribers to it.
        tokio::spawn(tracing::Instrument::in_current_span(async move {
            run_feed(upstream, tx, stop, slot, produced, last).await;
            if let Ok(mut feeds) = hub.feeds.lock()
                && feeds.get(&key).is_some_and(|f| f.strong_count() == 0)
            {
                feeds.remove(&key);
            }
            metrics::gauge!("aurum_subscription_feeds_active").decrement(1.0);
        }));
        (feed, rx)
    }
}

async fn run_feed(
    upstream: impl Stream<Item = Response> + Send,
    tx: broadcast::Sender<FeedItem>,
    stop: CancellationToken,
    slot: CursorSlot,
    produced: Arc<AtomicU64>,
    last: Arc<AtomicU64>,
) {
    futures::pin_mut!(upstream);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            item = upstream.next() => match item {
                Some(response) => {
                    let payload: Arc<str> = serialize(&response).into();
                    // The execution processed up to this event to produce this response.
                    let cursor = slot.get();
                    last.store(cursor, Ordering::Release);
                    produced.fetch_add(1, Ordering::Release);
                    if tx.send(FeedItem::Next(payload, cursor)).is_err() {
                        return;
                    }
                }
                None => {
                    let _ = tx.send(FeedItem::Complete);
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A feed of capacity 4 and one subscriber of it.
    fn feed_with_subscriber<W>(
        wrap: W,
        request_id: Option<&str>,
    ) -> (broadcast::Sender<FeedItem>, Subscriber<W>) {
        let (tx, rx) = broadcast::channel(4);
        let feed = Arc::new(Feed {
            tx: tx.clone(),
            stop: CancellationToken::new(),
            produced: Arc::default(),
            last: Arc::default(),
        });
        let subscriber = Subscriber {
            items: BroadcastStream::new(rx),
            wrap,
            request_id: request_id.map(str::to_owned),
            ended: false,
            last: 0,
            tracked: None,
            _alive: Counted::new(feed),
        };
        (tx, subscriber)
    }

    #[tokio::test]
    async fn a_subscriber_ends_on_lag_or_completion_only() {
        let (tx, mut subscriber) = feed_with_subscriber(|p: &str| format!("<{p}>"), Some("mine"));
        let mut cursor = 0;
        let mut send = |payload: &str| {
            cursor += 1;
            tx.send(FeedItem::Next(payload.into(), cursor)).is_ok()
        };
        // Data that merely mentions the lag error's code is data.
        let mention = r#"{"data":{"t":{"title":"SUBSCRIPTION_LAGGED"}}}"#;
        assert!(send(mention) && send(r#"{"data":1}"#));
        assert_eq!(subscriber.next().await, Some(format!("<{mention}>")));
        assert_eq!(subscriber.next().await.as_deref(), Some(r#"<{"data":1}>"#));
        // Falling more than the channel's capacity behind: one lag error, then the end.
        for _ in 0..6 {
            assert!(send(r#"{"data":2}"#));
        }
        let lagged = subscriber.next().await.unwrap_or_default();
        let v: serde_json::Value =
            serde_json::from_str(lagged.trim_start_matches('<').trim_end_matches('>'))
                .unwrap_or_default();
        assert_eq!(v["errors"][0]["extensions"]["code"], "SUBSCRIPTION_LAGGED");
        assert_eq!(v["errors"][0]["extensions"]["requestId"], "mine");
        // It resumes after the last event it received: the second.
        assert_eq!(v["errors"][0]["extensions"]["lastCursor"], "2");
        assert_eq!(subscriber.next().await, None);
        // A completed feed ends its subscribers.
        let (tx, mut subscriber) = feed_with_subscriber(|p: &str| p.to_owned(), None);
        assert!(
            tx.send(FeedItem::Complete).is_ok() && tx.send(FeedItem::Next("{}".into(), 1)).is_ok()
        );
        assert_eq!(subscriber.next().await, None);
        assert_eq!(subscriber.next().await, None);
    }

    #[test]
    fn shared_errors_carry_each_subscribers_request_id() {
        let first = r#"{"data":null,"errors":[{"message":"m","extensions":{"code":"C","requestId":"first"}},{"message":"n"}]}"#;
        let mine = with_request_id(first, Some("mine"));
        let v: serde_json::Value = serde_json::from_str(&mine).unwrap_or_default();
        assert_eq!(v["errors"][0]["extensions"]["requestId"], "mine", "{mine}");
        assert_eq!(v["errors"][0]["extensions"]["code"], "C", "{mine}");
        assert_eq!(v["errors"][1]["extensions"]["requestId"], "mine", "{mine}");
        assert_eq!(v["data"], serde_json::Value::Null, "{mine}");
        // A lag error gets one too.
        let lagged = lagged_payload(3, 9, Some("mine"));
        let v: serde_json::Value = serde_json::from_str(&lagged).unwrap_or_default();
        assert_eq!(v["errors"][0]["extensions"]["requestId"], "mine");
        assert_eq!(v["errors"][0]["extensions"]["code"], "SUBSCRIPTION_LAGGED");
        // Payloads without errors (a title that mentions them included) are not rewritten.
        let data = r#"{"data":{"t":{"title":"\"errors\""}}}"#;
        assert!(matches!(with_request_id(data, Some("mine")), Cow::Borrowed(p) if p == data));
        let plain = r#"{"data":{"t":1}}"#;
        assert!(matches!(
            with_request_id(plain, Some("mine")),
            Cow::Borrowed(_)
        ));
        assert!(matches!(with_request_id(first, None), Cow::Borrowed(_)));
    }
}
