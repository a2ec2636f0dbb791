//! `wharf plugin new` and `wharf plugin build`: a plugin project from one of the examples (so
//! every template is built and tested by the suite already), with the WIT this binary speaks;
//! and its build with the pinned toolchain (the same script `scripts/build-plugins` uses, carried
//! inside the binary, installing the tools into the user's cache on first use), checked as an
//! upload would be.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use wharf_plugins::PluginRuntime;

/// The WIT the gateway serves, from this binary.
const WORLD_WIT: &str = include_str!("../../../plugins/wit/world.wit");
const C_SDK: &str = include_str!("../../../plugins/examples/c-sdk/wharf.h");
const RUST_SDK: &str = include_str!("../../../plugins/examples/rust-sdk/wharf.rs");
/// The AssemblyScript examples' JSON configuration reader (`config.ts` in a project).
const AS_CONFIG: &str = include_str!("../../../plugins/examples/proxy-wasm/as-common/config.ts");
/// The build steps, as scripts/build-plugins runs them.
const BUILD_SCRIPT: [&str; 3] = [
    include_str!("../../../scripts/lib.sh"),
    include_str!("../../../scripts/toolchain.sh"),
    include_str!("../../../scripts/plugin-build.sh"),
];

/// plugins/bindings/ (scripts/gen-bindings): the C and Rust bindings of every plugin world, as
/// the pinned wit-bindgen makes them from WORLD_WIT, so that a build of a project whose WIT is
/// that one compiles no generator (plugin-build.sh checks STAMP).
macro_rules! bindings {
    ($($world:literal),*) => {
        &[
            ("STAMP", include_bytes!("../../../plugins/bindings/STAMP")),
            $(
                (concat!("c/", $world, ".c"), include_bytes!(concat!("../../../plugins/bindings/c/", $world, ".c"))),
                (concat!("c/", $world, ".h"), include_bytes!(concat!("../../../plugins/bindings/c/", $world, ".h"))),
                (
                    concat!("c/", $world, "_component_type.o"),
                    include_bytes!(concat!("../../../plugins/bindings/c/", $world, "_component_type.o")),
                ),
                (concat!("rust/", $world, ".rs"), include_bytes!(concat!("../../../plugins/bindings/rust/", $world, ".rs"))),
            )*
        ]
    };
}
const BINDINGS: &[(&str, &[u8])] = bindings!(
    "http_plugin",
    "body_plugin",
    "response_body_plugin",
    "request_filter",
    "request_body_filter"
);

struct Template {
    name: &'static str,
    lang: &'static str,
    world: &'static str,
    file: &'static str,
    source: &'static str,
    /// A configuration to try it with (`wharf plugin test --config`), when it needs one.
    config: &'static str,
}

macro_rules! template {
    ($name:literal, $lang:literal, $world:literal, $file:literal) => {
        Template {
            name: $name,
            lang: $lang,
            world: $world,
            file: $file,
            source: include_str!(concat!("../../../plugins/examples/", $name, "/", $file)),
            config: "",
        }
    };
}

/// An AssemblyScript proxy-wasm example, plugins/examples/proxy-wasm/as-NAME/index.ts.
macro_rules! as_template {
    ($name:literal, $config:literal) => {
        Template {
            name: $name,
            lang: "assemblyscript",
            world: "proxy-wasm",
            file: "index.ts",
            source: include_str!(concat!(
                "../../../plugins/examples/proxy-wasm/as-",
                $name,
                "/index.ts"
            )),
            config: $config,
        }
    };
}

/// The first of each language is its default.
const TEMPLATES: &[Template] = &[
    template!("add-header", "c", "http-plugin", "plugin.c"),
    template!("api-key-auth", "c", "request-filter", "plugin.c"),
    template!("json-validator", "c", "body-plugin", "plugin.c"),
    template!("token-introspection", "c", "http-plugin", "plugin.c"),
    template!("redis-rate-limit", "c", "request-filter", "plugin.c"),
    template!("sql-api-keys", "c", "http-plugin", "plugin.c"),
    template!("path-rewrite", "js", "request-filter", "plugin.js"),
    template!("cors", "python", "http-plugin", "app.py"),
    template!("rust-add-header", "rust", "http-plugin", "plugin.rs"),
    as_template!("headers", r#"{"header":"x-as","value":"1"}"#),
    as_template!("local-response", r#"{"body":"denied"}"#),
    as_template!(
        "http-call",
        r#"{"cluster":"auth","path":"/check","timeout_ms":500}"#
    ),
];

/// The toolchain pins of scripts/toolchain.sh (`NAME=value`), as the build installs them.
fn pin(name: &str) -> &'static str {
    BUILD_SCRIPT[1]
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("{name} is pinned in toolchain.sh"))
}

