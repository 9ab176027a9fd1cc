//! A job's pipeline state — the `jobs.pipeline` JSON column — typed: what each step of the
//! job's path recorded, decoded once when the row is read, so no step decodes (or validates)
//! a fact another step wrote a second time.
//!
//! The JSON shape is the one earlier builds wrote (same keys), so no migration is needed.
//! Keys this build does not know are kept as they are ([`Pipeline::other`]); a recorded plan
//! this build cannot read does not make the row unreadable (the job stays listable, and the
//! steps that need the plan fail it with `invalid_plan`, naming the decode error).

use policies::Plan;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// What the steps recorded on a job.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    /// Plan step: the policy that matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicyRef>,
    /// Plan step: the resolved plan (see [`Pipeline::plan`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<RecordedPlan>,
    /// Screening step: the statistics of the job's files, as shown in its event.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub screening: Option<Value>,
    /// Transform step: the blob key of the final dataset the backend trains on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset_blob: Option<String>,
    /// Transform step: the blob key of the dataset's manifest (what was inserted, where).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_blob: Option<String>,
    /// Run step, on success: the blob key of the job's final adapter (a tar of its PEFT
    /// directory; after a monitor rollback, the chosen checkpoint's), when the backend stored
    /// one (local jobs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter_blob: Option<String>,
    /// Run step: the execution backend's own state, persisted between polls. Its shape belongs
    /// to the backend that wrote it; the pipeline reads only which backend that is
    /// ([`Pipeline::backend`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_state: Option<Value>,
    /// Keys written by another build, kept as they were.
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

/// The policy a job's plan came from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PolicyRef {
    pub name: String,
    /// The policy set's version hash (its snapshot is stored under it).
    pub version_hash: String,
}

/// Which backend a started job runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// This gateway's workers (the state says `"backend": "local"`).
    Local,
    /// An upstream provider (every other state).
    Upstream,
}

/// The value of `exec_state.backend` that marks a local job (the lease queries of both
/// stores select on it too).
pub const LOCAL_BACKEND: &str = "local";

impl Backend {
    /// The backend an execution state belongs to.
    pub fn of_state(state: &Value) -> Backend {
        match state.get("backend").and_then(Value::as_str) {
            Some(LOCAL_BACKEND) => Backend::Local,
            _ => Backend::Upstream,
        }
    }
}

/// A job's recorded plan: decoded, or kept as written when this build cannot read it. Either
/// way the JSON is written back exactly as it was read (a plan is never changed once
/// recorded), so keys of a newer build inside it survive a write by this one.
#[derive(Debug, Clone, PartialEq)]
pub enum RecordedPlan {
    Valid { plan: Box<Plan>, raw: Value },
    Unreadable { raw: Value, error: String },
}

impl Serialize for RecordedPlan {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            RecordedPlan::Valid { raw, .. } | RecordedPlan::Unreadable { raw, .. } => {
                raw.serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for RecordedPlan {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Value::deserialize(d)?;
        Ok(match Plan::deserialize(&raw) {
            Ok(p) => RecordedPlan::Valid {
                plan: Box::new(p),
                raw,
            },
            Err(e) => RecordedPlan::Unreadable {
                raw,
                error: e.to_string(),
            },
        })
    }
}

impl From<Plan> for RecordedPlan {
    fn from(p: Plan) -> Self {
        let raw = p.to_json();
        RecordedPlan::Valid {
            plan: Box::new(p),
            raw,
        }
    }
}

/// Only the blob keys of a pipeline, read leniently: the blob sweep reads every job's, and
/// one odd row must not stop it (nor make it drop that row's blobs).
#[derive(Debug, Default, Deserialize)]
pub struct PipelineBlobKeys {
    #[serde(default)]
    dataset_blob: Option<Value>,
    #[serde(default)]
    manifest_blob: Option<Value>,
    #[serde(default)]
    adapter_blob: Option<Value>,
}

impl PipelineBlobKeys {
    /// The keys of the stored pipeline text `json`. Text that is not JSON at all is an error
    /// (its keys are unknown, so nothing may be swept); JSON of another shape has none.
    pub fn of(json: &str) -> Result<Vec<String>, serde_json::Error> {
        let v: Value = serde_json::from_str(json)?;
        let k: PipelineBlobKeys = serde_json::from_value(v).unwrap_or_default();
        Ok([k.dataset_blob, k.manifest_blob, k.adapter_blob]
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect())
    }
}

impl Pipeline {
    /// The job's plan, or why there is none to use (a message for the job's error).
    pub fn plan(&self) -> Result<&Plan, String> {
        match &self.plan {
            Some(RecordedPlan::Valid { plan, .. }) => Ok(plan),
            Some(RecordedPlan::Unreadable { error, .. }) => {
                Err(format!("The job's recorded plan is unreadable: {error}"))
            }
            None => Err("The job has no recorded plan.".into()),
        }
    }

