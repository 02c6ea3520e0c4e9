//! What a workflow process reads and writes (`store/engine.rs`): the program it loads, the
//! orders it claims (alone and against concurrent claimers), the transitions it commits
//! under ownership, and the work it hands back when it stops. Every body runs on SQLite
//! and, when `SLUICE_TEST_PG_URL` names a PostgreSQL server, on PostgreSQL too (a database
//! of its own, dropped afterwards), as in `store.rs`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

use anyhow::{Context, Result};
use serde_json::{json, Value};
use sluice_core::interfaces::{self, Definition};
use sluice_core::options::SystemDb;
use sluice_core::store::engine::{
    ClaimedOrder, ErrorPolicy, ErrorWrite, OrderTransition, OrderWrite, Owner, StepState, StepWrite,
};
use sluice_core::store::{NewOrder, Session, SessionHolder, SessionStatus, Store};

#[macro_use]
mod common;

on_both_backends!(
    load_program_reads_steps_code_and_errors,
    claim_takes_runnable_orders_by_priority,
    concurrent_claimers_take_each_order_once,
    commit_writes_owned_orders_and_reports_lost_ones,
    release_returns_in_progress_orders_to_retry,
    large_batches_span_statement_chunks,
);

/// All rows of a query on whichever backend `store` uses; the caller's type annotation
/// names the row type. Booleans decode as `bool` on both (BOOLEAN vs 0/1).
macro_rules! rows {
    ($store:expr, $sql:expr $(, $bind:expr)* $(,)?) => {{
        let store: &Store = $store;
        let sql: &str = $sql;
        match (store.sqlite_pool(), store.pg_pool()) {
            (Some(pool), _) => sqlx::query_as(sql)$(.bind($bind))*.fetch_all(pool).await,
            (None, Some(pool)) => sqlx::query_as(sql)$(.bind($bind))*.fetch_all(pool).await,
            (None, None) => unreachable!("a store has a pool"),
        }
    }};
}

const STEPS_PY: &str = "\
from wf import QorusNormalStep


class Prepare(QorusNormalStep):
    def primary(self):
        pass


class Left(QorusNormalStep):
    def primary(self):
        pass


class Right(QorusNormalStep):
    def primary(self):
        pass


class Finish(QorusNormalStep):
    def primary(self):
        pass
";

/// FLOW's errors: its own SHARED overrides the global SHARED that OTHER's definition sets.
const FLOW_ERRORS: &str = "\
type: errors
name: flow-errors
errors:
  - name: FLOW-RETRY
    desc: try again
    status: RETRY
    retry-delay: 30
  - name: SHARED
    desc: FLOW's own SHARED
    severity: MINOR
    status: ERROR
";

const SHARED_ERRORS: &str = "\
type: errors
name: shared-errors
errors:
  - name: SHARED
    desc: the global SHARED
    severity: WARNING
    status: RETRY
    retry-delay: 5
    level: GLOBAL
  - name: GLOBAL-ONLY
    desc: global
    severity: FATAL
    business: true
    level: GLOBAL
  - name: OTHER-OWN
    desc: only OTHER's
    level: WORKFLOW
";

