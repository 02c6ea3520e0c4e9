//! `/apievents`: the master's system events, pushed as JSON arrays of Qorus's event
//! objects (`id`, `time`, `class`, `classstr`, `event`, `eventstr`, `severity`,
//! `severitystr`, `caller`, `info`), oldest first, as they are raised.
//!
//! One task polls the master (`omq.system.get-events`, a long poll) for all the sockets and
//! fans each batch out through a broadcast channel; it starts with the first socket and
//! ends with the last. A socket gets the events raised after its handshake. Each socket's
//! queue is bounded ([`QUEUE`] batches): a client that falls behind is closed with 1008
//! and a reason, never buffered for without limit.
//!
//! The client may send a filter at any time, replacing the one before: a JSON list of
//! criteria, `[{"class": "SERVICE"}, {"event": "USER_EVENT"}]`, or the same list as
//! `{"filter": [...]}`, or one criterion object alone. A criterion names a `class`, an
//! `event`, or both (by name, any case, or by code); an event passes when any criterion
//! matches it. `[]` (or `null`) lets everything through again. A filter that cannot be read
//! is answered with `{"err": "BAD-REQUEST", "desc": ...}` and the filter before stays.
//! The text `ping` is answered `pong`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use prost::Message as _;
use serde_json::{json, Value};
use sluice_proto::v1::{Envelope, EventList, EventQuery};
use tokio::sync::{broadcast, watch, Mutex};

use super::{close, Incoming};
use crate::errors::ApiError;
use crate::{Gateway, MasterLink};

/// Event batches a socket may fall behind by before it is closed.
pub const QUEUE: usize = 64;
/// How long one poll waits at the master for an event.
const POLL_WAIT: Duration = Duration::from_secs(10);
/// How long the master may take beyond the wait.
const CALL_SLACK: Duration = Duration::from_secs(15);

/// One event, with its class and code for the filters.
#[derive(Debug)]
pub(crate) struct FeedEvent {
    class: u32,
    event: u32,
    json: Value,
}

pub(crate) type Batch = Arc<Vec<FeedEvent>>;

/// The poll shared by every `/apievents` socket; `None` while no socket is open.
#[derive(Default)]
pub struct EventFeed {
    live: Mutex<Option<broadcast::Sender<Batch>>>,
}

impl EventFeed {
    /// A receiver of every batch from now on; starts the poll for the first socket.
    pub(crate) async fn subscribe(
        self: &Arc<Self>,
        master: &Arc<dyn MasterLink>,
        stopping: watch::Receiver<bool>,
    ) -> Result<broadcast::Receiver<Batch>, ApiError> {
        let mut live = self.live.lock().await;
        if let Some(sender) = live.as_ref() {
            return Ok(sender.subscribe());
        }
        // Where the events of "from now on" begin.
        let since = query(master, u64::MAX, Duration::ZERO).await?.last_id;
        let (sender, receiver) = broadcast::channel(QUEUE);
        *live = Some(sender.clone());
        tokio::spawn(poll(self.clone(), master.clone(), sender, since, stopping));
        Ok(receiver)
    }
}

async fn query(
    master: &Arc<dyn MasterLink>,
    since_id: u64,
    wait: Duration,
) -> Result<EventList, ApiError> {
    let timeout = wait + CALL_SLACK;
    let request = Envelope {
        method: "omq.system.get-events".into(),
        body: EventQuery {
            since_id,
            wait_ms: wait.as_millis() as u32,
            ..Default::default()
        }
        .encode_to_vec(),
        deadline_ms: sluice_core::now_ms() + timeout.as_millis() as i64,
        ..Default::default()
    };
    let reply = master.call(request, timeout).await.map_err(|e| {
        ApiError::new(
            "MASTER-UNAVAILABLE",
            format!("cannot reach the master for its events: {e}"),
        )
    })?;
    if let Some(error) = reply.error {
        return Err(ApiError::from_bus(error));
    }
    EventList::decode(reply.body.as_slice()).map_err(|e| {
        ApiError::new(
            "INTERNAL-ERROR",
            format!("the master's events are malformed: {e}"),
        )
    })
}

