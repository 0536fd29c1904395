//! Contract checker (tests, and the `testing` feature): does a request match an app's published
//! OpenAPI document? Path (templates like `/api/v3/downloadclient/{id}`),
//! method, path and query parameters, and the JSON body against the
//! operation's schema; answers can be checked against the response schema.
//!
//! The documents are parsed with `openapiv3` and the schemas validated with
//! `jsonschema`; this file is the glue: path matching, parameter typing,
//! OpenAPI 3.0's `nullable` (mapped to a JSON-Schema `null` type) and `$ref`
//! resolution (each schema is validated with the document's `components`
//! beside it, so `#/components/...` resolves).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use openapiv3::{
    OpenAPI, Operation, Parameter, ParameterSchemaOrContent, PathItem, ReferenceOr, StatusCode,
};
use serde_json::{Value, json};

/// `$MEDIASTACK_SHARED/thirdparty/openapi`, default `<repo>/../shared/...`.
pub fn openapi_dir() -> PathBuf {
    let shared = std::env::var_os("MEDIASTACK_SHARED")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"));
    shared.join("thirdparty/openapi")
}

/// One app's contract.
pub struct Contract {
    pub name: String,
    doc: OpenAPI,
    /// `components`, with `nullable` mapped, for `$ref` resolution.
    components: Value,
    /// Prefix of every path (Jellyseerr's `servers[0].url` is `{server}/api/v1`).
    pub prefix: String,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
}

/// Which operation a request matched.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Matched {
    /// The path template, e.g. `/api/v3/downloadclient/{id}`.
    pub template: String,
    pub method: String,
    /// Path parameters by name.
    pub params: HashMap<String, String>,
}

