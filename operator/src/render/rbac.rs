//! Builders shared by the RBAC objects of the components that talk to the
//! API server (the managed Traefik, Dozzle): rules, the binding of a role to
//! the component's ServiceAccount.

use k8s_openapi::api::rbac::v1::{PolicyRule, RoleRef, Subject};

/// API group of Roles and ClusterRoles.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// A rule granting `verbs` on `resources` of the API `group` (`""`: core).
pub fn rule(group: &str, resources: &[&str], verbs: &[&str]) -> PolicyRule {
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    PolicyRule {
        api_groups: Some(vec![group.to_string()]),
        resources: Some(strings(resources)),
        verbs: strings(verbs),
        ..Default::default()
    }
}

/// A reference to the `Role` or `ClusterRole` (`kind`) called `name`.
pub fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some(RBAC_GROUP.into()),
        kind: kind.into(),
        name: name.into(),
    }
}

/// The ServiceAccount `name` of `namespace`, as a binding's subject.
pub fn service_account(name: &str, namespace: &str) -> Subject {
    Subject {
        kind: "ServiceAccount".into(),
        name: name.into(),
        namespace: Some(namespace.into()),
        api_group: None,
    }
}
