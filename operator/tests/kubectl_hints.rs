//! Traefik (which k3s ships) has a kind `IngressRoute` too, so a kubectl
//! command with the bare resource name `ingressroute` picks one of the two
//! silently. Every doc, example, script, chart text and operator message of
//! the repository names ours `mroute` or `ingressroutes.mediastack.io`.

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Files a user reads or runs, or that print hints: docs, examples, scripts,
/// the chart's texts and templates, the workflows, the operator's source.
fn scanned_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("md" | "yaml" | "yml" | "sh" | "rs" | "txt" | "tpl" | "lua" | "py")
            ) {
                out.push(p);
            }
        }
    }
    let root = repo();
    let mut files = vec![root.join("README.md"), root.join("kind-config.yaml")];
    // e2e/tests is left out: test code, not what a user reads; e2e/src
    // (helpers that print hints) and the scripts are in.
    for dir in [
        "docs",
        "examples",
        "e2e/src",
        "e2e/controlplane",
        "e2e/images",
        "charts/mediastack-operator/templates",
        ".github",
        "operator/src",
    ] {
        walk(&root.join(dir), &mut files);
    }
    for f in std::fs::read_dir(root.join("e2e")).expect("e2e").flatten() {
        if f.path().extension().is_some_and(|e| e == "sh") {
            files.push(f.path());
        }
    }
    files.push(root.join("charts/mediastack-operator/README.md"));
    files.push(root.join("charts/mediastack-operator/values.yaml"));
    files
}

/// The bare kind name as kubectl takes it: a token `ingressroute(s)`, in a
/// comma list (`get deploy,ingressroute`), or `ingressroute(s)/<name>`.
fn bare_uses(line: &str) -> Vec<String> {
    let mut found = Vec::new();
    let has_kubectl = line.contains("kubectl");
    for token in line.split(|c: char| c.is_whitespace() || c == '`' || c == '"' || c == '\'') {
        for part in token.split(',') {
            // `ingressroute/<name>` is kubectl's spelling (lower case);
            // `IngressRoute/<name>` is how the operator names a child by
            // kind, and RBAC names subresources `ingressroutes/status`.
            let slashed = part.split_once('/').is_some_and(|(kind, rest)| {
                (kind == "ingressroute" || kind == "ingressroutes")
                    && !matches!(rest, "status" | "finalizers")
            });
            let lower = part.to_ascii_lowercase();
            let alone = lower == "ingressroute" || lower == "ingressroutes";
            if slashed || (alone && has_kubectl) {
                found.push(part.to_string());
            }
        }
    }
    found
}

#[test]
fn the_matcher_finds_bare_kind_names() {
    for bad in [
        "kubectl get ingressroute -n media",
        "kubectl -n media get ingressroutes",
        "`kubectl get deploy,ingressroute`",
        "kubectl describe ingressroute/tv",
        "see ingressroute/home-jellyfin",
        "kubectl -n media delete IngressRoute tv",
    ] {
        assert!(!bare_uses(bad).is_empty(), "not found in {bad:?}");
    }
    for good in [
        "kubectl get mroute -n media",
        "kubectl get ingressroutes.mediastack.io",
        "kubectl describe ingressroutes.mediastack.io/tv",
        "kubectl get ingressroutes.traefik.io,middlewares.traefik.io",
        "apply -f examples/ingressroute.yaml",
        "a mediastack.io IngressRoute <stack>-<app>",
        "owns IngressRoute/home-jellyfin",
        "resources: [ingressroutes/status]",
    ] {
        assert!(bare_uses(good).is_empty(), "wrongly found in {good:?}");
    }
}

#[test]
fn no_doc_example_script_or_message_uses_the_bare_kind_name() {
    let files = scanned_files();
    assert!(files.len() > 50, "scanned only {} files", files.len());
    let mut hits = Vec::new();
    for f in &files {
        // This file lists bad examples on purpose.
        if f.ends_with("operator/tests/kubectl_hints.rs") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for (n, line) in text.lines().enumerate() {
            for hit in bare_uses(line) {
                hits.push(format!("{}:{}: {hit}", f.display(), n + 1));
            }
        }
    }
    assert!(
        hits.is_empty(),
        "use `mroute` or `ingressroutes.mediastack.io` (Traefik's kind has the same name):\n{}",
        hits.join("\n")
    );
}
