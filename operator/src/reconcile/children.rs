//! The apply stage's result: every desired child is applied on its own, so
//! one the API server rejects does not stop the others, and pruning and
//! status still run. What happened is collected in [`Applied`], which the
//! pure status stage reads.

use kube::Client;

use super::cache::Cache;
use super::{Error, apply};
use crate::render::Child;

/// A child (or another object the stage writes) that could not be written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChildFailure {
    /// `group/Kind/name` (`Kind/name` for the core group), e.g.
    /// `apps/Deployment/home-sonarr`.
    pub object: String,
    /// The API server's message (or the client's, when no answer came).
    pub message: String,
    /// The server refused the object itself (invalid value, forbidden...):
    /// a retry with the same spec fails the same way, so the resource is
    /// `Stalled` until the spec changes. Otherwise the failure is
    /// transient (no answer, conflict, throttling, unavailable) and retried
    /// with back-off.
    pub rejected: bool,
}

impl ChildFailure {
    /// Classifies a failed write of `object`.
    pub fn new(object: String, error: &Error) -> Self {
        let (message, rejected) = match error {
            Error::Apply { source, .. } | Error::Read { source, .. } => match source {
                kube::Error::Api(s) => (
                    s.message.clone(),
                    // Conflict, throttling, unavailable, timeout: try again.
                    !matches!(s.code, 409 | 429 | 503 | 504),
                ),
                other => (other.to_string(), false),
            },
            Error::Delete { source, .. } | Error::Status { source, .. } => {
                (source.to_string(), false)
            }
            // The rendered object itself is unusable: retrying cannot help.
            Error::Render(e) => (e.to_string(), true),
            Error::MissingMetadata(m) => (format!("the object has no {m}"), true),
        };
        Self {
            object,
            message,
            rejected,
        }
    }

    /// `cannot apply <object>: <message>`, for conditions and events.
    pub fn describe(&self) -> String {
        format!("cannot apply {}: {}", self.object, self.message)
    }
}

/// What the apply stage did.
#[derive(Debug, Default)]
pub struct Applied {
    /// Objects written this round (applied, created or patched).
    pub written: Vec<String>,
    /// Children that already matched and were not written.
    pub unchanged: usize,
    /// Children deleted because the spec no longer asks for them.
    pub pruned: Vec<String>,
    /// Objects that could not be written.
    pub failed: Vec<ChildFailure>,
    /// Why pruning could not finish, if it could not.
    pub prune_failed: Vec<String>,
    /// The first transient error, returned to the controller after status
    /// is written so that it retries with back-off.
    pub retry: Option<Error>,
}

impl Applied {
    /// Writes and deletions made.
    pub fn changes(&self) -> usize {
        self.written.len() + self.pruned.len()
    }

    /// Failures the server answered with a refusal of the object.
    pub fn rejected(&self) -> impl Iterator<Item = &ChildFailure> {
        self.failed.iter().filter(|f| f.rejected)
    }

    /// Whether everything asked for was written or already matched.
    pub fn complete(&self) -> bool {
        self.failed.is_empty() && self.prune_failed.is_empty()
    }

    /// Records the result of writing `object` (`Ok(true)`: written).
    pub fn record(&mut self, object: String, result: Result<bool, Error>) {
        match result {
            Ok(true) => self.written.push(object),
            Ok(false) => self.unchanged += 1,
            Err(e) => {
                let failure = ChildFailure::new(object, &e);
                tracing::warn!(object = %failure.object, rejected = failure.rejected, "{}", failure.message);
                if !failure.rejected && self.retry.is_none() {
                    self.retry = Some(e);
                }
                self.failed.push(failure);
            }
        }
    }

    /// Applies every child in order; a failure is recorded and the next
    /// child is applied.
    pub async fn apply_all(&mut self, client: &Client, cache: &Cache, children: &[Child]) {
        for child in children {
            let result = apply::apply(client, cache, child).await;
            self.record(child.id(), result);
        }
    }

    /// Records the result of a prune.
    pub fn record_prune(&mut self, result: Result<Vec<String>, Error>) {
        match result {
            Ok(deleted) => self.pruned.extend(deleted),
            Err(e) => {
                self.prune_failed.push(e.to_string());
                if self.retry.is_none() {
                    self.retry = Some(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::apps::v1::Deployment;
    use k8s_openapi::api::core::v1::Service;

    fn api_error(code: u16, message: &str) -> Error {
        Error::Apply {
            what: "x".into(),
            source: kube::Error::Api(
                kube::core::Status::failure(message, "")
                    .with_code(code)
                    .boxed(),
            ),
        }
    }

    #[test]
    fn names_carry_the_group() {
        use crate::render::child_id;
        use kube::api::ApiResource;
        assert_eq!(
            child_id(&ApiResource::erase::<Deployment>(&()), "home-sonarr"),
            "apps/Deployment/home-sonarr"
        );
        assert_eq!(
            child_id(&ApiResource::erase::<Service>(&()), "home"),
            "Service/home"
        );
    }

    #[test]
    fn a_refused_object_is_recorded_and_the_next_one_counts() {
        let mut applied = Applied::default();
        applied.record(
            "apps/Deployment/a".into(),
            Err(api_error(
                500,
                "quantities must match the regular expression",
            )),
        );
        applied.record("apps/Deployment/b".into(), Ok(true));
        applied.record("Service/c".into(), Ok(false));
        assert_eq!(applied.written, vec!["apps/Deployment/b".to_string()]);
        assert_eq!(applied.unchanged, 1);
        assert_eq!(applied.failed.len(), 1);
        assert!(applied.failed[0].rejected);
        assert!(
            applied.retry.is_none(),
            "a refusal is not retried with back-off"
        );
        assert_eq!(
            applied.failed[0].describe(),
            "cannot apply apps/Deployment/a: quantities must match the regular expression"
        );
    }

    #[test]
    fn conflicts_and_throttling_are_transient() {
        let mut applied = Applied::default();
        applied.record("Secret/s".into(), Err(api_error(409, "conflict")));
        applied.record("Secret/t".into(), Err(api_error(422, "invalid")));
        assert!(!applied.failed[0].rejected);
        assert!(applied.failed[1].rejected);
        assert!(applied.retry.is_some());
        assert_eq!(applied.rejected().count(), 1);
        assert!(!applied.complete());
    }
}
