//! Plan for Prowlarr: one application per arr (`mediastack-sonarr`,
//! `mediastack-radarr`), full sync, with in-cluster URLs and the arr's key.

use serde_json::{Value, json};

use super::ApiRequest;
use super::arr::{Arr, ProviderWant, obj, plan_provider};
use super::{Endpoint, MANAGED_NAME};

pub const APPLICATIONS_PATH: &str = "/api/v1/applications";

/// The name of the application the operator manages for `arr`.
pub fn application_name(arr: Arr) -> String {
    format!("{MANAGED_NAME}-{}", arr.app())
}

/// The far end of an application: the arr's Service and API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArrTarget {
    pub arr: Arr,
    pub endpoint: Endpoint,
    pub api_key: String,
}

pub fn application_want(prowlarr: &Endpoint, target: &ArrTarget) -> ProviderWant {
    let (implementation, contract) = target.arr.prowlarr_implementation();
    ProviderWant {
        name: application_name(target.arr),
        owned: obj(json!({
            "implementation": implementation,
            "configContract": contract,
            "syncLevel": "fullSync",
        })),
        fields: vec![
            ("prowlarrUrl".into(), json!(prowlarr.url())),
            ("baseUrl".into(), json!(target.endpoint.url())),
            ("apiKey".into(), json!(target.api_key)),
        ],
        on_create: obj(json!({ "tags": [] })),
    }
}

/// Plan for one arr's application, given `GET /api/v1/applications`.
pub fn plan_application(
    current: &[Value],
    prowlarr: &Endpoint,
    target: &ArrTarget,
) -> Vec<ApiRequest> {
    plan_provider(
        APPLICATIONS_PATH,
        current,
        &application_want(prowlarr, target),
    )
}
