//! System events, with Qorus's classes, codes and severities, and the master's in-memory
//! event sink.
//!
//! The sink keeps at most `qorus.max-events` events; every event gets a monotonic id so a
//! client can ask for "everything since id N" and learn, from the oldest id still kept,
//! whether it missed some. New events are also broadcast to live subscribers (the bus's PUB
//! socket and WebSocket clients attach there).

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;
use tokio::sync::broadcast;

/// Event classes (Qorus `QE_CLASS_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EventClass {
    System = 1,
    Workflow = 2,
    Service = 3,
    User = 4,
    Job = 5,
    Alert = 6,
    Group = 7,
    Connection = 8,
    Process = 9,
    Cluster = 10,
}

impl EventClass {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::System => "SYSTEM",
            Self::Workflow => "WORKFLOW",
            Self::Service => "SERVICE",
            Self::User => "USER",
            Self::Job => "JOB",
            Self::Alert => "ALERT",
            Self::Group => "GROUP",
            Self::Connection => "CONNECTION",
            Self::Process => "PROCESS",
            Self::Cluster => "CLUSTER",
        }
    }
}

/// Event severities (Qorus `OMQ::ES_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum Severity {
    Info = 0,
    Warning = 1,
    Error = 2,
    Fatal = 3,
}

impl Severity {
    pub fn code(self) -> u32 {
        self as u32
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Info => "INFO",
            Self::Warning => "WARNING",
            Self::Error => "ERROR",
            Self::Fatal => "FATAL",
        }
    }
}

macro_rules! event_codes {
    ($( $variant:ident = $code:literal, $class:ident; )*) => {
        /// Event codes (Qorus `QEC_*`), each belonging to one class.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum EventCode {
            $( $variant, )*
        }

        impl EventCode {
            pub const ALL: &'static [EventCode] = &[$( EventCode::$variant, )*];

            pub fn code(self) -> u32 {
                match self { $( Self::$variant => $code, )* }
            }

            pub fn class(self) -> EventClass {
                match self { $( Self::$variant => EventClass::$class, )* }
            }

            /// The Qorus name, e.g. `SYSTEM_STARTUP`.
            pub fn name(self) -> &'static str {
                match self { $( Self::$variant => event_codes!(@name $variant), )* }
            }

            pub fn from_code(code: u32) -> Option<Self> {
                match code { $( $code => Some(Self::$variant), )* _ => None }
            }
        }
    };
    (@name SystemStartup) => { "SYSTEM_STARTUP" };
    (@name SystemShutdown) => { "SYSTEM_SHUTDOWN" };
    (@name SystemError) => { "SYSTEM_ERROR" };
    (@name SystemHealthChanged) => { "SYSTEM_HEALTH_CHANGED" };
    (@name GroupStatusChanged) => { "GROUP_STATUS_CHANGED" };
    (@name WorkflowStart) => { "WORKFLOW_START" };
    (@name WorkflowStop) => { "WORKFLOW_STOP" };
    (@name WorkflowDataSubmitted) => { "WORKFLOW_DATA_SUBMITTED" };
    (@name WorkflowStatusChanged) => { "WORKFLOW_STATUS_CHANGED" };
    (@name WorkflowDataUpdated) => { "WORKFLOW_DATA_UPDATED" };
    (@name WorkflowRecovered) => { "WORKFLOW_RECOVERED" };
    (@name ServiceStart) => { "SERVICE_START" };
    (@name ServiceStop) => { "SERVICE_STOP" };
    (@name ServiceError) => { "SERVICE_ERROR" };
    (@name JobStart) => { "JOB_START" };
    (@name JobStop) => { "JOB_STOP" };
    (@name JobError) => { "JOB_ERROR" };
    (@name JobInstanceStart) => { "JOB_INSTANCE_START" };
    (@name JobInstanceStop) => { "JOB_INSTANCE_STOP" };
    (@name JobRecovered) => { "JOB_RECOVERED" };
    (@name ProcessStarted) => { "PROCESS_STARTED" };
    (@name ProcessStopped) => { "PROCESS_STOPPED" };
    (@name ProcessStartError) => { "PROCESS_START_ERROR" };
    (@name ProcessMemoryChanged) => { "PROCESS_MEMORY_CHANGED" };
    (@name UserEvent) => { "USER_EVENT" };
}

event_codes! {
    SystemStartup = 1001, System;
    SystemShutdown = 1002, System;
    SystemError = 1003, System;
    SystemHealthChanged = 1004, System;
    GroupStatusChanged = 1101, Group;
    WorkflowStart = 2001, Workflow;
    WorkflowStop = 2002, Workflow;
    WorkflowDataSubmitted = 2004, Workflow;
    WorkflowStatusChanged = 2009, Workflow;
    WorkflowDataUpdated = 2014, Workflow;
    WorkflowRecovered = 2016, Workflow;
    ServiceStart = 3001, Service;
    ServiceStop = 3002, Service;
    ServiceError = 3003, Service;
    JobStart = 4001, Job;
    JobStop = 4002, Job;
    JobError = 4003, Job;
    JobInstanceStart = 4004, Job;
    JobInstanceStop = 4005, Job;
    JobRecovered = 4006, Job;
    ProcessStarted = 6001, Process;
    ProcessStopped = 6002, Process;
    ProcessStartError = 6003, Process;
    ProcessMemoryChanged = 6004, Process;
    UserEvent = 9001, User;
}

