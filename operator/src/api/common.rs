//! Types shared by the three custom resources.

use kube::KubeSchema;
use serde::{Deserialize, Serialize};

/// API group of every custom resource of this operator.
pub const GROUP: &str = "mediastack.io";
/// The one served and stored version.
pub const VERSION: &str = "v1alpha1";

/// A DNS-1123 label: lower case alphanumerics and '-', starting and ending
/// alphanumeric, at most 63 characters.
pub const DNS_LABEL: &str = r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$";
/// A DNS subdomain used as a host name: dot-separated DNS labels.
pub const HOSTNAME: &str =
    r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?(\.[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)*$";

/// A reference to an object by name in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct LocalRef {
    /// Name of the object, in the namespace of the referring resource.
    #[schemars(length(min = 1, max = 253))]
    pub name: String,
}

/// A reference to a Secret in the same namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
pub struct SecretRef {
    /// Name of the Secret, in the namespace of the referring resource.
    #[schemars(
        length(min = 1, max = 253),
        regex(pattern = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
    )]
    pub name: String,
}
