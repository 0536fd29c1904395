//! The status stage without a client: inputs built by hand.

use k8s_openapi::api::apps::v1::{DaemonSetStatus, DeploymentSpec, DeploymentStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::*;
use crate::reconcile::children::ChildFailure;
use crate::render::fixtures;

fn ready_deployment(name: &str) -> (String, Deployment) {
    let d = Deployment {
        metadata: ObjectMeta {
            name: Some(name.into()),
            generation: Some(1),
            ..Default::default()
        },
        spec: DeploymentSpec {
            replicas: Some(1),
            ..Default::default()
        },
        status: Some(DeploymentStatus {
            ready_replicas: Some(1),
            updated_replicas: Some(1),
            observed_generation: Some(1),
            ..Default::default()
        }),
    };
    (name.to_string(), d)
}

fn ready_daemonset(name: &str) -> (String, DaemonSet) {
    let ds = DaemonSet {
        metadata: ObjectMeta {
            name: Some(name.into()),
            generation: Some(1),
            ..Default::default()
        },
        status: Some(DaemonSetStatus {
            desired_number_scheduled: 2,
            number_ready: 2,
            updated_number_scheduled: Some(2),
            observed_generation: Some(1),
            ..Default::default()
        }),
        ..Default::default()
    };
    (name.to_string(), ds)
}

/// The example stack, rendered with its own Traefik.
fn applied(applied: Applied) -> StackProgress {
    let mut spec = fixtures::stack().spec;
    spec.ingress.traefik.managed = Some(true);
    StackProgress::Applied(Box::new(StackApplied {
        spec,
        inputs: fixtures::inputs(),
        waiting: BTreeMap::new(),
        alias_conflicts: Vec::new(),
        applied,
    }))
}

/// Every app, Traefik and fail2ban of the example stack ready.
fn all_ready() -> Observed {
    let parent = fixtures::parent();
    let stack = fixtures::stack();
    let mut deployments: BTreeMap<_, _> = stack
        .spec
        .apps
        .enabled()
        .map(|(app, _)| ready_deployment(&parent.child_name(app.name)))
        .collect();
    deployments.extend([ready_deployment(&crate::render::traefik::name(&parent))]);
    Observed {
        deployments,
        daemonsets: [ready_daemonset(&crate::render::fail2ban::name(&parent))].into(),
    }
}

fn report(
    stack: &MediaStack,
    observed: &Observed,
    progress: &StackProgress,
) -> Report<MediaStackStatus> {
    let parent = fixtures::parent();
    mediastack(&StackInput {
        stack,
        parent: &parent,
        observed,
        progress,
        monitoring_crds: true,
        resync: Duration::from_secs(300),
    })
}

fn cond(r: &Report<MediaStackStatus>, t: ConditionType) -> (String, String, String) {
    let c = r
        .status
        .conditions
        .iter()
        .find(|c| c.type_ == t.as_str())
        .unwrap_or_else(|| panic!("no {t} condition in {:?}", r.status.conditions));
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn rejected_sonarr() -> Applied {
    let mut a = Applied {
        unchanged: 40,
        ..Default::default()
    };
    a.failed.push(ChildFailure {
        object: "apps/Deployment/home-sonarr".into(),
        message: "quantities must match the regular expression".into(),
        rejected: true,
    });
    a
}

#[test]
fn a_stack_with_every_child_ready_and_nothing_written_is_ready() {
    let stack = fixtures::stack();
    let r = report(&stack, &all_ready(), &applied(Applied::default()));
    assert_eq!(
        cond(&r, ConditionType::Ready).0,
        "True",
        "{:?}",
        r.status.conditions
    );
    assert_eq!(cond(&r, ConditionType::Stalled).0, "False");
    assert_eq!(cond(&r, ConditionType::EdgeReady).0, "True");
    let enabled = stack.spec.apps.enabled().count();
    assert_eq!(r.status.apps_ready, Some(format!("{enabled}/{enabled}")));
    assert_eq!(r.status.traefik.as_deref(), Some("managed"));
    assert!(r.changed, "no status was stored yet");
    assert!(r.events.iter().all(|e| !e.warning), "{:?}", r.events);
    assert_eq!(r.requeue, Duration::from_secs(300));
}

#[test]
fn writes_made_this_round_keep_the_stack_reconciling() {
    let stack = fixtures::stack();
    let a = Applied {
        written: vec!["apps/Deployment/home-sonarr".into()],
        ..Default::default()
    };
    let r = report(&stack, &all_ready(), &applied(a));
    assert_eq!(cond(&r, ConditionType::Ready).0, "False");
    assert_eq!(cond(&r, ConditionType::Reconciling).0, "True");
    assert!(r.events.iter().any(|e| !e.warning
        && e.reason == "Applied"
        && e.message.starts_with("Applied 1 changes")));
    assert_eq!(r.requeue, Duration::from_secs(60));
}

#[test]
fn a_child_the_server_rejects_stalls_the_stack_with_its_name_and_the_message() {
    let stack = fixtures::stack();
    let r = report(&stack, &all_ready(), &applied(rejected_sonarr()));
    let (ready, reason, message) = cond(&r, ConditionType::Ready);
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "ApplyFailed"));
    assert_eq!(
        message,
        "cannot apply apps/Deployment/home-sonarr: quantities must match the regular expression"
    );
    let (stalled, reason, _) = cond(&r, ConditionType::Stalled);
    assert_eq!((stalled.as_str(), reason.as_str()), ("True", "ApplyFailed"));
    assert_eq!(cond(&r, ConditionType::Reconciling).0, "False");
    let warnings: Vec<_> = r.events.iter().filter(|e| e.warning).collect();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].reason, "ApplyFailed");
    assert!(warnings[0].message.contains("apps/Deployment/home-sonarr"));
    // The rest of the status is still computed from what is observed.
    assert!(r.status.apps.iter().any(|a| a.name == "sonarr" && a.ready));
    assert_eq!(cond(&r, ConditionType::EdgeReady).0, "True");
    assert_eq!(r.requeue, Duration::from_secs(30));

    // The same failure next round: nothing new to write or to tell.
    let mut stored = stack.clone();
    stored.status = Some(r.status.clone());
    let again = report(&stored, &all_ready(), &applied(rejected_sonarr()));
    assert!(!again.changed);
    assert!(
        again.events.iter().all(|e| !e.warning),
        "{:?}",
        again.events
    );

    // Another child refused too: told again.
    let mut two = rejected_sonarr();
    two.failed.push(ChildFailure {
        object: "Service/home-radarr".into(),
        message: "invalid port".into(),
        rejected: true,
    });
    let more = report(&stored, &all_ready(), &applied(two));
    assert!(more.changed);
    let (_, _, message) = cond(&more, ConditionType::Stalled);
    assert!(
        message.contains("home-sonarr") && message.contains("Service/home-radarr"),
        "{message}"
    );
    assert!(
        more.events
            .iter()
            .any(|e| e.warning && e.reason == "ApplyFailed")
    );

    // The spec fixed: the stall clears.
    let fixed = report(&stored, &all_ready(), &applied(Applied::default()));
    assert_eq!(cond(&fixed, ConditionType::Ready).0, "True");
    assert_eq!(cond(&fixed, ConditionType::Stalled).0, "False");
}

