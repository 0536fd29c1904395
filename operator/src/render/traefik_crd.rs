//! Traefik's side of the contract, shared by the modules that render for
//! it: the `traefik.io/v1alpha1` kinds the operator writes (IngressRoute,
//! Middleware) and the managed Traefik's entry point that cloudflared
//! connects to. `route` (our IngressRoutes), `traefik` (the managed
//! Traefik), `fail2ban` and `monitoring` read it from here, so none of them
//! depends on another for these names.

use serde_json::Value;

use super::{Child, RenderError};

/// API group of Traefik's CRDs.
pub const TRAEFIK_GROUP: &str = "traefik.io";
/// The Traefik CRD version the operator writes.
pub const TRAEFIK_VERSION: &str = "v1alpha1";
/// Entry point (and Service port name) of the managed Traefik that
/// cloudflared connects to. Public hosts are routed only there (see `route`).
pub const TUNNEL_ENTRY_POINT: &str = "tunnel";

/// A Traefik rule matching any of `hosts`: ``Host(`a`) || Host(`b`)``.
pub fn host_rule(hosts: &[&str]) -> String {
    hosts
        .iter()
        .map(|h| format!("Host(`{h}`)"))
        .collect::<Vec<_>>()
        .join(" || ")
}

/// Wraps a `traefik.io/v1alpha1` IngressRoute given as JSON.
pub fn traefik_ingress_route(value: Value) -> Result<Child, RenderError> {
    Child::custom(
        TRAEFIK_GROUP,
        TRAEFIK_VERSION,
        "IngressRoute",
        "ingressroutes",
        value,
    )
}

/// Wraps a `traefik.io/v1alpha1` Middleware given as JSON.
pub fn traefik_middleware(value: Value) -> Result<Child, RenderError> {
    Child::custom(
        TRAEFIK_GROUP,
        TRAEFIK_VERSION,
        "Middleware",
        "middlewares",
        value,
    )
}

/// Checks rendered Traefik objects against the upstream CRD schema
/// (`shared/thirdparty/crds/traefik-crds.yaml`, Traefik v3.7): every field
/// name must exist, every value must have the schema's type.
#[cfg(test)]
pub(crate) mod traefik_schema {
    use serde_json::Value;

    use super::super::Child;

    fn crds() -> Vec<Value> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../shared/thirdparty/crds/traefik-crds.yaml"
        );
        let text = std::fs::read_to_string(path).unwrap_or_else(|e| {
            panic!("Traefik CRDs at {path}: {e} (shared/ must sit beside the repository)")
        });
        serde_yaml::Deserializer::from_str(&text)
            .map(|doc| serde::Deserialize::deserialize(doc).expect("a CRD document parses"))
            .collect()
    }

    fn spec_schema(kind: &str) -> Value {
        crds()
            .into_iter()
            .find(|crd| crd["spec"]["names"]["kind"] == kind)
            .map(|crd| {
                let version = crd["spec"]["versions"]
                    .as_array()
                    .and_then(|vs| vs.iter().find(|v| v["name"] == "v1alpha1").cloned())
                    .expect("v1alpha1 is served");
                version["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
            })
            .unwrap_or_else(|| panic!("no Traefik CRD of kind {kind}"))
    }

    fn check(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
        if schema["x-kubernetes-int-or-string"] == true {
            if !(value.is_i64() || value.is_string()) {
                errors.push(format!("{path}: {value} is not an integer or string"));
            }
            return;
        }
        match schema["type"].as_str() {
            Some("object") => {
                let Some(obj) = value.as_object() else {
                    errors.push(format!("{path}: {value} is not an object"));
                    return;
                };
                for req in schema["required"].as_array().into_iter().flatten() {
                    if let Some(r) = req.as_str().filter(|r| !obj.contains_key(*r)) {
                        errors.push(format!("{path}: required field {r} missing"));
                    }
                }
                for (k, v) in obj {
                    let sub = &schema["properties"][k];
                    if !sub.is_null() {
                        check(sub, v, &format!("{path}.{k}"), errors);
                    } else if schema["additionalProperties"].is_object() {
                        check(
                            &schema["additionalProperties"],
                            v,
                            &format!("{path}.{k}"),
                            errors,
                        );
                    } else {
                        errors.push(format!("{path}: unknown field {k}"));
                    }
                }
            }
            Some("array") => match value.as_array() {
                Some(items) => {
                    for (i, item) in items.iter().enumerate() {
                        check(&schema["items"], item, &format!("{path}[{i}]"), errors);
                    }
                }
                None => errors.push(format!("{path}: {value} is not an array")),
            },
            Some("string") if !value.is_string() => {
                errors.push(format!("{path}: {value} is not a string"))
            }
            Some("integer") if !value.is_i64() => {
                errors.push(format!("{path}: {value} is not an integer"))
            }
            Some("boolean") if !value.is_boolean() => {
                errors.push(format!("{path}: {value} is not a boolean"))
            }
            _ => {}
        }
        if let Some(allowed) = schema["enum"].as_array()
            && !allowed.contains(value)
        {
            errors.push(format!("{path}: {value} is not one of {allowed:?}"));
        }
    }

    /// Panics unless every `traefik.io` child's spec fits its CRD schema.
    pub fn assert_valid(children: &[Child]) {
        let mut checked = 0;
        for child in children.iter().filter(|c| c.api.group == "traefik.io") {
            let mut errors = Vec::new();
            let spec = &child.object.data["spec"];
            check(&spec_schema(&child.api.kind), spec, "spec", &mut errors);
            assert!(errors.is_empty(), "{}: {errors:#?}", child.key());
            checked += 1;
        }
        assert!(checked > 0, "no traefik.io objects to check");
    }
}
