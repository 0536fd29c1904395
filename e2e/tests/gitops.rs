//! What a GitOps tool sees: applying the examples again under its own field
//! manager conflicts with nothing and changes nothing, and no tracking label
//! or annotation of the parent reaches the children.

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, ListParams};
use mediastack_e2e::stack::{example, wait_condition};
use mediastack_e2e::{Operator, TestNamespace, kubectl_stdin, without_namespace};
use mediastack_operator::api::MediaStack;

/// The complete example without its Namespace, tracked the way Argo CD does.
fn tracked_manifest() -> String {
    let full = example("examples/stack-complete.yaml");
    let body = full
        .split("\n---\n")
        .filter(|d| !d.contains("kind: Namespace"))
        .collect::<Vec<_>>()
        .join("\n---\n");
    without_namespace(&body)
        // The placeholder must be replaced before use; any key-shaped value will do on KWOK.
        .replace("REPLACE-WITH-YOUR-WIREGUARD-PRIVATE-KEY", "a2V5")
        .replace(
            "kind: MediaStack\nmetadata:\n  name: home\n",
            "kind: MediaStack\nmetadata:\n  name: home\n  labels: {app.kubernetes.io/instance: media-gitops}\n  annotations: {argocd.argoproj.io/tracking-id: 'media-gitops:mediastack.io/MediaStack:media/home'}\n",
        )
}

#[tokio::test(flavor = "multi_thread")]
async fn reapplying_under_another_field_manager_conflicts_with_nothing_and_changes_nothing() {
    let ns = TestNamespace::new("gitops").await;
    let _op = Operator::start(&ns).await;
    let manifest = tracked_manifest();
    assert!(
        manifest.contains("argocd.argoproj.io/tracking-id"),
        "the fixture is tracked"
    );
    let apply = [
        "apply",
        "--server-side",
        "--field-manager",
        "argocd-controller",
        "-n",
        &ns.name,
        "-f",
        "-",
    ];
    kubectl_stdin(&apply, &manifest).await.expect("first sync");
    wait_condition::<MediaStack>(&ns, "home", "Ready", "True", None).await;

    // A second sync without --force-conflicts: any field the operator took
    // from the user would be a conflict here.
    kubectl_stdin(&apply, &manifest)
        .await
        .expect("second sync has no conflicts");
    // And nothing drifts: a server-side diff against the live objects is empty
    // (kubectl diff exits 1 when there are differences).
    let diff = kubectl_stdin(
        &[
            "diff",
            "--server-side",
            "--field-manager",
            "argocd-controller",
            "-n",
            &ns.name,
            "-f",
            "-",
        ],
        &manifest,
    )
    .await;
    assert!(
        diff.is_ok(),
        "the operator changed fields the user owns: {diff:?}"
    );

    let deployments: Api<Deployment> = ns.api();
    let children = deployments
        .list(&ListParams::default().labels("mediastack.io/stack=home"))
        .await
        .expect("children");
    assert!(!children.items.is_empty());
    for d in children.items {
        let labels = d.metadata.labels.unwrap_or_default();
        assert_eq!(
            labels.get("app.kubernetes.io/instance").map(String::as_str),
            Some("home"),
            "own instance label on {:?}",
            d.metadata.name
        );
        let annotations = d.metadata.annotations.unwrap_or_default();
        assert!(
            !annotations
                .keys()
                .any(|k| k.starts_with("argocd.argoproj.io/")),
            "no Argo CD annotation on {:?}",
            d.metadata.name
        );
    }
}