const FLOW_WF: &str = "\
type: workflow
name: FLOW
version: \"1.0\"
keylist: [ref, customer]
errors: flow-errors
steps:
  - \"Prepare:1.0\"
  - [\"Left:1.0\", \"Right:1.0\"]
  - \"Finish:1.0\"
";

const OTHER_WF: &str = "\
type: workflow
name: OTHER
version: \"1.0\"
keylist: [ref]
errors: shared-errors
steps: [\"Prepare:1.0\"]
";

/// What the fixture loaded.
struct Flow {
    /// FLOW 1.0: Prepare, then Left and Right in parallel, then Finish.
    id: i64,
    /// OTHER 1.0: Prepare only; its errors definition sets the global errors.
    other: i64,
    /// Step ids by name.
    steps: HashMap<String, i64>,
    /// The hash `sluice load` computed for steps.py.
    code_hash: String,
}

impl Flow {
    fn step(&self, name: &str) -> i64 {
        self.steps[name]
    }
}

/// A fresh schema with FLOW and OTHER loaded from real definition files, as `sluice load`
/// loads them.
async fn fixture(db: &SystemDb) -> Result<(Store, Flow)> {
    let store = Store::open(db, true).await?;
    store.schema_create().await?;
    let dir = tempfile::tempdir()?;
    let write = |name: &str, text: &str| -> Result<PathBuf> {
        let path = dir.path().join(name);
        std::fs::write(&path, text)?;
        Ok(path)
    };
    write("steps.py", STEPS_PY)?;
    let mut files = Vec::new();
    for step in ["Prepare", "Left", "Right", "Finish"] {
        files.push(write(
            &format!("{step}-1.0.qstep.yaml"),
            &format!(
                "type: step\nname: {step}\nversion: \"1.0\"\nlang: python\n\
                 base-class-name: QorusNormalStep\nclass-name: {step}\ncode: steps.py\n\
                 steptype: NORMAL\n"
            ),
        )?);
    }
    files.push(write("flow-errors.qerrors.yaml", FLOW_ERRORS)?);
    files.push(write("shared-errors.qerrors.yaml", SHARED_ERRORS)?);
    files.push(write("FLOW-1.0.qwf.yaml", FLOW_WF)?);
    files.push(write("OTHER-1.0.qwf.yaml", OTHER_WF)?);
    let loaded = interfaces::parse_files(&files)?;
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    store.load_definitions(&loaded).await?;
    let code_hash = loaded
        .definitions
        .iter()
        .find_map(|d| match d {
            Definition::Step(s) => Some(s.code.hash.clone()),
            _ => None,
        })
        .context("a step")?;

    let workflows: Vec<(String, i64)> = rows!(&store, "SELECT name, workflowid FROM workflows")?;
    let workflows: HashMap<String, i64> = workflows.into_iter().collect();
    let steps: Vec<(String, i64)> = rows!(&store, "SELECT name, stepid FROM steps")?;
    Ok((
        store,
        Flow {
            id: workflows["FLOW"],
            other: workflows["OTHER"],
            steps: steps.into_iter().collect(),
            code_hash,
        },
    ))
}

async fn open_session(store: &Store, key: &str) -> Result<Session> {
    let holder = SessionHolder {
        pid: std::process::id(),
        host: "test".into(),
    };
    Ok(store.open_session(key, &holder).await?.session)
}

fn owner<'a>(session: &Session, network_id: &'a str, token: &'a str) -> Owner<'a> {
    Owner {
        session: session.id,
        network_id,
        token,
    }
}

async fn create(store: &Store, order: Value) -> Result<i64> {
    let order: NewOrder = serde_json::from_value(order)?;
    Ok(store.create_order(&order).await?)
}

/// A READY order of FLOW whose static data names it.
async fn ready(store: &Store, name: &str) -> Result<i64> {
    create(
        store,
        json!({"name": "FLOW", "staticdata": {"n": name}, "dynamicdata": {"v": 0},
               "orderkeys": {"ref": name, "customer": "old"}}),
    )
    .await
}

async fn sql(store: &Store, sql: &str) -> Result<()> {
    store.execute_sql(sql).await?;
    Ok(())
}

async fn count(store: &Store, sql: &str) -> Result<i64> {
    store
        .query_i64(sql)
        .await?
        .with_context(|| format!("no value from {sql}"))
}

/// An order's own row and its segment 0, as the engine's callers see them.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OrderRow {
    status: String,
    sessionid: i64,
    owner: Option<String>,
    token: Option<String>,
    retry_trigger: Option<i64>,
    completed: Option<i64>,
    business_error: bool,
    segment: Option<String>,
}

type OrderTuple = (
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<i64>,
    bool,
    Option<String>,
);

async fn order_row(store: &Store, id: i64) -> Result<OrderRow> {
    let rows: Vec<OrderTuple> = rows!(
        store,
        "SELECT w.workflowstatus, w.sessionid, w.owner, w.owner_token, w.retry_trigger, \
                w.completed, w.business_error, s.segmentstatus \
         FROM workflow_instance w LEFT JOIN segment_instance s \
             ON s.workflow_instanceid = w.workflow_instanceid AND s.segmentid = 0 \
         WHERE w.workflow_instanceid = $1",
        id
    )?;
    let (status, sessionid, owner, token, retry_trigger, completed, business_error, segment) = rows
        .into_iter()
        .next()
        .with_context(|| format!("order {id}"))?;
    Ok(OrderRow {
        status,
        sessionid,
        owner,
        token,
        retry_trigger,
        completed,
        business_error,
        segment,
    })
}

/// What an order owned by `owner` under `session` looks like just after a claim.
fn claimed_row(session: &Session, owner: &Owner<'_>) -> OrderRow {
    OrderRow {
        status: "I".into(),
        sessionid: session.id,
        owner: Some(owner.network_id.into()),
        token: Some(owner.token.into()),
        retry_trigger: None,
        completed: None,
        business_error: false,
        segment: Some("I".into()),
    }
}

/// stepid, ind, status, retries, skip, completed, error, description, info, business.
type StepRow = (
    i64,
    i64,
    String,
    i64,
    bool,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    bool,
);

async fn step_rows(store: &Store, id: i64) -> Result<Vec<StepRow>> {
    Ok(rows!(
        store,
        "SELECT stepid, ind, stepstatus, retries, skip, completed, error, error_description, \
                error_info, business_error \
         FROM step_instance WHERE workflow_instanceid = $1 ORDER BY stepid, ind",
        id
    )?)
}

/// stepid, ind, error, description, info, severity, retry, business.
type ErrorRow = (
    Option<i64>,
    Option<i64>,
    String,
    Option<String>,
    Option<String>,
    String,
    bool,
    bool,
);

async fn error_rows(store: &Store, id: i64) -> Result<Vec<ErrorRow>> {
    Ok(rows!(
        store,
        "SELECT stepid, ind, error, description, info, severity, retry, business_error \
         FROM error_instance WHERE workflow_instanceid = $1 ORDER BY errorid",
        id
    )?)
}

async fn keys_of(store: &Store, id: i64) -> Result<BTreeMap<String, Vec<String>>> {
    let rows: Vec<(String, String)> = rows!(
        store,
        "SELECT keyname, value FROM order_instance_keys WHERE workflow_instanceid = $1 \
         ORDER BY keyname, value",
        id
    )?;
    let mut keys: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in rows {
        keys.entry(name).or_default().push(value);
    }
    Ok(keys)
}

async fn dynamic_of(store: &Store, id: i64) -> Result<Value> {
    let rows: Vec<(String,)> = rows!(
        store,
        "SELECT dynamicdata FROM order_instance WHERE workflow_instanceid = $1",
        id
    )?;
    let (text,) = rows.into_iter().next().context("order_instance row")?;
    Ok(serde_json::from_str(&text)?)
}

fn keys(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
    pairs
        .iter()
        .map(|(k, vs)| (k.to_string(), vs.iter().map(|v| v.to_string()).collect()))
        .collect()
}

fn ids(orders: &[ClaimedOrder]) -> Vec<i64> {
    orders.iter().map(|o| o.id).collect()
}

/// `n` READY orders of `workflowid` (priorities 0..600 in a cycle), inserted in bulk.
async fn insert_ready(store: &Store, workflowid: i64, n: usize) -> Result<Vec<i64>> {
    let values: Vec<String> = (0..n)
        .map(|i| format!("({workflowid}, 'Y', {}, 1, 1, 1)", i % 7 * 100))
        .collect();
    let inserted: Vec<(i64,)> = rows!(
        store,
        &format!(
            "INSERT INTO workflow_instance (workflowid, workflowstatus, priority, started, \
                 created, modified) VALUES {} RETURNING workflow_instanceid",
            values.join(", ")
        )
    )?;
    let mut ids: Vec<i64> = inserted.into_iter().map(|(id,)| id).collect();
    ids.sort_unstable();
    let data: Vec<String> = ids
        .iter()
        .map(|id| format!("({id}, '{{\"n\": {id}}}')"))
        .collect();
    sql(
        store,
        &format!(
            "INSERT INTO order_instance (workflow_instanceid, staticdata) VALUES {}",
            data.join(", ")
        ),
    )
    .await?;
    Ok(ids)
}

fn step_write(stepid: i64, status: &'static str, at: i64) -> StepWrite {
    StepWrite {
        stepid,
        ind: 0,
        status,
        retries: 0,
        skip: false,
        started: at,
        completed: (status == "C").then_some(at),
        error: None,
        error_description: None,
        error_info: None,
        business_error: false,
    }
}

fn order_write(status: &'static str, release: bool) -> OrderWrite {
    OrderWrite {
        status,
        retry_trigger: None,
        completed: None,
        business_error: false,
        release,
    }
}

async fn load_program_reads_steps_code_and_errors(db: &SystemDb) -> Result<()> {
    let (store, flow) = fixture(db).await?;
    let program = store
        .load_program("FLOW", "1.0")
        .await?
        .context("FLOW 1.0 is loaded")?;
    assert_eq!(
        (
            program.workflowid,
            program.name.as_str(),
            program.version.as_str()
        ),
        (flow.id, "FLOW", "1.0")
    );
    assert_eq!(program.keylist, ["ref", "customer"]);
    let graph: Vec<(&str, Vec<i64>)> = program
        .steps
        .iter()
        .map(|s| (s.name.as_str(), s.depends_on.clone()))
        .collect();
    assert_eq!(
        graph,
        [
            ("Prepare", vec![]),
            ("Left", vec![flow.step("Prepare")]),
            ("Right", vec![flow.step("Prepare")]),
            ("Finish", vec![flow.step("Left"), flow.step("Right")]),
        ]
    );
    for step in &program.steps {
        assert_eq!(step.stepid, flow.step(&step.name));
        assert_eq!(
            (
                step.version.as_str(),
                step.steptype.as_str(),
                step.class_name.as_str(),
                step.base_class_name.as_str()
            ),
            ("1.0", "NORMAL", step.name.as_str(), "QorusNormalStep")
        );
        assert_eq!(step.source, STEPS_PY);
        assert_eq!(step.code_hash, flow.code_hash);
    }
    assert_eq!(
        program.step(flow.step("Right")).map(|s| s.name.as_str()),
        Some("Right")
    );
    assert!(program.step(-1).is_none());

    let mut names: Vec<&str> = program.errors.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["FLOW-RETRY", "GLOBAL-ONLY", "SHARED"],
        "FLOW's own errors and the global ones, not OTHER's own"
    );
    assert_eq!(
        program.errors["SHARED"],
        ErrorPolicy {
            name: "SHARED".into(),
            description: Some("FLOW's own SHARED".into()),
            severity: "MINOR".into(),
            retry: false,
            business: false,
            retry_delay_secs: None,
        },
        "the workflow's own definition replaces the global one of the same name"
    );
    assert_eq!(
        program.errors["FLOW-RETRY"],
        ErrorPolicy {
            name: "FLOW-RETRY".into(),
            description: Some("try again".into()),
            severity: "MAJOR".into(),
            retry: true,
            business: false,
            retry_delay_secs: Some(30),
        }
    );
    assert_eq!(
        program.errors["GLOBAL-ONLY"],
        ErrorPolicy {
            name: "GLOBAL-ONLY".into(),
            description: Some("global".into()),
            severity: "FATAL".into(),
            retry: false,
            business: true,
            retry_delay_secs: None,
        }
    );

    // OTHER has no SHARED of its own: it gets the global one.
    let other = store
        .load_program("OTHER", "1.0")
        .await?
        .context("OTHER 1.0 is loaded")?;
    assert_eq!(other.workflowid, flow.other);
    let mut names: Vec<&str> = other.errors.keys().map(String::as_str).collect();
    names.sort_unstable();
    assert_eq!(names, ["GLOBAL-ONLY", "OTHER-OWN", "SHARED"]);
    let shared = &other.errors["SHARED"];
    assert_eq!(
        (
            shared.description.as_deref(),
            shared.retry,
            shared.retry_delay_secs
        ),
        (Some("the global SHARED"), true, Some(5))
    );
    assert_eq!(
        other
            .steps
            .iter()
            .map(|s| (s.stepid, s.depends_on.clone()))
            .collect::<Vec<_>>(),
        [(flow.step("Prepare"), vec![])]
    );

    assert!(store.load_program("FLOW", "2.0").await?.is_none());
    assert!(store.load_program("NOPE", "1.0").await?.is_none());
    Ok(())
}