/// package.json of an AssemblyScript project: the versions `wharf plugin build` uses (from
/// its own cache; `npm install` here only gives an editor the SDK's types).
fn as_package_json(name: &str) -> String {
    let package = serde_json::json!({
        "name": name,
        "private": true,
        "description": "A proxy-wasm (ABI 0.2.1) plugin for Wharf; built by `wharf plugin build`",
        "devDependencies": {
            "assemblyscript": pin("ASSEMBLYSCRIPT_VERSION"),
            pin("AS_PROXY_WASM_SDK"): pin("AS_PROXY_WASM_SDK_VERSION"),
            "@assemblyscript/wasi-shim": pin("AS_WASI_SHIM_VERSION"),
        }
    });
    format!("{package:#}\n")
}

/// `plugin.toml`: what `wharf plugin build` needs to know.
#[derive(Serialize, Deserialize)]
struct Manifest {
    lang: String,
    world: String,
}

/// Creates `dir` (named after the plugin) from a template.
pub fn new(dir: &Path, lang: &str, template: Option<&str>) -> anyhow::Result<()> {
    let lang = match lang {
        "c" => "c",
        "js" | "javascript" => "js",
        "py" | "python" => "python",
        "rs" | "rust" => "rust",
        "as" | "assemblyscript" => "assemblyscript",
        other => bail!("--lang {other:?}: use c, js, python, rust or assemblyscript"),
    };
    let t = match template {
        Some(name) => TEMPLATES
            .iter()
            .find(|t| t.name == name && t.lang == lang)
            .with_context(|| format!("no {lang} template {name:?}; there are: {}", names(lang)))?,
        None => TEMPLATES
            .iter()
            .find(|t| t.lang == lang)
            .context("no template for the language")?,
    };
    if dir.exists() {
        bail!("{} exists already; pick another name", dir.display());
    }
    let name = dir
        .file_name()
        .map_or("plugin".into(), |n| n.to_string_lossy().into_owned());
    std::fs::create_dir_all(dir)?;
    // The examples find their SDK one folder up; a project keeps it beside the source.
    let source = t
        .source
        .replace("../rust-sdk/wharf.rs", "wharf.rs")
        .replace("\"../as-common/config\"", "\"./config\"");
    std::fs::write(dir.join(t.file), source)?;
    if lang == "assemblyscript" {
        // A proxy-wasm module: the ABI is its contract, no WIT.
        std::fs::write(dir.join("config.ts"), AS_CONFIG)?;
        std::fs::write(dir.join("package.json"), as_package_json(&name))?;
    } else {
        std::fs::create_dir_all(dir.join("wit"))?;
        std::fs::write(dir.join("wit/world.wit"), WORLD_WIT)?;
    }
    match lang {
        "c" => std::fs::write(dir.join("wharf.h"), C_SDK)?,
        "rust" => std::fs::write(dir.join("wharf.rs"), RUST_SDK)?,
        _ => {}
    }
    let manifest = Manifest {
        lang: lang.into(),
        world: t.world.into(),
    };
    std::fs::write(
        dir.join("plugin.toml"),
        format!(
            "# Read by `wharf plugin build`. The worlds: what the plugin exports and may import.\n{}",
            toml::to_string(&manifest)?
        ),
    )?;
    let d = dir.display();
    let config = if t.config.is_empty() {
        String::new()
    } else {
        format!(" --config '{}'", t.config)
    };
    let attach = if lang == "assemblyscript" {
        format!(", then attach it with `\"plugin_config\": {}`", t.config)
    } else {
        String::new()
    };
    std::fs::write(
        dir.join("README.md"),
        format!(
            "# {name} ({lang}, from the {} template, world {})\n\nBuild: `wharf plugin build {d}` (writes {d}/plugin.wasm)\n\
             Try: `wharf plugin test {d} --request 'GET /'{config}`; ship: `wharf plugin add --tenant T --name {name} --file {d}/plugin.wasm`{attach}\n",
            t.name, t.world
        ),
    )?;
    println!("created {d}/ from the {} template ({lang}, world {}): edit {d}/{}, then `wharf plugin build {d}`", t.name, t.world, t.file);
    Ok(())
}

/// The language of the project in `dir` (its plugin.toml), if it is one.
pub fn project_lang(dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("plugin.toml")).ok()?;
    toml::from_str::<Manifest>(&text).ok().map(|m| m.lang)
}

fn names(lang: &str) -> String {
    let names: Vec<&str> = TEMPLATES
        .iter()
        .filter(|t| t.lang == lang)
        .map(|t| t.name)
        .collect();
    names.join(", ")
}

