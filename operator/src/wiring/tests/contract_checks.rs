//! The contract checker must be able to fail: wrong path, method, parameter
//! or body are rejected with a reason; the plans' own requests pass.

use serde_json::{Value, json};

use super::{jellyseerr, prowlarr, qbit, radarr, sonarr};
use crate::wiring::arr::{self, Arr};
use crate::wiring::jellyseerr as js;
use crate::wiring::prowlarr as pr;
use crate::wiring::{ApiRequest, Endpoint};

fn key() -> Vec<(String, String)> {
    vec![("x-api-key".into(), "k".into())]
}

fn check(c: &crate::wiring::contract::Contract, r: &ApiRequest) -> Result<(), String> {
    c.check_request(
        r.method.as_str(),
        &format!("{}{}", c.prefix, r.path),
        &r.query,
        &key(),
        r.json(),
    )
    .map(|_| ())
}

#[test]
fn checker_accepts_the_plans_requests() {
    for (c, which) in [(sonarr(), Arr::Sonarr), (radarr(), Arr::Radarr)] {
        for r in arr::plan_download_client(which, &[], &qbit())
            .iter()
            .chain(&arr::plan_root_folder(which, &[]))
        {
            check(&c, r).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        }
    }
    let p = prowlarr();
    let ep = Endpoint::new("media-prowlarr", 9696);
    for which in [Arr::Sonarr, Arr::Radarr] {
        let t = pr::ArrTarget {
            arr: which,
            endpoint: Endpoint::new("x", 1),
            api_key: "k".into(),
        };
        for r in pr::plan_application(&[], &ep, &t) {
            check(&p, &r).unwrap();
        }
    }
}

#[test]
fn checker_rejects_a_wrong_body() {
    let c = sonarr();
    let good = arr::plan_download_client(Arr::Sonarr, &[], &qbit()).remove(0);
    // A key the schema does not have (additionalProperties: false).
    let mut body = good.json().unwrap().clone();
    body["remotePathMapping"] = json!("/downloads");
    let err = check(&c, &ApiRequest::post(&good.path, body)).unwrap_err();
    assert!(err.contains("remotePathMapping"), "{err}");
    // A wrong type.
    let mut body = good.json().unwrap().clone();
    body["enable"] = json!("yes");
    let err = check(&c, &ApiRequest::post(&good.path, body)).unwrap_err();
    assert!(err.contains("body") && err.contains("enable"), "{err}");
    // An enum value the document does not list.
    let mut body = good.json().unwrap().clone();
    body["protocol"] = json!("magnet");
    assert!(check(&c, &ApiRequest::post(&good.path, body)).is_err());
    // Jellyseerr: a required key missing.
    let j = jellyseerr();
    let err = check(
        &j,
        &ApiRequest::post("/settings/sonarr", json!({"name": "x", "hostname": "h"})),
    )
    .unwrap_err();
    assert!(err.contains("required"), "{err}");
    // Prowlarr: syncLevel outside its enum.
    let p = prowlarr();
    let err = check(
        &p,
        &ApiRequest::post(
            "/api/v1/applications",
            json!({"name": "x", "syncLevel": "everything"}),
        ),
    )
    .unwrap_err();
    assert!(err.contains("syncLevel"), "{err}");
}

#[test]
fn checker_rejects_a_wrong_path_method_or_parameter() {
    let c = sonarr();
    let err = check(&c, &ApiRequest::get("/api/v3/downloadclients")).unwrap_err();
    assert!(err.contains("no path"), "{err}");
    let err = check(
        &c,
        &ApiRequest {
            method: hyper::Method::PATCH,
            ..ApiRequest::get("/api/v3/downloadclient/1")
        },
    )
    .unwrap_err();
    assert!(err.contains("has no PATCH"), "{err}");
    let err = check(&c, &ApiRequest::get("/api/v3/downloadclient/abc")).unwrap_err();
    assert!(err.contains("is not integer"), "{err}");
    let mut r = ApiRequest::get("/api/v3/downloadclient");
    r.query.push(("includeSecrets".into(), "true".into()));
    let err = check(&c, &r).unwrap_err();
    assert!(err.contains("query parameter includeSecrets"), "{err}");
    let mut r = ApiRequest::post("/api/v3/downloadclient", json!({"name": "x"}));
    r.query.push(("forceSave".into(), "maybe".into()));
    assert!(check(&c, &r).unwrap_err().contains("is not boolean"));
    // A GET with a body, and a missing API key.
    assert!(check(&c, &ApiRequest::post("/api/v3/system/status", json!({}))).is_err());
    let err = c
        .check_request("GET", "/api/v3/downloadclient", &[], &[], None)
        .unwrap_err();
    assert!(err.contains("X-Api-Key"), "{err}");
    // Jellyseerr: outside its /api/v1 prefix; a literal path beats a template.
    let j = jellyseerr();
    assert!(
        j.check_request("GET", "/settings/sonarr", &[], &key(), None)
            .is_err()
    );
    let m = j.find("POST", "/api/v1/settings/radarr/test").unwrap().0;
    assert_eq!(m.template, "/settings/radarr/test");
}

#[test]
fn checker_checks_answers_too() {
    let c = sonarr();
    c.check_response(
        "GET",
        "/api/v3/rootfolder",
        200,
        &json!([{"id": 1, "path": "/data/media/tv"}]),
    )
    .unwrap();
    let err = c
        .check_response("GET", "/api/v3/rootfolder", 200, &json!([{"id": "one"}]))
        .unwrap_err();
    assert!(err.contains("id"), "{err}");
    // Nullable fields accept null (OpenAPI 3.0 `nullable`).
    c.check_response(
        "GET",
        "/api/v3/rootfolder",
        200,
        &json!([{"id": 1, "path": null}]),
    )
    .unwrap();
    assert!(
        c.check_response("GET", "/api/v3/rootfolder", 200, &Value::Null)
            .is_err()
    );
}

#[test]
fn jellyseerr_plans_match_its_document() {
    let j = jellyseerr();
    let want = js::JellyfinWant {
        endpoint: Endpoint::new("media-jellyfin", 8096),
        admin_user: "admin".into(),
        admin_password: "pw".into(),
        admin_email: "admin@mediastack.invalid".into(),
    };
    let js::JellyfinPlan::Write(w) = js::plan_jellyfin(&json!({}), &want) else {
        panic!()
    };
    for r in &w {
        check(&j, r).unwrap();
    }
    for which in [Arr::Sonarr, Arr::Radarr] {
        let want = js::ServerWant {
            arr: which,
            endpoint: Endpoint::new("s", 1),
            api_key: "k".into(),
            profile: (1, "Any".into()),
        };
        for r in js::plan_server(&[], &want) {
            check(&j, &r).unwrap_or_else(|e| panic!("{e}"));
        }
    }
    for r in js::plan_initialize(&json!({"initialized": false})) {
        check(&j, &r).unwrap();
    }
}