/// One system event as the sink keeps it and clients receive it. Field names follow the
/// objects Qorus's `/apievents` and event API return.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    pub id: u64,
    /// Milliseconds since the Unix epoch.
    pub time: i64,
    pub class: u32,
    pub classstr: &'static str,
    pub event: u32,
    pub eventstr: &'static str,
    pub severity: u32,
    pub severitystr: &'static str,
    pub caller: String,
    pub info: serde_json::Value,
}

impl Event {
    pub fn to_proto(&self) -> sluice_proto::v1::Event {
        sluice_proto::v1::Event {
            id: self.id,
            time_ms: self.time,
            class_code: self.class,
            class_name: self.classstr.to_string(),
            event_code: self.event,
            event_name: self.eventstr.to_string(),
            severity: self.severity,
            severity_name: self.severitystr.to_string(),
            caller: self.caller.clone(),
            info_json: self.info.to_string().into_bytes(),
        }
    }
}

struct Ring {
    next_id: u64,
    events: VecDeque<Event>,
}

/// The bounded, in-memory event sink.
pub struct EventSink {
    /// `qorus.max-events`; an operator may change it while the master runs.
    capacity: std::sync::atomic::AtomicUsize,
    ring: Mutex<Ring>,
    live: broadcast::Sender<Event>,
}

impl EventSink {
    pub fn new(capacity: usize) -> Self {
        let (live, _) = broadcast::channel(1024);
        Self {
            capacity: std::sync::atomic::AtomicUsize::new(capacity.max(1)),
            ring: Mutex::new(Ring {
                next_id: 1,
                events: VecDeque::new(),
            }),
            live,
        }
    }

    /// Keeps at most `capacity` events from now on, dropping the oldest past it at once.
    pub fn set_capacity(&self, capacity: usize) {
        let capacity = capacity.max(1);
        self.capacity
            .store(capacity, std::sync::atomic::Ordering::Relaxed);
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        while ring.events.len() > capacity {
            ring.events.pop_front();
        }
    }

    /// Records an event, logs it, and hands it to live subscribers. Returns its id.
    pub fn raise(
        &self,
        code: EventCode,
        severity: Severity,
        caller: &str,
        info: serde_json::Value,
    ) -> u64 {
        let class = code.class();
        let event = {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            let event = Event {
                id: ring.next_id,
                time: crate::now_ms(),
                class: class.code(),
                classstr: class.name(),
                event: code.code(),
                eventstr: code.name(),
                severity: severity.code(),
                severitystr: severity.name(),
                caller: caller.to_string(),
                info,
            };
            ring.next_id += 1;
            let capacity = self.capacity.load(std::sync::atomic::Ordering::Relaxed);
            while ring.events.len() >= capacity {
                ring.events.pop_front();
            }
            ring.events.push_back(event.clone());
            event
        };
        tracing::info!(
            target: "sluice::events",
            id = event.id,
            class = event.classstr,
            code = event.event,
            severity = event.severitystr,
            caller = %event.caller,
            info = %event.info,
            "event {}",
            event.eventstr
        );
        // No subscriber is not an error: the sink keeps the event for later queries.
        let _ = self.live.send(event.clone());
        event.id
    }

    /// Events with an id greater than `since`, oldest first, at most `limit`.
    pub fn since(&self, since: u64, limit: usize) -> Vec<Event> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.events
            .iter()
            .filter(|e| e.id > since)
            .take(limit)
            .cloned()
            .collect()
    }

    /// The id the next event will get; clients use `last_id()` as their next `since`.
    pub fn last_id(&self) -> u64 {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.next_id - 1
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Event> {
        self.live.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_classes_are_qorus_numbers() {
        assert_eq!(EventCode::SystemStartup.code(), 1001);
        assert_eq!(EventCode::SystemStartup.class(), EventClass::System);
        assert_eq!(EventCode::ProcessStarted.code(), 6001);
        assert_eq!(EventCode::UserEvent.code(), 9001);
        assert_eq!(
            EventCode::from_code(6003),
            Some(EventCode::ProcessStartError)
        );
        let mut seen = std::collections::HashSet::new();
        for c in EventCode::ALL {
            assert!(seen.insert(c.code()), "duplicate code {}", c.code());
            assert_eq!(EventCode::from_code(c.code()), Some(*c));
        }
    }

    #[test]
    fn sink_is_bounded_and_ids_are_monotonic() {
        let sink = EventSink::new(3);
        for _ in 0..5 {
            sink.raise(
                EventCode::UserEvent,
                Severity::Info,
                "test",
                serde_json::json!({}),
            );
        }
        let kept = sink.since(0, 100);
        assert_eq!(kept.iter().map(|e| e.id).collect::<Vec<_>>(), vec![3, 4, 5]);
        assert_eq!(sink.since(4, 100).len(), 1);
        assert_eq!(sink.last_id(), 5);
    }

    #[tokio::test]
    async fn subscribers_receive_new_events() {
        let sink = EventSink::new(10);
        let mut rx = sink.subscribe();
        sink.raise(
            EventCode::SystemStartup,
            Severity::Info,
            "master",
            serde_json::json!({"instance-key": "k"}),
        );
        let e = rx.recv().await.expect("event");
        assert_eq!(e.eventstr, "SYSTEM_STARTUP");
        assert_eq!(e.info["instance-key"], "k");
    }
}