#[test]
fn a_transient_failure_is_reconciling_not_stalled() {
    let stack = fixtures::stack();
    let mut a = Applied::default();
    a.failed.push(ChildFailure {
        object: "Secret/home-keys".into(),
        message: "the object has been modified".into(),
        rejected: false,
    });
    let r = report(&stack, &all_ready(), &applied(a));
    assert_eq!(cond(&r, ConditionType::Stalled).0, "False");
    let (reconciling, reason, message) = cond(&r, ConditionType::Reconciling);
    assert_eq!(
        (reconciling.as_str(), reason.as_str()),
        ("True", "ApplyFailed")
    );
    assert!(message.contains("Secret/home-keys"), "{message}");
    assert!(
        r.events
            .iter()
            .any(|e| e.warning && e.reason == "ApplyFailed")
    );
}

#[test]
fn a_failed_prune_is_reconciling() {
    let stack = fixtures::stack();
    let a = Applied {
        prune_failed: vec!["cannot read Deployment list: timeout".into()],
        ..Default::default()
    };
    let r = report(&stack, &all_ready(), &applied(a));
    let (reconciling, reason, message) = cond(&r, ConditionType::Reconciling);
    assert_eq!(
        (reconciling.as_str(), reason.as_str()),
        ("True", "PruneFailed")
    );
    assert!(message.contains("cannot prune"), "{message}");
}

#[test]
fn a_deployment_being_deleted_is_not_ready_whatever_its_last_status() {
    let stack = fixtures::stack();
    let parent = fixtures::parent();
    let mut observed = all_ready();
    let sonarr = observed
        .deployments
        .get_mut(&parent.child_name("sonarr"))
        .expect("sonarr observed");
    sonarr.metadata.deletion_timestamp = Some(Time(Timestamp::now()));
    let r = report(&stack, &observed, &applied(Applied::default()));
    assert_eq!(cond(&r, ConditionType::Ready).0, "False");
    let enabled = stack.spec.apps.enabled().count();
    assert_eq!(
        r.status.apps_ready,
        Some(format!("{}/{enabled}", enabled - 1))
    );
    assert!(r.status.apps.iter().any(|a| a.name == "sonarr" && !a.ready));
}