async fn claim_takes_runnable_orders_by_priority(db: &SystemDb) -> Result<()> {
    let (store, flow) = fixture(db).await?;
    let session = open_session(&store, "engine").await?;
    let a = owner(&session, "wf-a", "wf-a#1");
    let now = sluice_core::now_ms();
    let hour = 3_600_000;
    let (prepare, left) = (flow.step("Prepare"), flow.step("Left"));

    let low = create(
        &store,
        json!({"name": "FLOW", "staticdata": {"n": "low"}, "priority": 900}),
    )
    .await?;
    let first = create(
        &store,
        json!({"name": "FLOW", "staticdata": {"n": "first", "list": [1, 2]},
               "dynamicdata": {"seen": 1},
               "orderkeys": {"ref": "R-1", "customer": ["c2", "c1"]}}),
    )
    .await?;
    let second = ready(&store, "second").await?;
    let retry_due = ready(&store, "retry-due").await?;
    let retry_now = ready(&store, "retry-now").await?;
    let retry_later = ready(&store, "retry-later").await?;
    let sched_due = create(
        &store,
        json!({"name": "FLOW", "staticdata": {"n": "due"}, "scheduled": now + hour}),
    )
    .await?;
    let sched_later = create(
        &store,
        json!({"name": "FLOW", "staticdata": {"n": "later"}, "scheduled": now + hour}),
    )
    .await?;
    let blocked = create(
        &store,
        json!({"name": "FLOW", "staticdata": {"n": "blocked"}, "status": "BLOCKED"}),
    )
    .await?;
    let canceled = ready(&store, "canceled").await?;
    let errored = ready(&store, "errored").await?;
    let complete = ready(&store, "complete").await?;
    let taken = ready(&store, "taken").await?;
    let other_wf = create(
        &store,
        json!({"name": "OTHER", "staticdata": {"n": "other"}}),
    )
    .await?;
    let urgent = create(
        &store,
        json!({"name": "FLOW", "staticdata": {"n": "urgent"}, "priority": 0}),
    )
    .await?;
    assert_eq!(order_row(&store, sched_later).await?.status, "S");
    assert_eq!(order_row(&store, blocked).await?.status, "B");
    sql(
        &store,
        &format!(
            "UPDATE workflow_instance SET workflowstatus = 'R', retry_trigger = {} \
                 WHERE workflow_instanceid = {retry_due}; \
             UPDATE workflow_instance SET workflowstatus = 'R' \
                 WHERE workflow_instanceid = {retry_now}; \
             UPDATE workflow_instance SET workflowstatus = 'R', retry_trigger = {} \
                 WHERE workflow_instanceid = {retry_later}; \
             UPDATE workflow_instance SET scheduled = {} WHERE workflow_instanceid = {sched_due}; \
             UPDATE workflow_instance SET workflowstatus = 'X' WHERE workflow_instanceid = {canceled}; \
             UPDATE workflow_instance SET workflowstatus = 'E' WHERE workflow_instanceid = {errored}; \
             UPDATE workflow_instance SET workflowstatus = 'C' WHERE workflow_instanceid = {complete}; \
             UPDATE workflow_instance SET workflowstatus = 'R', sessionid = {}, owner = 'wf-b', \
                 owner_token = 'wf-b#1' WHERE workflow_instanceid = {taken}; \
             INSERT INTO segment_instance (workflow_instanceid, segmentid, segmentstatus, \
                 created, modified) VALUES ({retry_due}, 0, 'R', 1, 1); \
             INSERT INTO step_instance (workflow_instanceid, stepid, ind, stepstatus, retries, \
                 skip, started, modified) VALUES \
                 ({retry_due}, {prepare}, 0, 'C', 0, FALSE, 1, 1), \
                 ({retry_due}, {left}, 0, 'R', 2, TRUE, 1, 1);",
            now - 1_000,
            now + hour,
            now - 1_000,
            session.id
        ),
    )
    .await?;

    // A session that is no longer ACTIVE claims nothing.
    let gone = open_session(&store, "gone").await?;
    let gone_owner = owner(&gone, "wf-gone", "wf-gone#1");
    store.close_session(gone, SessionStatus::Complete).await?;
    assert!(store
        .claim_orders(flow.id, gone_owner, 100)
        .await?
        .is_empty());
    assert_eq!(order_row(&store, urgent).await?.status, "Y");

    // Priority first, then age; the limit holds.
    let batch = store.claim_orders(flow.id, a, 3).await?;
    assert_eq!(ids(&batch), [urgent, first, second]);
    assert!(batch.iter().all(|o| o.previous_status == "Y"), "{batch:?}");
    let claimed = &batch[1];
    assert_eq!(claimed.priority, 500);
    assert_eq!(claimed.staticdata, json!({"n": "first", "list": [1, 2]}));
    assert_eq!(claimed.dynamicdata, json!({"seen": 1}));
    assert_eq!(
        claimed.keys,
        keys(&[("customer", &["c1", "c2"]), ("ref", &["R-1"])])
    );
    assert!(claimed.steps.is_empty());
    assert_eq!(batch[0].priority, 0);
    assert_eq!(
        batch[2].keys,
        keys(&[("customer", &["old"]), ("ref", &["second"])])
    );
    for id in [urgent, first, second] {
        assert_eq!(
            order_row(&store, id).await?,
            claimed_row(&session, &a),
            "order {id}"
        );
    }

    // RETRY whose time has come (or that has none), SCHEDULED whose time has come, and
    // READY of a lower priority; nothing else.
    let batch = store.claim_orders(flow.id, a, 100).await?;
    assert_eq!(ids(&batch), [retry_due, retry_now, sched_due, low]);
    let previous: Vec<&str> = batch.iter().map(|o| o.previous_status.as_str()).collect();
    assert_eq!(previous, ["R", "R", "S", "Y"]);
    let mut steps = batch[0].steps.clone();
    steps.sort_by_key(|s| (s.stepid, s.ind));
    assert_eq!(
        steps,
        [
            StepState {
                stepid: prepare,
                ind: 0,
                status: "C".into(),
                retries: 0,
                skip: false
            },
            StepState {
                stepid: left,
                ind: 0,
                status: "R".into(),
                retries: 2,
                skip: true
            },
        ]
    );
    assert_eq!(batch[0].staticdata, json!({"n": "retry-due"}));
    assert_eq!(batch[0].dynamicdata, json!({"v": 0}));
    for id in [retry_due, retry_now, sched_due, low] {
        assert_eq!(
            order_row(&store, id).await?,
            claimed_row(&session, &a),
            "order {id}: IN-PROGRESS, owned, retry_trigger cleared, segment 0 IN-PROGRESS"
        );
    }
    assert!(store.claim_orders(flow.id, a, 100).await?.is_empty());

    let unclaimed = |status: &str, retry_trigger: Option<i64>| OrderRow {
        status: status.into(),
        sessionid: 0,
        owner: None,
        token: None,
        retry_trigger,
        completed: None,
        business_error: false,
        segment: None,
    };
    for (id, want) in [
        (retry_later, unclaimed("R", Some(now + hour))),
        (sched_later, unclaimed("S", None)),
        (blocked, unclaimed("B", None)),
        (canceled, unclaimed("X", None)),
        (errored, unclaimed("E", None)),
        (complete, unclaimed("C", None)),
        (other_wf, unclaimed("Y", None)),
        (
            taken,
            OrderRow {
                sessionid: session.id,
                owner: Some("wf-b".into()),
                token: Some("wf-b#1".into()),
                ..unclaimed("R", None)
            },
        ),
    ] {
        assert_eq!(order_row(&store, id).await?, want, "order {id}");
    }
    Ok(())
}