/// The poll: until the last socket is gone or the process stops.
async fn poll(
    feed: Arc<EventFeed>,
    master: Arc<dyn MasterLink>,
    sender: broadcast::Sender<Batch>,
    mut since: u64,
    mut stopping: watch::Receiver<bool>,
) {
    let mut warned: Option<std::time::Instant> = None;
    loop {
        if sender.receiver_count() == 0 {
            // Checked again under the lock: a socket may be subscribing right now.
            let mut live = feed.live.lock().await;
            if sender.receiver_count() == 0 {
                *live = None;
                return;
            }
        }
        let reply = tokio::select! {
            reply = query(&master, since, POLL_WAIT) => reply,
            _ = super::stopped(&mut stopping) => break,
        };
        match reply {
            Ok(list) => {
                warned = None;
                if list.last_id < since {
                    // A new master: its ids start again from 1.
                    since = 0;
                    continue;
                }
                let batch: Vec<FeedEvent> = list
                    .events
                    .iter()
                    .filter(|e| e.id > since)
                    .map(|e| FeedEvent {
                        class: e.class_code,
                        event: e.event_code,
                        json: crate::rest::event_json(e),
                    })
                    .collect();
                since = list.events.iter().map(|e| e.id).fold(since, u64::max);
                if !batch.is_empty() {
                    // No receiver left is fine: the next round ends the poll.
                    let _ = sender.send(Arc::new(batch));
                }
            }
            Err(err) => {
                // Said once a minute while it lasts.
                if warned.is_none_or(|at| at.elapsed() >= Duration::from_secs(60)) {
                    tracing::warn!("/apievents: {err} (trying again every second)");
                    warned = Some(std::time::Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = super::stopped(&mut stopping) => break,
                }
            }
        }
    }
    *feed.live.lock().await = None;
}

/// Which events a socket wants: any criterion matches; none at all lets everything by.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    criteria: Vec<Criterion>,
}

#[derive(Debug, Default, PartialEq)]
struct Criterion {
    class: Option<u32>,
    event: Option<u32>,
}

impl Filter {
    /// A filter message (see the module's documentation).
    pub fn parse(text: &str) -> Result<Filter, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("the filter is not JSON: {e}"))?;
        let items = match value {
            Value::Null => Vec::new(),
            Value::Array(items) => items,
            Value::Object(mut object) if object.contains_key("filter") => {
                match (object.remove("filter"), object.is_empty()) {
                    (Some(Value::Array(items)), true) => items,
                    (Some(Value::Null), true) => Vec::new(),
                    (_, false) => {
                        return Err("a {\"filter\": [...]} message has no other keys".into())
                    }
                    _ => return Err("\"filter\" must be a list of criteria".into()),
                }
            }
            Value::Object(object) => vec![Value::Object(object)],
            other => {
                return Err(format!(
                    "a filter is a list of criteria such as [{{\"class\": \"SERVICE\"}}], \
                     not {other}"
                ))
            }
        };
        let mut criteria = Vec::new();
        for item in items {
            let Value::Object(object) = item else {
                return Err(format!(
                    "a criterion is an object with \"class\" and/or \"event\", not {item}"
                ));
            };
            let mut criterion = Criterion::default();
            for (key, value) in object {
                let text = match &value {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    _ => return Err(format!("{key:?} must be a name or a code, not {value}")),
                };
                match key.as_str() {
                    "class" => {
                        criterion.class = Some(crate::rest::class_code(&text).map_err(|e| e.desc)?)
                    }
                    "event" => {
                        criterion.event = Some(crate::rest::event_code(&text).map_err(|e| e.desc)?)
                    }
                    _ => {
                        return Err(format!(
                            "a criterion takes \"class\" and \"event\", not {key:?}"
                        ))
                    }
                }
            }
            criteria.push(criterion);
        }
        Ok(Filter { criteria })
    }

    fn passes(&self, class: u32, event: u32) -> bool {
        self.criteria.is_empty()
            || self
                .criteria
                .iter()
                .any(|c| c.class.is_none_or(|x| x == class) && c.event.is_none_or(|x| x == event))
    }
}

