//! The committed CRDs under `crds/` are exactly what the Rust types generate.
//! Regenerate with `cargo run -p mediastack-operator -- crd > crds/mediastack.io.yaml`.

#[test]
fn committed_crds_match_the_rust_types() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../crds/mediastack.io.yaml");
    let committed = std::fs::read_to_string(path).expect("crds/mediastack.io.yaml exists");
    let generated = mediastack_operator::api::crds_yaml().expect("CRDs render");
    assert!(
        committed == generated,
        "crds/mediastack.io.yaml is stale: run `cargo run -p mediastack-operator -- crd > crds/mediastack.io.yaml`"
    );
}

#[test]
fn crds_have_names_categories_and_status() {
    for crd in mediastack_operator::api::crds() {
        let names = &crd.spec.names;
        assert_eq!(crd.spec.group, "mediastack.io");
        assert_eq!(crd.spec.scope, "Namespaced");
        assert!(
            names
                .categories
                .as_deref()
                .unwrap_or_default()
                .contains(&"media".to_string()),
            "{} lacks category media",
            names.kind
        );
        assert_eq!(
            names.short_names.as_ref().map(Vec::len),
            Some(1),
            "{} has one short name",
            names.kind
        );
        let v = &crd.spec.versions[0];
        assert_eq!(v.name, "v1alpha1");
        assert!(
            v.subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} has a status subresource",
            names.kind
        );
        assert!(
            v.additional_printer_columns
                .as_ref()
                .is_some_and(|c| c.iter().any(|c| c.name == "Ready")),
            "{} prints Ready",
            names.kind
        );
    }
}