async fn concurrent_claimers_take_each_order_once(db: &SystemDb) -> Result<()> {
    const ORDERS: usize = 500;
    const CLAIMERS: u32 = 4;
    let (store, flow) = fixture(db).await?;
    let session = open_session(&store, "engine").await?;
    let all = insert_ready(&store, flow.id, ORDERS).await?;

    // Each claimer is a store of its own, as each workflow process has its own pool.
    let mut claimers = tokio::task::JoinSet::new();
    for n in 0..CLAIMERS {
        let claimer = Store::open(db, false).await?;
        let (session, workflowid) = (session.id, flow.id);
        claimers.spawn(async move {
            let network_id = format!("wf-{n}");
            let token = format!("wf-{n}#1");
            let owner = Owner {
                session,
                network_id: &network_id,
                token: &token,
            };
            let mut mine = Vec::new();
            loop {
                let batch = claimer.claim_orders(workflowid, owner, 3 + 4 * n).await?;
                if batch.is_empty() {
                    break;
                }
                mine.extend(ids(&batch));
                tokio::task::yield_now().await;
            }
            claimer.close().await;
            anyhow::Ok((network_id, mine))
        });
    }
    let mut by_owner = BTreeMap::new();
    while let Some(joined) = claimers.join_next().await {
        let (network_id, mine) = joined??;
        by_owner.insert(network_id, mine);
    }

    let mut seen = HashSet::new();
    let twice: Vec<i64> = by_owner
        .values()
        .flatten()
        .copied()
        .filter(|id| !seen.insert(*id))
        .collect();
    assert!(twice.is_empty(), "claimed by two claimers: {twice:?}");
    let mut claimed: Vec<i64> = seen.into_iter().collect();
    claimed.sort_unstable();
    assert_eq!(claimed, all, "every order is claimed");
    let sizes: Vec<usize> = by_owner.values().map(Vec::len).collect();
    eprintln!("orders per claimer: {sizes:?}");
    for (network_id, mine) in &by_owner {
        assert_eq!(
            count(
                &store,
                &format!(
                    "SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'I' \
                     AND sessionid = {} AND owner = '{network_id}' \
                     AND owner_token = '{network_id}#1'",
                    session.id
                )
            )
            .await?,
            mine.len() as i64,
            "{network_id}'s orders are stamped with its ownership"
        );
    }
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM segment_instance WHERE segmentid = 0 AND segmentstatus = 'I'"
        )
        .await?,
        ORDERS as i64
    );
    Ok(())
}

