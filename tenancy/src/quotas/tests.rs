use super::*;

#[test]
fn docs_list_every_quota() {
    let path =
        crate::test_support::package_dir(env!("CARGO_MANIFEST_DIR")).join("../docs/quotas.md");
    let want = Quotas::markdown();
    if std::env::var_os("WHARF_BLESS").is_some() {
        std::fs::write(&path, &want).unwrap();
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/quotas.md is stale; rerun with WHARF_BLESS=1 to rewrite it"
    );
}

#[test]
fn every_default_is_within_its_bounds_and_names_are_unique() {
    Quotas::default().validate().unwrap();
    let table = Quotas::table();
    let mut names: Vec<_> = table.iter().map(|r| r.name.clone()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), table.len());
    // The stored JSON's keys are the declared names, nothing else.
    let json = serde_json::to_value(Quotas::default()).unwrap();
    let mut keys: Vec<_> = json.as_object().unwrap().keys().cloned().collect();
    keys.sort_unstable();
    assert_eq!(keys, names);
}

#[test]
fn a_bound_is_named_in_the_error() {
    let mut q = Quotas::default();
    q.redis.max_connections = 0;
    let e = q.validate().unwrap_err().to_string();
    assert!(
        e.contains(RedisQuotas::NAMES.max_connections.as_str()),
        "{e}"
    );
}
