//! Group commit: the transitions of every order in flight go to one task that writes all
//! those waiting in one transaction, then acknowledges each. One fsync carries many orders'
//! progress; no order acts on a transition before it is committed.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use sluice_core::store::engine::{OrderTransition, Owner};
use sluice_core::store::Store;
use tokio::sync::{mpsc, oneshot, watch};

/// Most transitions one transaction carries: bounds the time the write lock is held.
const MAX_BATCH: usize = 2000;
const RETRY_FIRST: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);

/// What became of a committed transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    Done,
    /// The order is no longer this process's (recovery took it): stop working on it.
    Lost,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot commit: {0}")]
pub struct CommitError(pub String);

type Job = (
    OrderTransition,
    oneshot::Sender<Result<Committed, CommitError>>,
);

#[derive(Clone)]
pub struct Committer {
    tx: mpsc::UnboundedSender<Job>,
}

impl Committer {
    /// Starts the commit task. It ends when every `Committer` clone is gone.
    pub fn spawn(
        store: Store,
        session: Arc<AtomicI64>,
        network_id: String,
        token: String,
        stopping: watch::Receiver<bool>,
    ) -> Committer {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(commit_loop(store, session, network_id, token, rx, stopping));
        Committer { tx }
    }

    /// Commits `t`, waiting with every other order's transitions for the next transaction.
    pub async fn commit(&self, t: OrderTransition) -> Result<Committed, CommitError> {
        let (ack, done) = oneshot::channel();
        self.tx
            .send((t, ack))
            .map_err(|_| CommitError("the commit task has stopped".into()))?;
        done.await
            .map_err(|_| CommitError("the commit task has stopped".into()))?
    }
}

async fn commit_loop(
    store: Store,
    session: Arc<AtomicI64>,
    network_id: String,
    token: String,
    mut rx: mpsc::UnboundedReceiver<Job>,
    stopping: watch::Receiver<bool>,
) {
    let mut batch: Vec<OrderTransition> = Vec::new();
    let mut acks = Vec::new();
    while let Some(first) = rx.recv().await {
        batch.push(first.0);
        acks.push(first.1);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok((t, ack)) => {
                    batch.push(t);
                    acks.push(ack);
                }
                Err(_) => break,
            }
        }
        // Rows are locked in order id order, as recovery locks them, so the two never
        // deadlock on PostgreSQL; the sort is stable, keeping one order's transitions in
        // the order they were made.
        if batch.windows(2).any(|w| w[0].id > w[1].id) {
            let mut paired: Vec<_> = batch.drain(..).zip(acks.drain(..)).collect();
            paired.sort_by_key(|(t, _)| t.id);
            for (t, ack) in paired {
                batch.push(t);
                acks.push(ack);
            }
        }
        let mut delay = RETRY_FIRST;
        let result = loop {
            let owner = Owner {
                session: session.load(Ordering::SeqCst),
                network_id: &network_id,
                token: &token,
            };
            match store.commit_transitions(owner, &batch).await {
                Ok(lost) => break Ok(lost),
                // A database that goes away is waited for: the orders stay IN-PROGRESS and
                // ours, and nothing is acknowledged. Only a stop gives up, leaving the
                // orders to recovery.
                Err(err) if !*stopping.borrow() => {
                    tracing::error!(
                        "cannot commit {} order transition(s), retrying in {} ms: {err}",
                        batch.len(),
                        delay.as_millis()
                    );
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(RETRY_MAX);
                }
                Err(err) => break Err(err.to_string()),
            }
        };
        match result {
            Ok(lost) => {
                for (t, ack) in batch.drain(..).zip(acks.drain(..)) {
                    let state = if lost.contains(&t.id) {
                        Committed::Lost
                    } else {
                        Committed::Done
                    };
                    let _ = ack.send(Ok(state));
                }
            }
            Err(err) => {
                batch.clear();
                for ack in acks.drain(..) {
                    let _ = ack.send(Err(CommitError(err.clone())));
                }
            }
        }
    }
}