#[test]
fn an_app_or_edge_part_not_ready_is_named() {
    let stack = fixtures::stack();
    let parent = fixtures::parent();
    let mut observed = all_ready();
    observed.deployments.remove(&parent.child_name("radarr"));
    observed
        .daemonsets
        .get_mut(&crate::render::fail2ban::name(&parent))
        .and_then(|d| d.status.as_mut())
        .map(|s| s.number_ready = 1)
        .expect("fail2ban observed");
    let r = report(&stack, &observed, &applied(Applied::default()));
    let (ready, reason, message) = cond(&r, ConditionType::Ready);
    assert_eq!((ready.as_str(), reason.as_str()), ("False", "Progressing"));
    assert!(
        message.contains("radarr") && message.contains("the edge"),
        "{message}"
    );
    let (edge, reason, message) = cond(&r, ConditionType::EdgeReady);
    assert_eq!(
        (edge.as_str(), reason.as_str()),
        ("False", "Fail2banNotReady")
    );
    assert!(message.contains("fail2ban"), "{message}");
    assert!(r.status.apps.iter().any(|a| a.name == "radarr" && !a.ready));
}

#[test]
fn a_stall_before_apply_renders_no_edge_and_warns_once() {
    let mut stack = fixtures::stack();
    let progress = StackProgress::Stalled(Stall::new(
        Reason::SecretNotFound,
        "apps.sonarr.apiKeySecretRef: Secret k with key key not found",
    ));
    let r = report(&stack, &Observed::default(), &progress);
    assert_eq!(cond(&r, ConditionType::Stalled).1, "SecretNotFound");
    assert_eq!(cond(&r, ConditionType::EdgeReady).1, "NotRendered");
    assert_eq!(r.status.traefik, None);
    assert!(
        r.events
            .iter()
            .any(|e| e.warning && e.reason == "SecretNotFound")
    );
    stack.status = Some(r.status);
    // Something else changes (an app becomes ready): the stall is not told again.
    let observed = Observed {
        deployments: [ready_deployment(&fixtures::parent().child_name("sonarr"))].into(),
        ..Default::default()
    };
    let again = report(&stack, &observed, &progress);
    assert!(again.changed);
    assert!(
        !again.events.iter().any(|e| e.reason == "SecretNotFound"),
        "{:?}",
        again.events
    );
}

#[test]
fn transition_time_is_kept_while_the_status_holds() {
    let ready = |s, r, m| Cond::new(ConditionType::Ready, s, r, m);
    let first = merge(&[], &[ready(false, Reason::Progressing, "a")], Some(1));
    let mut old = first.clone();
    old[0].last_transition_time = Time(Timestamp::UNIX_EPOCH);
    let second = merge(&old, &[ready(false, Reason::Progressing, "b")], Some(2));
    assert_eq!(second[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));
    assert_eq!(second[0].observed_generation, Some(2));
    let flipped = merge(&old, &[ready(true, Reason::Ready, "")], Some(2));
    assert_ne!(flipped[0].last_transition_time, Time(Timestamp::UNIX_EPOCH));
}

#[test]
fn stalled_wins_over_progressing() {
    let c = kstatus(
        false,
        Some((Reason::SecretNotFound, "x")),
        Some((Reason::Progressing, "y")),
    );
    assert!(
        c.iter()
            .any(|c| c.type_ == ConditionType::Stalled && c.status)
    );
    assert!(c.iter().any(|c| c.type_ == ConditionType::Ready
        && !c.status
        && c.reason == Reason::SecretNotFound));
}

#[test]
fn the_wiring_tasks_condition_and_links_are_neither_sent_nor_a_difference() {
    let mut stack = fixtures::stack();
    let first = report(&stack, &all_ready(), &applied(Applied::default()));
    assert!(first.status.links.is_empty(), "links are the wiring task's");
    assert!(
        first
            .status
            .conditions
            .iter()
            .all(|c| c.type_ != ConditionType::Wired.as_str())
    );
    let mut stored = first.status.clone();
    stored.conditions.push(Condition {
        type_: ConditionType::Wired.as_str().into(),
        status: "True".into(),
        reason: "Connected".into(),
        message: "every link is connected".into(),
        observed_generation: stack.metadata.generation,
        last_transition_time: Time(Timestamp::now()),
    });
    stack.status = Some(stored);
    let second = report(&stack, &all_ready(), &applied(Applied::default()));
    assert!(
        !second.changed,
        "a stored Wired condition is not a reason to write"
    );
}
