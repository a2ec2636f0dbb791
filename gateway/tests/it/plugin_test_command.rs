//! `wharf plugin test`: the real binary runs example plugins on one request, with the gateway's
//! runtime and default quotas, and prints what they did or the error the gateway would answer.

use wharf_plugins::test_support::example_plugin;

use crate::support::*;

/// The example's bytes in a file of its name.
fn plugin_file(name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("wharf-plugin-test-{}", unique_suffix()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}.wasm"));
    std::fs::write(&path, example_plugin(name)).unwrap();
    path.display().to_string()
}

#[test]
fn plugin_test_shows_what_a_plugin_did_or_how_it_failed() {
    let add = plugin_file("add-header");
    let (ok, out) = run_wharf(
        &[
            "plugin",
            "test",
            &add,
            "--request",
            "GET /x",
            "--config",
            "request-header=x-a",
            "--config",
            "request-value=1",
            "--config",
            "response-header=x-b",
            "--config",
            "response-value=2",
        ],
        &[],
    );
    assert!(ok, "{out}");
    for line in [
        "✓ continues to the upstream",
        "set x-a: 1",
        "→ upstream answers 200",
        "set x-b: 2",
        "fuel used",
    ] {
        assert!(out.contains(line), "{line:?} missing:\n{out}");
    }

    let auth = plugin_file("api-key-auth");
    let (ok, out) = run_wharf(&["plugin", "test", &auth, "--config", "keys=k1"], &[]);
    assert!(ok, "{out}");
    assert!(out.contains("answers 401 itself"), "{out}");
    let (ok, out) = run_wharf(
        &[
            "plugin",
            "test",
            &auth,
            "--config",
            "keys=k1",
            "-H",
            "x-api-key: k1",
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("remove x-api-key") && out.contains("no response phase"),
        "{out}"
    );

    let json = plugin_file("json-validator");
    let (ok, out) = run_wharf(
        &[
            "plugin",
            "test",
            &json,
            "--request",
            "POST /",
            "--body",
            "{\"name\": 1}",
            "--config",
            "envelope=data",
        ],
        &[],
    );
    assert!(ok, "{out}");
    assert!(
        out.contains("body replaced (20 bytes): {\"data\":{\"name\": 1}}"),
        "{out}"
    );

    // A broken plugin: the code and status the gateway would answer, and a failing exit.
    let hostile = plugin_file("hostile");
    let (ok, out) = run_wharf(&["plugin", "test", &hostile, "--config", "mode=trap"], &[]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("the gateway would answer 502 plugin_trap"),
        "{out}"
    );
    let (ok, out) = run_wharf(
        &[
            "plugin",
            "test",
            &hostile,
            "--config",
            "mode=fuel",
            "--quota",
            "plugin_fuel=100000",
        ],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("502 plugin_fuel_exhausted") && out.contains("100000 units"),
        "{out}"
    );
    // Not a plugin at all: refused as an upload would be.
    let (ok, out) = run_wharf(&["plugin", "test", "/etc/hostname"], &[]);
    assert!(!ok, "{out}");
    assert!(out.contains("would be refused (422)"), "{out}");
}
