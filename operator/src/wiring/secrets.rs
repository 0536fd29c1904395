//! Where the wiring flows find their credentials: qBittorrent's WebUI login
//! in `<stack>-qbittorrent-webui` (created once by the reconciler, see
//! `render::stack::webui_login`), and each app's API key in the user's
//! `apiKeySecretRef` or else the generated `<stack>-api-keys` (key = app
//! name). Values are only ever handed to the client, never logged.

use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::ApiKey;
use crate::api::mediastack::MediaStackSpec;
use crate::render::meta::Parent;

/// Name of the Secret with qBittorrent's WebUI login of stack `stack`.
pub fn qbittorrent_secret(stack: &str) -> String {
    crate::render::vpn::webui_secret_name(&parent(stack), "qbittorrent")
}

/// Name of the Secret with the generated API keys of stack `stack`.
pub fn api_keys_secret(stack: &str) -> String {
    crate::render::monitoring::api_keys_secret_name(&parent(stack))
}

fn parent(stack: &str) -> Parent {
    Parent {
        name: stack.to_string(),
        namespace: String::new(),
        owner: Default::default(),
    }
}

/// Why a credential is not available (yet).
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("Secret {0} does not exist yet")]
    Missing(String),
    #[error("Secret {secret} has no key {key}")]
    NoKey { secret: String, key: String },
    #[error("reading Secret {secret}: {source}")]
    Read {
        secret: String,
        #[source]
        source: kube::Error,
    },
}

async fn read_key(secrets: &Api<Secret>, name: &str, key: &str) -> Result<String, CredentialError> {
    let secret = secrets
        .get_opt(name)
        .await
        .map_err(|source| CredentialError::Read {
            secret: name.to_string(),
            source,
        })?
        .ok_or_else(|| CredentialError::Missing(name.to_string()))?;
    let value = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| String::from_utf8_lossy(&b.0).trim().to_string())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(key).map(|v| v.trim().to_string()))
        })
        .filter(|v| !v.is_empty());
    value.ok_or_else(|| CredentialError::NoKey {
        secret: name.to_string(),
        key: key.to_string(),
    })
}

/// qBittorrent's WebUI user name and password.
pub async fn qbittorrent_login(
    secrets: &Api<Secret>,
    stack: &str,
) -> Result<(String, String), CredentialError> {
    let name = qbittorrent_secret(stack);
    let user = read_key(secrets, &name, "username").await?;
    let password = read_key(secrets, &name, "password").await?;
    Ok((user, password))
}

/// `app`'s API key: the user's `apiKeySecretRef` if set, else the generated
/// one.
pub async fn api_key(
    secrets: &Api<Secret>,
    stack: &str,
    spec: &MediaStackSpec,
    app: &str,
) -> Result<ApiKey, CredentialError> {
    let user_ref = spec
        .apps
        .get(app)
        .and_then(|a| a.api_key_secret_ref.as_ref());
    let value = match user_ref {
        Some(r) => read_key(secrets, &r.name, &r.key).await?,
        None => read_key(secrets, &api_keys_secret(stack), app).await?,
    };
    Ok(ApiKey::new(value))
}
