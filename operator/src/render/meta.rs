//! Names, labels and owner references shared by every rendered object.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use kube::Resource;

/// Value of `app.kubernetes.io/managed-by` on every child.
pub const MANAGER: &str = "mediastack-operator";
/// Value of `app.kubernetes.io/part-of` on every child.
pub const PART_OF: &str = "mediastack";
/// Label naming the MediaStack a child belongs to. Used (with `managed-by`)
/// to find children to prune, so it never depends on labels a GitOps tool
/// might set.
pub const STACK_LABEL: &str = "mediastack.io/stack";
/// Label naming the owning IngressRoute on its Traefik objects.
pub const OWNER_LABEL: &str = "mediastack.io/owner";
/// Name of every app's container port, of its Service port and of the
/// port our IngressRoutes and NetworkPolicies point at.
pub const HTTP_PORT: &str = "http";

/// The parent of a set of children: its name, namespace and controller
/// owner reference.
#[derive(Clone, Debug, PartialEq)]
pub struct Parent {
    pub name: String,
    pub namespace: String,
    pub owner: OwnerReference,
}

impl Parent {
    /// Takes name, namespace and UID from a stored object. Returns `None`
    /// for an object without them (never the case for objects read from the API).
    pub fn of<K: Resource<DynamicType = ()>>(obj: &K) -> Option<Self> {
        Some(Self {
            name: obj.meta().name.clone()?,
            namespace: obj.meta().namespace.clone()?,
            owner: obj.controller_owner_ref(&())?,
        })
    }

    /// Name of a child: `<parent>-<suffix>`.
    pub fn child_name(&self, suffix: &str) -> String {
        format!("{}-{}", self.name, suffix)
    }

    /// Selector labels of one component of a stack (stable for the life of a
    /// Deployment: never add to these).
    pub fn selector(&self, name: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("app.kubernetes.io/name".to_string(), name.to_string()),
            ("app.kubernetes.io/instance".to_string(), self.name.clone()),
        ])
    }

    /// [`Self::selector`] as the label selector of a Deployment, DaemonSet or
    /// NetworkPolicy.
    pub fn label_selector(&self, name: &str) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector(name)),
            match_expressions: None,
        }
    }

    /// The recommended labels plus the stack label.
    pub fn labels(&self, name: &str, component: &str) -> BTreeMap<String, String> {
        let mut l = self.selector(name);
        l.insert("app.kubernetes.io/component".into(), component.into());
        l.insert("app.kubernetes.io/part-of".into(), PART_OF.into());
        l.insert("app.kubernetes.io/managed-by".into(), MANAGER.into());
        l.insert(STACK_LABEL.into(), self.name.clone());
        l
    }

    /// Metadata of a child: name, namespace, labels, controller owner reference.
    /// Nothing is copied from the parent's own labels or annotations (GitOps
    /// tools track objects by those and would prune the children).
    pub fn meta(&self, child_name: &str, app: &str, component: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(child_name.to_string()),
            namespace: Some(self.namespace.clone()),
            labels: Some(self.labels(app, component)),
            owner_references: Some(vec![self.owner.clone()]),
            ..ObjectMeta::default()
        }
    }
}