impl Contract {
    /// Load `file` from [`openapi_dir`]; `prefix` is stripped from request
    /// paths before matching.
    pub fn load(file: &str, prefix: &str) -> Self {
        let path = openapi_dir().join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (set MEDIASTACK_SHARED to the shared folder)",
                path.display()
            )
        });
        let raw: Value = if file.ends_with(".json") {
            serde_json::from_str(&text).expect("OpenAPI JSON")
        } else {
            serde_yaml::from_str(&text).expect("OpenAPI YAML")
        };
        let doc: OpenAPI = serde_json::from_value(raw.clone()).expect("an OpenAPI 3.0 document");
        let mut components = raw.get("components").cloned().unwrap_or(json!({}));
        map_nullable(&mut components);
        Self {
            name: file.to_string(),
            doc,
            components,
            prefix: prefix.to_string(),
            validators: Mutex::default(),
        }
    }

    /// The operation `method path` matches, or why none does. Literal
    /// segments win over templated ones (`/settings/radarr/test` before
    /// `/settings/radarr/{radarrId}`).
    pub fn find(
        &self,
        method: &str,
        path: &str,
    ) -> Result<(Matched, &Operation, &PathItem), String> {
        let rel = path
            .strip_prefix(self.prefix.as_str())
            .ok_or_else(|| format!("path {path} is outside {}", self.prefix))?;
        let segs: Vec<&str> = rel.trim_end_matches('/').split('/').collect();
        let mut best: Option<(usize, &String, &PathItem, HashMap<String, String>)> = None;
        for (template, item) in &self.doc.paths.paths {
            let ReferenceOr::Item(item) = item else {
                continue;
            };
            let tsegs: Vec<&str> = template.trim_end_matches('/').split('/').collect();
            if tsegs.len() != segs.len() {
                continue;
            }
            let mut literal = 0;
            let mut params = HashMap::new();
            let ok = tsegs.iter().zip(&segs).all(|(t, s)| {
                if let Some(name) = t.strip_prefix('{').and_then(|t| t.strip_suffix('}')) {
                    params.insert(name.to_string(), s.to_string());
                    !s.is_empty()
                } else {
                    literal += 1;
                    t == s
                }
            });
            if ok && best.as_ref().is_none_or(|b| literal > b.0) {
                best = Some((literal, template, item, params));
            }
        }
        let (_, template, item, params) =
            best.ok_or_else(|| format!("no path {rel} in {}", self.name))?;
        let op = item
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(method))
            .map(|(_, op)| op)
            .ok_or_else(|| format!("{template} has no {method} in {}", self.name))?;
        Ok((
            Matched {
                template: template.clone(),
                method: method.to_uppercase(),
                params,
            },
            op,
            item,
        ))
    }

    /// Check a whole request. `headers` are (lower-case name, value).
    pub fn check_request(
        &self,
        method: &str,
        path: &str,
        query: &[(String, String)],
        headers: &[(String, String)],
        body: Option<&Value>,
    ) -> Result<Matched, String> {
        let (matched, op, item) = self.find(method, path)?;
        let at = format!("{method} {}", matched.template);
        let params: Vec<&Parameter> = item
            .parameters
            .iter()
            .chain(&op.parameters)
            .filter_map(|p| self.resolve_param(p))
            .collect();
        // Path parameters: each typed by its schema.
        for (name, value) in &matched.params {
            let p = params
                .iter()
                .find(|p| matches!(p, Parameter::Path { parameter_data, .. } if &parameter_data.name == name))
                .ok_or_else(|| format!("{at}: path parameter {name} is not declared"))?;
            self.check_param(&at, p, value)?;
        }
        // Query parameters: only declared ones (or the documented `apikey`
        // security scheme), each typed; required ones present.
        let api_key_query = self.api_key_scheme("query");
        for (name, value) in query {
            if api_key_query.as_deref() == Some(name.as_str()) {
                continue;
            }
            let p = params
                .iter()
                .find(|p| matches!(p, Parameter::Query { parameter_data, .. } if &parameter_data.name == name))
                .ok_or_else(|| format!("{at}: query parameter {name} is not in the document"))?;
            self.check_param(&at, p, value)?;
        }
        for p in &params {
            if let Parameter::Query { parameter_data, .. } = p
                && parameter_data.required
                && !query.iter().any(|(n, _)| n == &parameter_data.name)
            {
                return Err(format!(
                    "{at}: required query parameter {} is missing",
                    parameter_data.name
                ));
            }
        }
        // Security: an operation with a requirement needs the API key header.
        let security = op.security.as_ref().or(self.doc.security.as_ref());
        if security.is_some_and(|s| !s.is_empty())
            && let Some(header) = self.api_key_scheme("header")
            && !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(&header))
            && !query
                .iter()
                .any(|(n, _)| Some(n.as_str()) == api_key_query.as_deref())
            && !headers.iter().any(|(n, _)| n == "cookie")
        {
            return Err(format!("{at}: no {header} header"));
        }
        // Body.
        let request_body = op.request_body.as_ref().and_then(|b| match b {
            ReferenceOr::Item(b) => Some(b),
            ReferenceOr::Reference { .. } => None,
        });
        match (request_body, body) {
            (None, Some(_)) => return Err(format!("{at}: takes no body")),
            (Some(rb), None) if rb.required => return Err(format!("{at}: body required")),
            (Some(rb), Some(body)) => {
                let schema = rb
                    .content
                    .get("application/json")
                    .and_then(|m| m.schema.as_ref())
                    .ok_or_else(|| format!("{at}: takes no JSON body"))?;
                self.check_schema(&format!("{at} body"), schema, body)?;
            }
            _ => {}
        }
        Ok(matched)
    }

    /// Check an answer: `status` must be documented (or a `default`), and a
    /// JSON body must match its schema.
    pub fn check_response(
        &self,
        method: &str,
        path: &str,
        status: u16,
        body: &Value,
    ) -> Result<(), String> {
        let (matched, op, _) = self.find(method, path)?;
        let at = format!("{method} {} -> {status}", matched.template);
        let resp = op
            .responses
            .responses
            .get(&StatusCode::Code(status))
            .or(op.responses.responses.get(&StatusCode::Range(status / 100)))
            .or(op.responses.default.as_ref())
            .ok_or_else(|| format!("{at}: status not documented"))?;
        let ReferenceOr::Item(resp) = resp else {
            return Ok(());
        };
        match resp
            .content
            .get("application/json")
            .and_then(|m| m.schema.as_ref())
        {
            Some(schema) => self.check_schema(&at, schema, body),
            None if body.is_null() => Ok(()),
            None => Err(format!("{at}: documented without a body")),
        }
    }

    /// The first 2xx status the operation documents (what a fake answers).
    pub fn success_status(&self, method: &str, path: &str) -> u16 {
        let Ok((_, op, _)) = self.find(method, path) else {
            return 200;
        };
        op.responses
            .responses
            .keys()
            .find_map(|c| match c {
                StatusCode::Code(c) if (200..300).contains(c) => Some(*c),
                _ => None,
            })
            .unwrap_or(200)
    }

    fn api_key_scheme(&self, location: &str) -> Option<String> {
        let schemes = &self.doc.components.as_ref()?.security_schemes;
        schemes.values().find_map(|s| match s {
            ReferenceOr::Item(openapiv3::SecurityScheme::APIKey {
                location: l, name, ..
            }) => {
                let loc = serde_json::to_value(l).ok()?;
                (loc == location).then(|| name.clone())
            }
            _ => None,
        })
    }

    fn resolve_param<'a>(&'a self, p: &'a ReferenceOr<Parameter>) -> Option<&'a Parameter> {
        match p {
            ReferenceOr::Item(p) => Some(p),
            ReferenceOr::Reference { reference } => {
                let name = reference.rsplit('/').next()?;
                match self.doc.components.as_ref()?.parameters.get(name)? {
                    ReferenceOr::Item(p) => Some(p),
                    ReferenceOr::Reference { .. } => None,
                }
            }
        }
    }

    fn check_param(&self, at: &str, p: &Parameter, value: &str) -> Result<(), String> {
        let data = p.parameter_data_ref();
        let ParameterSchemaOrContent::Schema(schema) = &data.format else {
            return Ok(());
        };
        let schema_json = self.schema_json(schema);
        // Parameters arrive as text: type them as their schema says.
        let ty = schema_json
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or("string");
        let typed = match ty {
            "integer" => value.parse::<i64>().map(Value::from).map_err(|_| ()),
            "number" => value.parse::<f64>().map(|f| json!(f)).map_err(|_| ()),
            "boolean" => value.parse::<bool>().map(Value::from).map_err(|_| ()),
            _ => Ok(Value::String(value.to_string())),
        }
        .map_err(|_| format!("{at}: parameter {} = {value:?} is not {ty}", data.name))?;
        self.check_schema(&format!("{at} parameter {}", data.name), schema, &typed)
    }

    fn schema_json(&self, schema: &ReferenceOr<openapiv3::Schema>) -> Value {
        let mut v = serde_json::to_value(schema).expect("schema serializes");
        map_nullable(&mut v);
        v
    }

    fn check_schema(
        &self,
        at: &str,
        schema: &ReferenceOr<openapiv3::Schema>,
        instance: &Value,
    ) -> Result<(), String> {
        let schema = self.schema_json(schema);
        let key = schema.to_string();
        let validator = {
            let mut cache = self.validators.lock().expect("validators");
            match cache.get(&key) {
                Some(v) => v.clone(),
                None => {
                    let root = json!({ "allOf": [schema], "components": self.components });
                    let v = Arc::new(
                        jsonschema::draft4::new(&root)
                            .unwrap_or_else(|e| panic!("{}: schema at {at}: {e}", self.name)),
                    );
                    cache.insert(key, v.clone());
                    v
                }
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|e| format!("{} at '{}'", e, e.instance_path))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(format!("{at}: {}", errors.join("; ")))
        }
    }
}

/// OpenAPI 3.0's `nullable: true` beside a `type` is JSON Schema's
/// `type: [T, "null"]`; beside a `$ref` or `allOf` it is `anyOf [.., null]`.
fn map_nullable(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for child in m.values_mut() {
                map_nullable(child);
            }
            if m.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = m.get("type").cloned() {
                    m.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(e)) = m.get_mut("enum") {
                        e.push(Value::Null);
                    }
                } else if m.contains_key("$ref") || m.contains_key("allOf") {
                    let inner = Value::Object(std::mem::take(m));
                    m.insert("anyOf".into(), json!([inner, { "type": "null" }]));
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(map_nullable),
        _ => {}
    }
}