    /// The backend of a started job; `None` before the run step started it.
    pub fn backend(&self) -> Option<Backend> {
        self.exec_state.as_ref().map(Backend::of_state)
    }

    /// Whether this gateway's workers train the job.
    pub fn is_local(&self) -> bool {
        self.backend() == Some(Backend::Local)
    }

    /// A pipeline from its JSON (tests write the stored shape directly).
    #[cfg(test)]
    pub(crate) fn of(v: Value) -> Pipeline {
        serde_json::from_value(v).expect("a pipeline's JSON")
    }

    /// The stored JSON text. Every part is a JSON value or a string, which always
    /// serialise; were one ever not to, the text says so instead of silently writing `{}`
    /// (which would lose the blob keys).
    pub fn to_json_string(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|e| serde_json::json!({ "unserialisable": e.to_string() }).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn embedded_plan() -> Plan {
        policies::PolicySet::embedded()
            .resolve(&policies::JobContext::default())
            .unwrap()
    }

    #[test]
    fn round_trips_the_shape_earlier_builds_wrote_keeping_unknown_keys() {
        let plan = embedded_plan();
        let raw = json!({
            "policy": {"name": "default", "version_hash": "abc"},
            "plan": plan.to_json(),
            "screening": {"training_file": {"examples": 3}},
            "dataset_blob": "dataset-1",
            "manifest_blob": "manifest-1",
            "adapter_blob": "adapter-1",
            "exec_state": {"backend": "local", "poll_cursor": 4},
            "from_a_newer_build": [1, 2],
        });
        let p: Pipeline = serde_json::from_value(raw.clone()).unwrap();
        assert_eq!(p.plan().unwrap(), &plan);
        assert_eq!(p.backend(), Some(Backend::Local));
        assert_eq!(
            PipelineBlobKeys::of(&p.to_json_string()).unwrap(),
            ["dataset-1", "manifest-1", "adapter-1"]
        );
        assert_eq!(serde_json::to_value(&p).unwrap(), raw);
        assert_eq!(Pipeline::default().to_json_string(), "{}");
        // A newer build's key inside the plan survives a write by this one.
        let mut newer = raw.clone();
        newer["plan"]["training"]["from_the_future"] = serde_json::json!(1);
        let p: Pipeline = serde_json::from_value(newer.clone()).unwrap();
        assert_eq!(p.plan().unwrap(), &plan);
        assert_eq!(serde_json::to_value(&p).unwrap(), newer);
    }

    #[test]
    fn the_sweep_reads_blob_keys_from_any_row() {
        let keys = PipelineBlobKeys::of(
            r#"{"dataset_blob": "d", "adapter_blob": "a", "plan": {"broken": true}, "exec_state": 3}"#,
        );
        assert_eq!(keys.unwrap(), ["d", "a"]);
        assert!(PipelineBlobKeys::of("[1, 2]").unwrap().is_empty());
        assert!(PipelineBlobKeys::of(r#"{"manifest_blob": 7}"#)
            .unwrap()
            .is_empty());
        assert!(PipelineBlobKeys::of("{not json").is_err());
    }

    #[test]
    fn an_unreadable_plan_keeps_the_row_readable_and_names_the_error() {
        let raw = json!({"plan": {"training": {}}, "exec_state": {"upstream": {"job_id": "x"}}});
        let p: Pipeline = serde_json::from_value(raw.clone()).unwrap();
        let e = p.plan().unwrap_err();
        assert!(
            e.starts_with("The job's recorded plan is unreadable: "),
            "{e}"
        );
        assert!(e.contains("missing field"), "{e}");
        assert_eq!(p.backend(), Some(Backend::Upstream));
        assert_eq!(serde_json::to_value(&p).unwrap(), raw);
        assert_eq!(
            Pipeline::default().plan().unwrap_err(),
            "The job has no recorded plan."
        );
        assert_eq!(Pipeline::default().backend(), None);
    }
}