async fn commit_writes_owned_orders_and_reports_lost_ones(db: &SystemDb) -> Result<()> {
    let (store, flow) = fixture(db).await?;
    let session = open_session(&store, "engine").await?;
    let a = owner(&session, "wf-a", "wf-a#1");
    let b = owner(&session, "wf-b", "wf-b#1");
    let (prepare, left) = (flow.step("Prepare"), flow.step("Left"));
    let mut mine = Vec::new();
    for n in 1..=5 {
        mine.push(ready(&store, &format!("a{n}")).await?);
    }
    assert_eq!(ids(&store.claim_orders(flow.id, a, 5).await?), mine);
    let [a1, a2, a3, a4, a5] = mine[..] else {
        unreachable!()
    };
    let b1 = ready(&store, "b1").await?;
    assert_eq!(ids(&store.claim_orders(flow.id, b, 5).await?), [b1]);
    // a3 was taken back from A, as recovery does when the master thinks A dead.
    sql(
        &store,
        &format!(
            "UPDATE workflow_instance SET workflowstatus = 'R', sessionid = 0, owner = NULL \
             WHERE workflow_instanceid = {a3}"
        ),
    )
    .await?;

    let now = sluice_core::now_ms();
    let retry_at = now + 60_000;
    let failed = |error: &str, business: bool| StepWrite {
        retries: 1,
        error: Some(error.into()),
        error_description: Some(format!("{error} happened")),
        error_info: Some("details".into()),
        business_error: business,
        ..step_write(left, if business { "E" } else { "R" }, now)
    };
    let error = |error: &str, retry: bool, business: bool| ErrorWrite {
        stepid: left,
        ind: 0,
        error: error.into(),
        description: Some(format!("{error} happened")),
        info: Some("details".into()),
        severity: "MAJOR".into(),
        retry,
        business,
    };
    let everything = |id: i64| OrderTransition {
        id,
        claim: String::new(),
        steps: vec![step_write(prepare, "C", now)],
        errors: vec![error("FLOW-RETRY", true, false)],
        dynamicdata: Some(r#"{"v":"lost"}"#.into()),
        keys: vec![("ref".into(), vec!["lost".into()])],
        order: Some(OrderWrite {
            completed: Some(now),
            ..order_write("C", true)
        }),
    };
    let batch = vec![
        everything(b1),
        // Still running: steps, data and keys, no change of the order's status.
        OrderTransition {
            id: a1,
            steps: vec![step_write(prepare, "C", now), step_write(left, "I", now)],
            dynamicdata: Some(r#"{"v":1}"#.into()),
            keys: vec![
                ("ref".into(), vec!["a1-new".into()]),
                ("customer".into(), vec!["n2".into(), "n1".into()]),
            ],
            ..OrderTransition::default()
        },
        everything(a3),
        // A RETRY error: the order waits, released.
        OrderTransition {
            id: a2,
            steps: vec![step_write(prepare, "C", now), failed("FLOW-RETRY", false)],
            errors: vec![error("FLOW-RETRY", true, false)],
            order: Some(OrderWrite {
                retry_trigger: Some(retry_at),
                ..order_write("R", true)
            }),
            ..OrderTransition::default()
        },
        // A business error: ERROR, released.
        OrderTransition {
            id: a4,
            steps: vec![step_write(prepare, "C", now), failed("DECLINED", true)],
            errors: vec![error("DECLINED", false, true)],
            order: Some(OrderWrite {
                business_error: true,
                ..order_write("E", true)
            }),
            ..OrderTransition::default()
        },
        OrderTransition {
            id: a5,
            steps: ["Prepare", "Left", "Right", "Finish"]
                .into_iter()
                .map(|s| step_write(flow.step(s), "C", now))
                .collect(),
            order: Some(OrderWrite {
                completed: Some(now),
                ..order_write("C", true)
            }),
            ..OrderTransition::default()
        },
    ];
    let mut lost = store.commit_transitions(a, &batch).await?;
    lost.sort_unstable();
    assert_eq!(
        lost,
        [a3, b1],
        "released and someone else's orders are lost"
    );

    // a1: written, still A's.
    assert_eq!(order_row(&store, a1).await?, claimed_row(&session, &a));
    assert_eq!(
        step_rows(&store, a1).await?,
        [
            (
                prepare,
                0,
                "C".into(),
                0,
                false,
                Some(now),
                None,
                None,
                None,
                false
            ),
            (left, 0, "I".into(), 0, false, None, None, None, None, false),
        ]
    );
    assert!(error_rows(&store, a1).await?.is_empty());
    assert_eq!(dynamic_of(&store, a1).await?, json!({"v": 1}));
    assert_eq!(
        keys_of(&store, a1).await?,
        keys(&[("customer", &["n1", "n2"]), ("ref", &["a1-new"])])
    );

    // a2: RETRY later, released.
    let released = |status: &str, segment: &str| OrderRow {
        status: status.into(),
        sessionid: 0,
        owner: None,
        token: None,
        retry_trigger: None,
        completed: None,
        business_error: false,
        segment: Some(segment.into()),
    };
    assert_eq!(
        order_row(&store, a2).await?,
        OrderRow {
            retry_trigger: Some(retry_at),
            ..released("R", "R")
        }
    );
    assert_eq!(
        step_rows(&store, a2).await?,
        [
            (
                prepare,
                0,
                "C".into(),
                0,
                false,
                Some(now),
                None,
                None,
                None,
                false
            ),
            (
                left,
                0,
                "R".into(),
                1,
                false,
                None,
                Some("FLOW-RETRY".into()),
                Some("FLOW-RETRY happened".into()),
                Some("details".into()),
                false
            ),
        ]
    );
    assert_eq!(
        error_rows(&store, a2).await?,
        [(
            Some(left),
            Some(0),
            "FLOW-RETRY".into(),
            Some("FLOW-RETRY happened".into()),
            Some("details".into()),
            "MAJOR".into(),
            true,
            false
        )]
    );
    assert_eq!(dynamic_of(&store, a2).await?, json!({"v": 0}), "untouched");

    // a4: ERROR with a business error.
    assert_eq!(
        order_row(&store, a4).await?,
        OrderRow {
            business_error: true,
            ..released("E", "E")
        }
    );
    let rows = step_rows(&store, a4).await?;
    assert_eq!(
        (rows[1].2.as_str(), rows[1].6.as_deref(), rows[1].9),
        ("E", Some("DECLINED"), true)
    );
    let rows = error_rows(&store, a4).await?;
    assert_eq!(
        rows.iter()
            .map(|e| (e.2.as_str(), e.6, e.7))
            .collect::<Vec<_>>(),
        [("DECLINED", false, true)]
    );

    // a5: COMPLETE.
    assert_eq!(
        order_row(&store, a5).await?,
        OrderRow {
            completed: Some(now),
            ..released("C", "C")
        }
    );
    assert_eq!(step_rows(&store, a5).await?.len(), 4);

    // The lost orders: nothing of the batch was written.
    assert_eq!(
        order_row(&store, a3).await?,
        OrderRow {
            token: Some("wf-a#1".into()),
            ..released("R", "I")
        },
        "as recovery left it"
    );
    assert_eq!(order_row(&store, b1).await?, claimed_row(&session, &b));
    for id in [a3, b1] {
        assert!(step_rows(&store, id).await?.is_empty(), "order {id}");
        assert!(error_rows(&store, id).await?.is_empty(), "order {id}");
        assert_eq!(dynamic_of(&store, id).await?, json!({"v": 0}), "order {id}");
        assert_eq!(keys_of(&store, id).await?["ref"].len(), 1, "order {id}");
        assert_ne!(keys_of(&store, id).await?["ref"], ["lost"], "order {id}");
    }

    // B's own commit of b1 is written.
    assert!(store
        .commit_transitions(
            b,
            &[OrderTransition {
                id: b1,
                steps: vec![step_write(prepare, "I", now)],
                ..OrderTransition::default()
            }]
        )
        .await?
        .is_empty());
    assert_eq!(step_rows(&store, b1).await?.len(), 1);

    // A previous incarnation of A (same network id, another token) writes nothing, nor
    // does A to an order it already released.
    let stale = owner(&session, "wf-a", "wf-a#0");
    let stale_write = OrderTransition {
        id: a1,
        dynamicdata: Some(r#"{"v":"stale"}"#.into()),
        order: Some(order_write("C", true)),
        ..OrderTransition::default()
    };
    assert_eq!(store.commit_transitions(stale, &[stale_write]).await?, [a1]);
    assert_eq!(dynamic_of(&store, a1).await?, json!({"v": 1}));
    assert_eq!(order_row(&store, a1).await?, claimed_row(&session, &a));
    let again = OrderTransition {
        id: a2,
        order: Some(order_write("C", true)),
        ..OrderTransition::default()
    };
    assert_eq!(store.commit_transitions(a, &[again]).await?, [a2]);
    assert_eq!(order_row(&store, a2).await?.status, "R");

    // Two transitions of one order in one batch: step rows are upserted, the later write
    // of each kind wins.
    let mut done = step_write(left, "C", now + 1);
    done.retries = 1;
    let pair = [
        OrderTransition {
            id: a1,
            steps: vec![step_write(left, "I", now + 1)],
            dynamicdata: Some(r#"{"v":2}"#.into()),
            ..OrderTransition::default()
        },
        OrderTransition {
            id: a1,
            steps: vec![done],
            dynamicdata: Some(r#"{"v":3}"#.into()),
            order: Some(OrderWrite {
                completed: Some(now + 1),
                ..order_write("C", true)
            }),
            ..OrderTransition::default()
        },
    ];
    assert!(store.commit_transitions(a, &pair).await?.is_empty());
    assert_eq!(
        step_rows(&store, a1).await?,
        [
            (
                prepare,
                0,
                "C".into(),
                0,
                false,
                Some(now),
                None,
                None,
                None,
                false
            ),
            (
                left,
                0,
                "C".into(),
                1,
                false,
                Some(now + 1),
                None,
                None,
                None,
                false
            ),
        ]
    );
    assert_eq!(dynamic_of(&store, a1).await?, json!({"v": 3}));
    assert_eq!(
        order_row(&store, a1).await?,
        OrderRow {
            completed: Some(now + 1),
            ..released("C", "C")
        }
    );

    assert!(store.commit_transitions(a, &[]).await?.is_empty());
    Ok(())
}

async fn release_returns_in_progress_orders_to_retry(db: &SystemDb) -> Result<()> {
    let (store, flow) = fixture(db).await?;
    let session = open_session(&store, "engine").await?;
    let a = owner(&session, "wf-a", "wf-a#1");
    let b = owner(&session, "wf-b", "wf-b#1");
    let prepare = flow.step("Prepare");
    let mut orders = Vec::new();
    for n in 1..=5 {
        orders.push(ready(&store, &format!("o{n}")).await?);
    }
    let [o1, o2, o3, o4, o5] = orders[..] else {
        unreachable!()
    };
    assert_eq!(ids(&store.claim_orders(flow.id, a, 3).await?), [o1, o2, o3]);
    assert_eq!(ids(&store.claim_orders(flow.id, b, 3).await?), [o4, o5]);
    let now = sluice_core::now_ms();
    let running = |id| OrderTransition {
        id,
        steps: vec![step_write(prepare, "I", now)],
        ..OrderTransition::default()
    };
    // o2 is ERROR but not released yet, as between two of A's commits.
    let errored = OrderTransition {
        order: Some(order_write("E", false)),
        ..running(o2)
    };
    assert!(store
        .commit_transitions(a, &[running(o1), errored])
        .await?
        .is_empty());
    assert!(store
        .commit_transitions(b, &[running(o4)])
        .await?
        .is_empty());

    assert_eq!(
        store.release_orders(a).await?,
        2,
        "o1 and o3 were IN-PROGRESS"
    );
    let retry = OrderRow {
        status: "R".into(),
        sessionid: 0,
        owner: None,
        token: None,
        retry_trigger: None,
        completed: None,
        business_error: false,
        segment: Some("R".into()),
    };
    for id in [o1, o3] {
        // The stale token is harmless without an owner: a claim stamps a new one.
        let row = OrderRow {
            token: None,
            ..order_row(&store, id).await?
        };
        assert_eq!(row, retry, "order {id}");
    }
    assert_eq!(
        step_rows(&store, o1).await?[0].2,
        "R",
        "its running step too"
    );
    let row = order_row(&store, o2).await?;
    assert_eq!(
        (row.status.as_str(), row.sessionid, row.owner),
        ("E", 0, None),
        "an order A held but was not running keeps its status"
    );
    for id in [o4, o5] {
        assert_eq!(
            order_row(&store, id).await?,
            claimed_row(&session, &b),
            "B's order {id} is untouched"
        );
    }
    assert_eq!(step_rows(&store, o4).await?[0].2, "I");
    assert_eq!(store.release_orders(a).await?, 0, "nothing left to release");

    // What A released runs again at once, for whoever claims it.
    let again = store
        .claim_orders(flow.id, owner(&session, "wf-a", "wf-a#2"), 10)
        .await?;
    assert_eq!(ids(&again), [o1, o3]);
    assert!(again.iter().all(|o| o.previous_status == "R"));
    assert_eq!(
        again[0].steps,
        [StepState {
            stepid: prepare,
            ind: 0,
            status: "R".into(),
            retries: 0,
            skip: false
        }]
    );
    assert_eq!(store.release_orders(b).await?, 2);
    Ok(())
}

async fn large_batches_span_statement_chunks(db: &SystemDb) -> Result<()> {
    const ORDERS: usize = 1_200;
    const BATCH: u32 = 1_000;
    let (store, flow) = fixture(db).await?;
    let session = open_session(&store, "engine").await?;
    let a = owner(&session, "wf-a", "wf-a#1");
    insert_ready(&store, flow.id, ORDERS).await?;
    let by_priority: Vec<(i64,)> = rows!(
        &store,
        "SELECT workflow_instanceid FROM workflow_instance \
         ORDER BY priority, workflow_instanceid"
    )?;
    let by_priority: Vec<i64> = by_priority.into_iter().map(|(id,)| id).collect();

    let batch = store.claim_orders(flow.id, a, BATCH).await?;
    assert_eq!(ids(&batch), by_priority[..BATCH as usize]);
    for order in &batch {
        assert_eq!(
            order.staticdata,
            json!({"n": order.id}),
            "order {}",
            order.id
        );
    }
    assert_eq!(
        count(
            &store,
            "SELECT COUNT(*) FROM segment_instance WHERE segmentstatus = 'I'"
        )
        .await?,
        i64::from(BATCH)
    );

    let now = sluice_core::now_ms();
    let transitions: Vec<OrderTransition> = batch
        .iter()
        .map(|o| OrderTransition {
            id: o.id,
            claim: o.claim.clone(),
            steps: ["Prepare", "Left", "Right", "Finish"]
                .into_iter()
                .map(|s| step_write(flow.step(s), "C", now))
                .collect(),
            errors: vec![ErrorWrite {
                stepid: flow.step("Left"),
                ind: 0,
                error: "FLOW-RETRY".into(),
                description: None,
                info: Some(format!("order {}", o.id)),
                severity: "MAJOR".into(),
                retry: true,
                business: false,
            }],
            dynamicdata: Some(format!("{{\"id\":{}}}", o.id)),
            keys: Vec::new(),
            order: Some(OrderWrite {
                completed: Some(now),
                ..order_write("C", true)
            }),
        })
        .collect();
    assert!(store.commit_transitions(a, &transitions).await?.is_empty());
    for (sql, want) in [
        (
            "SELECT COUNT(*) FROM workflow_instance WHERE workflowstatus = 'C' \
             AND sessionid = 0 AND completed IS NOT NULL",
            i64::from(BATCH),
        ),
        (
            "SELECT COUNT(*) FROM segment_instance WHERE segmentstatus = 'C'",
            i64::from(BATCH),
        ),
        (
            "SELECT COUNT(*) FROM step_instance WHERE stepstatus = 'C'",
            4 * i64::from(BATCH),
        ),
        (
            "SELECT COUNT(*) FROM error_instance e WHERE e.info = \
             'order ' || e.workflow_instanceid",
            i64::from(BATCH),
        ),
        (
            "SELECT COUNT(*) FROM order_instance o WHERE o.dynamicdata = \
             '{\"id\":' || o.workflow_instanceid || '}'",
            i64::from(BATCH),
        ),
    ] {
        assert_eq!(count(&store, sql).await?, want, "{sql}");
    }
    let rest = store.claim_orders(flow.id, a, BATCH).await?;
    assert_eq!(ids(&rest), by_priority[BATCH as usize..]);
    Ok(())
}
