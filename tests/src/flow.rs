//! A running instance with the test workflow TEST-FLOW (`tests/fixtures/flow`) loaded: what
//! the workflow engine's end-to-end tests and the chaos test share.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};

use crate::{
    child_pid_from_log, eventually, fixtures, leading_number, yaml_files, Backend, Db, Instance,
};

pub const WF: &str = "workflow-TEST-FLOW-1.0";
pub const STOP_GRACE: Duration = Duration::from_secs(30);
pub const DONE: Duration = Duration::from_secs(60);

/// The id of the order that `sluice order create` printed: the last number in its output.
pub fn order_id(text: &str) -> Result<i64> {
    text.split(|c: char| !c.is_ascii_digit())
        .rfind(|s| !s.is_empty())
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("no order id in {text:?}"))
}

/// A running master with TEST-FLOW loaded and its workflow process up.
pub struct Flow {
    pub inst: Instance,
    pub master: usize,
    pub db: Db,
    pub out: PathBuf,
}

impl Flow {
    pub async fn start(backend: Backend, key: &str, extra: &[&str]) -> Result<Flow> {
        let mut inst = Instance::new(backend, key, extra)?;
        inst.create_schema()?;
        inst.load(&yaml_files(&fixtures("flow"))?)?;
        let master = inst.start_master(&[])?;
        inst.wait_ready(master)?;
        let db = inst.db().await?;
        let out = inst.home().join("effects.txt");
        let flow = Flow {
            inst,
            master,
            db,
            out,
        };
        flow.wait_log(WF, "ready:")?;
        Ok(flow)
    }

    pub fn log(&self, process: &str) -> String {
        self.inst.log(process)
    }

    pub fn wait_log(&self, process: &str, text: &str) -> Result<()> {
        self.inst.wait_log(process, text, DONE)
    }

    /// `sluice order ...` over the cluster API; fails with the output when it fails.
    pub fn order(&self, args: &[&str]) -> Result<String> {
        let key = self.inst.admin_key()?.display().to_string();
        let mut all = vec!["order", "--key", &key];
        all.extend_from_slice(args);
        self.inst.sluice_ok(&all)
    }

    /// Creates an order of TEST-FLOW whose steps record their effects in `self.out`.
    pub fn create(&self, extra: serde_json::Value) -> Result<i64> {
        let mut staticdata = serde_json::json!({"out": self.out.display().to_string()});
        if let (Some(sd), Some(more)) = (staticdata.as_object_mut(), extra.as_object()) {
            for (k, v) in more {
                sd.insert(k.clone(), v.clone());
            }
        }
        let data = serde_json::json!({ "staticdata": staticdata }).to_string();
        order_id(&self.order(&["create", "TEST-FLOW", "--data", &data])?)
    }

    pub async fn status(&self, id: i64) -> Result<String> {
        Ok(self
            .db
            .strings(&format!(
                "SELECT workflowstatus FROM workflow_instance WHERE workflow_instanceid = {id}"
            ))
            .await?
            .join(""))
    }

    pub async fn wait_status(&self, id: i64, want: &str) -> Result<()> {
        let deadline = std::time::Instant::now() + DONE;
        loop {
            let now = self.status(id).await?;
            if now == want {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                bail!(
                    "order {id} is {now:?}, not {want:?}, after {DONE:?}\n{WF} log:\n{}",
                    self.log(WF)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The effect lines recorded for order `id`, in the order they happened.
    pub fn effects(&self, id: i64) -> Vec<String> {
        std::fs::read_to_string(&self.out)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.strip_prefix(&format!("{id} ")).map(str::to_string))
            .collect()
    }

    pub fn workflow_pid(&self, not: Option<i32>) -> Result<i32> {
        eventually(DONE, "the workflow process's pid", || {
            child_pid_from_log(&self.log("master"), WF).filter(|p| Some(*p) != not)
        })
    }

    /// The pid of the newest Python runner, from the workflow process's log.
    pub fn runner_pid(&self) -> Option<i32> {
        self.log(WF)
            .lines()
            .rev()
            .find(|l| l.contains("runner pid") || l.contains("runner restarted (pid"))
            .and_then(|l| leading_number(&l[l.rfind("pid ")? + 4..]))
    }

    pub async fn stop(mut self) -> Result<()> {
        self.db.close().await;
        let code = self.inst.stop(self.master, STOP_GRACE)?.code();
        assert_eq!(code, Some(0), "master exit");
        Ok(())
    }
}
