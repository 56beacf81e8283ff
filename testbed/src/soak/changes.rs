//! The soak's changes: [`plan::CYCLE`] in order, one every step, through the same operations
//! as `testbed set-ready`, `apply`, `kill-pod` and `restart-node`, each recorded as a window.
//!
//! Invariants: a change that fails stops the soak (the window carries the error, the verdict
//! fails); the last change starts no later than `quiet` before the end, so the soak ends with
//! every change settled; the policy is never left in force by a finished cycle.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::plan::{self, CHURNED, Change, POLICY, POLICY_OBJECT};
use super::record::{Recorder, Window};
use crate::cluster::Ferroplane;
use crate::error::{Result, context};
use crate::layout::Layout;
use crate::lifecycle;
use crate::operations;
use crate::run_state::RunState;

/// How long a drained endpoint waits before its pod goes (as a preStop delay would).
const DRAIN: Duration = Duration::from_secs(1);

pub struct Changer<'a> {
    pub layout: &'a Layout,
    pub state: RunState,
    /// Where the manifests of new pods are written.
    pub dir: PathBuf,
    /// Pods added by scale-ups and not yet removed.
    pub added: Vec<String>,
    pub scale_ups: usize,
    pub policy_on: bool,
    pub churned_unready: bool,
}

impl Changer<'_> {
    /// Runs the cycle from `start`, a change every `step`, until `quiet` before `end`.
    pub fn run(
        &mut self,
        recorder: &Recorder,
        start: Duration,
        step: Duration,
        end: Duration,
        quiet: Duration,
    ) {
        let mut at = start;
        for change in plan::CYCLE.iter().copied().cycle() {
            // In the quiet tail only what undoes a change still in effect runs.
            if at + quiet > end {
                if !self.unsettled() {
                    return;
                }
                if !self.undoes(change) {
                    continue;
                }
            }
            recorder.sleep_until(at);
            if recorder.over() {
                return;
            }
            let start_ms = recorder.now_ms();
            let result = self.apply(change);
            let window = Window {
                change: change.name(),
                start_ms,
                end_ms: recorder.now_ms(),
                disruptive: change.disruptive(),
                error: result.as_ref().err().map(|e| e.to_string()),
            };
            recorder.window(window);
            if result.is_err() {
                recorder.stop();
                return;
            }
            at = (at + step).max(recorder.elapsed());
        }
    }

    /// Whether a change is still in effect that a later one of the cycle undoes.
    fn unsettled(&self) -> bool {
        plan::CYCLE.iter().any(|c| self.undoes(*c))
    }

    /// Whether `change` undoes one still in effect.
    fn undoes(&self, change: Change) -> bool {
        match change {
            Change::PolicyOff => self.policy_on,
            Change::RecreateBackend => self.state.pod(CHURNED).is_none(),
            Change::Ready(true) => self.churned_unready,
            Change::ScaleDown => !self.added.is_empty(),
            _ => false,
        }
    }

    fn control(&self) -> Ferroplane {
        Ferroplane {
            bin: self.state.ferroplane.clone(),
            state_dir: self.state.state_dir.clone(),
        }
    }

    fn apply(&mut self, change: Change) -> Result<()> {
        match change {
            Change::Ready(ready) => {
                operations::set_ready(&self.state, CHURNED, ready)?;
                self.churned_unready = !ready;
                Ok(())
            }
            Change::ScaleUp => {
                self.scale_ups += 1;
                let name = format!("store-be-s{}", self.scale_ups);
                let node = if self.scale_ups.is_multiple_of(2) {
                    "node-2"
                } else {
                    "node-1"
                };
                self.apply_text(&name, &plan::backend_pod(&name, node))?;
                self.added.push(name);
                Ok(())
            }
            Change::ScaleDown => {
                let Some(name) = self.added.pop() else {
                    return Ok(());
                };
                operations::set_ready(&self.state, &name, false)?;
                std::thread::sleep(DRAIN);
                operations::kill_pod(self.layout, &mut self.state, &name)
            }
            Change::PolicyOn => {
                self.apply_text(POLICY, POLICY_OBJECT)?;
                self.policy_on = true;
                Ok(())
            }
            Change::PolicyOff => {
                self.control().delete("networkpolicy", "default", POLICY)?;
                self.policy_on = false;
                Ok(())
            }
            Change::CrashBackend => operations::kill_pod(self.layout, &mut self.state, CHURNED),
            Change::RecreateBackend => {
                self.apply_text(CHURNED, &plan::backend_pod(CHURNED, plan::churned_node()))
            }
            Change::Restart { node, crash } => {
                operations::restart_node(self.layout, &mut self.state, node, crash)
            }
        }
    }

    /// Writes `text` as `<dir>/<name>.yaml` and applies it like `testbed apply -f`.
    fn apply_text(&mut self, name: &str, text: &str) -> Result<()> {
        let file = write_manifest(&self.dir, name, text)?;
        lifecycle::apply(self.layout, &mut self.state, &[file]).map(|_| ())
    }
}

/// Writes a manifest file for `testbed apply`.
pub fn write_manifest(dir: &Path, name: &str, text: &str) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).map_err(context(dir.display()))?;
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, text).map_err(context(file.display()))?;
    Ok(file)
}