/// Builds `dir`/plugin.wasm and checks it as an upload would be.
pub fn build(
    dir: &Path,
    runtime: impl FnOnce() -> anyhow::Result<std::sync::Arc<PluginRuntime>>,
) -> anyhow::Result<PathBuf> {
    let dir = dir
        .canonicalize()
        .with_context(|| format!("{} is not a plugin folder", dir.display()))?;
    let manifest: Manifest = toml::from_str(
        &std::fs::read_to_string(dir.join("plugin.toml")).with_context(|| {
            format!(
                "{}/plugin.toml is missing (made by `wharf plugin new`)",
                dir.display()
            )
        })?,
    )
    .context("plugin.toml")?;
    let out = dir.join("plugin.wasm");
    let bindings = std::env::temp_dir().join(format!("wharf-bindings-{}", std::process::id()));
    for (path, bytes) in BINDINGS {
        let file = bindings.join(path);
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(file, bytes)?;
    }
    let script = format!(
        "set -euo pipefail\n{}\n{}\n{}\nplugin_build \"$1\" \"$2\" \"$2/wit\" \"$3\" \"$4\"\n",
        BUILD_SCRIPT[0], BUILD_SCRIPT[1], BUILD_SCRIPT[2]
    );
    let status = Command::new("bash")
        .arg("-c")
        .arg(script)
        .arg("wharf-plugin-build")
        .arg(&manifest.lang)
        .arg(&dir)
        .arg(&manifest.world)
        .arg(&out)
        .env("WHARF_BINDINGS", &bindings)
        .status();
    let _ = std::fs::remove_dir_all(&bindings);
    let status = status.context("cannot run bash")?;
    if !status.success() {
        bail!("the build failed (its output is above)");
    }
    let bytes = std::fs::read(&out)?;
    let limit = wharf_tenancy::PluginQuotas::default().max_bytes;
    if bytes.len() as u64 > limit {
        bail!(
            "{} is {} bytes, over the default plugin_max_bytes ({limit}): an upload would be refused",
            out.display(),
            bytes.len()
        );
    }
    // A proxy-wasm module is checked as an upload checks it: a core module declaring an ABI
    // version, importing only what the host serves.
    let abi = match wharf_plugins::proxy_wasm::inspect(&bytes) {
        Ok(Some(m)) => Some(m.abi),
        Ok(None) if manifest.lang == "assemblyscript" => bail!(
            "an upload would be refused (422): {} exports no proxy_abi_version_* (is registerRootContext and `export * from \"@gcoredev/proxy-wasm-sdk-as/assembly/proxy\"` in index.ts?)",
            out.display()
        ),
        Ok(None) => None,
        Err(e) => bail!("an upload would be refused (422): {e}"),
    };
    match runtime()?.validate(&bytes) {
        Ok(c) if abi.is_some() => {
            let phases = if c.exports.has_response_phase() {
                "request and response headers"
            } else {
                "request headers only"
            };
            println!(
                "ready: {} ({} bytes, proxy-wasm ABI {}: {phases})",
                out.display(),
                bytes.len(),
                abi.unwrap_or_default(),
            );
            Ok(out)
        }
        Ok(c) => {
            let phases = if c.exports.has_response_phase() {
                "request and response phases"
            } else {
                "request phase only"
            };
            println!(
                "ready: {} ({} bytes, world {}: {phases}{})",
                out.display(),
                bytes.len(),
                manifest.world,
                if c.reads_body { ", reads the body" } else { "" }
            );
            Ok(out)
        }
        Err(e) => bail!("an upload would be refused (422): {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    /// plugins/bindings/ is what scripts/gen-bindings makes of this WIT with the pinned
    /// generators, for every world a plugin may use: else run scripts/gen-bindings.
    #[test]
    fn carried_bindings_are_generated_from_this_wit_by_the_pinned_generators() {
        let stamp = std::str::from_utf8(BINDINGS[0].1).unwrap();
        let sha = hex::encode(Sha256::digest(WORLD_WIT.as_bytes()));
        let pin = |name: &str| {
            let line = BUILD_SCRIPT[1]
                .lines()
                .find(|l| l.starts_with(&format!("{name}=")))
                .unwrap_or_else(|| panic!("{name} in toolchain.sh"));
            line.split_once('=').unwrap().1.to_string()
        };
        let want = format!(
            "c {sha} {}\nrust {sha} {}\n",
            pin("WIT_BINDGEN_VERSION"),
            pin("WIT_BINDGEN_RUST_VERSION")
        );
        assert_eq!(
            stamp, want,
            "plugins/bindings/ is stale: run scripts/gen-bindings"
        );
        let worlds: Vec<String> = WORLD_WIT
            .lines()
            .filter_map(|l| l.strip_prefix("world "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| *w != "gateway")
            .map(|w| w.replace('-', "_"))
            .collect();
        let carried: Vec<&str> = BINDINGS
            .iter()
            .filter_map(|(p, _)| p.strip_prefix("rust/")?.strip_suffix(".rs"))
            .collect();
        assert_eq!(carried, worlds, "BINDINGS lists every plugin world");
    }
}