/// `GET /apievents`.
pub(crate) async fn open(
    State(gateway): State<Arc<Gateway>>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match super::accept(&gateway, upgrade, &headers) {
        Ok(upgrade) => upgrade,
        Err(response) => return *response,
    };
    let local = &gateway.local;
    let feed = match local
        .events
        .subscribe(&gateway.master, local.stopping.clone())
        .await
    {
        Ok(feed) => feed,
        Err(error) => return super::refused(&headers, error),
    };
    let stopping = local.stopping.clone();
    upgrade.on_upgrade(move |socket| serve(socket, feed, stopping))
}

async fn serve(
    mut socket: WebSocket,
    mut feed: broadcast::Receiver<Batch>,
    mut stopping: watch::Receiver<bool>,
) {
    let mut filter = Filter::default();
    let mut ping = tokio::time::interval(super::PING_EVERY);
    ping.tick().await;
    loop {
        tokio::select! {
            batch = feed.recv() => match batch {
                Ok(batch) => {
                    let events: Vec<&Value> = batch
                        .iter()
                        .filter(|e| filter.passes(e.class, e.event))
                        .map(|e| &e.json)
                        .collect();
                    if events.is_empty() {
                        continue;
                    }
                    let text = Value::from(events.into_iter().cloned().collect::<Vec<_>>()).to_string();
                    if let Err(gone) = super::send(&mut socket, Message::Text(text.into())).await {
                        return super::end(&mut socket, gone, "events").await;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let reason = format!(
                        "too slow: {n} batches of events were dropped; connect again"
                    );
                    return super::close(&mut socket, close::POLICY, &reason).await;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The feed ends only when the gateway stops (it may notice before this socket does).
                    return super::close(&mut socket, close::GOING_AWAY, "the gateway is stopping").await;
                }
            },
            received = socket.recv() => {
                let incoming = Incoming::of(received);
                if !super::common(&mut socket, &incoming).await {
                    return;
                }
                match incoming {
                    Incoming::Text(text) if !text.trim().eq_ignore_ascii_case("ping") => {
                        match Filter::parse(&text) {
                            Ok(new) => filter = new,
                            Err(desc) => {
                                let error = json!({"err": "BAD-REQUEST", "desc": desc}).to_string();
                                if let Err(gone) = super::send(&mut socket, Message::Text(error.into())).await {
                                    return super::end(&mut socket, gone, "an error").await;
                                }
                            }
                        }
                    }
                    Incoming::Binary => {
                        return super::close(
                            &mut socket,
                            close::UNSUPPORTED,
                            "send text: a JSON filter, or ping",
                        )
                        .await;
                    }
                    _ => {}
                }
            },
            due = super::due(&mut ping, &mut stopping) => {
                if !super::keep_alive(&mut socket, due).await {
                    return;
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters() {
        let f = Filter::parse(r#"[{"class": "service"}, {"event": 9001}]"#).unwrap();
        let service = sluice_core::events::EventCode::ALL
            .iter()
            .map(|e| e.class())
            .find(|c| c.name() == "SERVICE")
            .unwrap()
            .code();
        assert!(f.passes(service, 1));
        assert!(f.passes(1, 9001));
        assert!(!f.passes(1, 1001));
        let both = Filter::parse(r#"{"filter": [{"class": "SYSTEM", "event": "SYSTEM_STARTUP"}]}"#)
            .unwrap();
        assert!(both.passes(1, 1001));
        assert!(!both.passes(1, 1002));
        assert_eq!(Filter::parse("[]").unwrap(), Filter::default());
        assert_eq!(
            Filter::parse(r#"{"filter": null}"#).unwrap(),
            Filter::default()
        );
        assert!(Filter::default().passes(7, 7));
        assert_eq!(
            Filter::parse(r#"{"event": "USER_EVENT"}"#).unwrap(),
            Filter::parse(r#"[{"event": "9001"}]"#).unwrap()
        );
        for bad in [
            "nope",
            "5",
            r#"[{"class": "NOPE"}]"#,
            r#"[{"severity": "INFO"}]"#,
            r#"[["SYSTEM"]]"#,
            r#"{"filter": [], "x": 1}"#,
            r#"[{"class": true}]"#,
        ] {
            assert!(Filter::parse(bad).is_err(), "{bad}");
        }
    }
}
