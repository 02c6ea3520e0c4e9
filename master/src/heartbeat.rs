//! The session heartbeat: stamps `sessions.heartbeat` so operators (and other nodes) can see
//! the master is alive, and checks that the session lock is still held.

use std::sync::Arc;
use std::time::Duration;

use sluice_core::store::StoreError;

use crate::shutdown::ShutdownReason;
use crate::system::System;

pub const INTERVAL: Duration = Duration::from_secs(10);

/// Runs until shutdown is requested.
pub fn spawn(system: Arc<System>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; the session was just stamped
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = system.shutdown.wait() => return,
            }
            let mut guard = system.session.lock().await;
            let Some(session) = guard.as_mut() else {
                return;
            };
            match system.store.session_heartbeat(session).await {
                Ok(()) => {
                    if failing {
                        tracing::info!("session heartbeat works again");
                        failing = false;
                    }
                }
                Err(err @ StoreError::SessionLockLost { .. }) => {
                    // Two masters on one instance key would run the same orders twice;
                    // stopping (and being restarted by systemd) is the safe choice.
                    tracing::error!("{err}; stopping this master");
                    drop(guard);
                    system.shutdown.request(ShutdownReason::SessionLost);
                    return;
                }
                Err(err) => {
                    // The database may be briefly unreachable; nothing is lost by waiting.
                    tracing::warn!("cannot record the session heartbeat: {err}");
                    failing = true;
                }
            }
        }
    })
}
