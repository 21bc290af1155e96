//! Regenerates `h323-asn1/src/generated/{h225,h235,h245}.rs` from the ITU-T ASN.1 modules with
//! rasn-compiler. Never run by the build: run it by hand (see `h323-asn1/README.md`) and commit
//! the output.
//!
//! Steps: (1) read the modules, converting `h245.asn` from Latin-1 to UTF-8; (2) rename the type
//! names that more than one module defines (rasn-compiler resolves references by name across all
//! modules, so duplicates would silently alias each other); (3) write the renamed copies to
//! `target/preprocessed/` and compile them together; (4) split the output into one file per
//! module, apply the few textual fixes listed in `POSTPROCESS`, and write each with its header.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use rasn_compiler::prelude::*;

/// One input module: file name, whether it is Latin-1, our Rust module name and its header line.
struct Module {
    file: &'static str,
    latin1: bool,
    asn1_name: &'static str,
    rust_name: &'static str,
    title: &'static str,
}

const MODULES: &[Module] = &[
    Module {
        file: "h225.asn",
        latin1: false,
        asn1_name: "H323-MESSAGES",
        rust_name: "h225",
        title: "ITU-T H.225.0 version 8 (H323-MESSAGES), Packetizer file of 2022-09-24",
    },
    Module {
        file: "h235.asn",
        latin1: false,
        asn1_name: "H235-SECURITY-MESSAGES",
        rust_name: "h235",
        title: "ITU-T H.235 (H235-SECURITY-MESSAGES), as imported by H.225.0 version 8",
    },
    Module {
        file: "h245.asn",
        latin1: true,
        asn1_name: "MULTIMEDIA-SYSTEM-CONTROL",
        rust_name: "h245",
        title: "ITU-T H.245 version 17 (MULTIMEDIA-SYSTEM-CONTROL), Packetizer file of 2022-09-24/27",
    },
];

/// Type names defined in more than one module, renamed in the module given. H.225.0 keeps its
/// own names; H.235 keeps the ones H.225.0 imports from it (`Password`) and those only it and
/// H.245 share (`IV8`, `IV16`, `Params`), so H.245 renames all of its duplicates.
const RENAMES: &[(&str, &str, &str)] = &[
    ("h235.asn", "NonStandardParameter", "H235NonStandardParameter"),
    ("h245.asn", "NonStandardParameter", "H245NonStandardParameter"),
    ("h245.asn", "NonStandardIdentifier", "H245NonStandardIdentifier"),
    ("h245.asn", "NonStandardMessage", "H245NonStandardMessage"),
    ("h245.asn", "TransportAddress", "H245TransportAddress"),
    ("h245.asn", "Password", "H245Password"),
    ("h245.asn", "IV8", "H245IV8"),
    ("h245.asn", "IV16", "H245IV16"),
    ("h245.asn", "Params", "H245Params"),
];

/// Textual fixes applied to the generated Rust, per module: (module, from, to, why).
/// Every entry must match at least once, so a fixed upstream bug shows up as an error here.
const POSTPROCESS: &[(&str, &str, &str, &str)] = &[];

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let asn1_dir = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => find_asn1_dir(&manifest_dir)?,
    };
    let out_dir = manifest_dir.join("../src/generated");
    let pre_dir = manifest_dir.join("target/preprocessed");
    fs::create_dir_all(&pre_dir).map_err(|e| format!("{}: {e}", pre_dir.display()))?;
    eprintln!("reading ASN.1 modules from {}", asn1_dir.display());

    let mut paths = Vec::new();
    for module in MODULES {
        let path = asn1_dir.join(module.file);
        let bytes = fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut text = if module.latin1 {
            bytes.iter().map(|&b| char::from(b)).collect::<String>()
        } else {
            String::from_utf8(bytes).map_err(|e| format!("{}: {e}", path.display()))?
        };
        for (file, from, to) in RENAMES.iter().filter(|r| r.0 == module.file) {
            let (renamed, count) = rename_type(&text, from, to);
            if count == 0 {
                return Err(format!("{file}: rename {from} -> {to} matched nothing"));
            }
            eprintln!("{file}: {from} -> {to} ({count} occurrences)");
            text = renamed;
        }
        let pre = pre_dir.join(module.file);
        fs::write(&pre, text).map_err(|e| format!("{}: {e}", pre.display()))?;
        paths.push(pre);
    }

    // `generate_from_impls` stays off: 0.16.0 emits wrong `From` impls for SET OF alternatives.
    let result = Compiler::<H323Backend, _>::new_with_config(RasnConfig::default())
        .add_asn_sources_by_path(paths.iter())
        .compile_to_string()
        .map_err(|e| format!("rasn-compiler: {e}"))?;
    for w in &result.warnings {
        eprintln!("rasn-compiler warning: {w}");
    }
    fs::write(pre_dir.join("all.rs"), &result.generated).map_err(|e| e.to_string())?;

    let modules = split_modules(&result.generated)?;
    for module in MODULES {
        let key = snake(module.asn1_name);
        let body = modules
            .get(&key)
            .ok_or_else(|| format!("rasn-compiler emitted no module {key}"))?;
        let mut body = body.clone();
        for other in MODULES {
            body = body.replace(
                &format!("super::{}::", snake(other.asn1_name)),
                &format!("super::{}::", other.rust_name),
            );
        }
        for (m, from, to, why) in POSTPROCESS.iter().filter(|p| p.0 == module.rust_name) {
            if !body.contains(from) {
                return Err(format!("postprocess ({why}) no longer matches in {m}"));
            }
            body = body.replace(from, to);
        }
        let out = out_dir.join(format!("{}.rs", module.rust_name));
        fs::write(&out, header(module) + &body).map_err(|e| format!("{}: {e}", out.display()))?;
        // Format as `cargo fmt` would, so that a regeneration diffs cleanly.
        let status = std::process::Command::new("rustfmt")
            .args(["--edition", "2021"])
            .arg(&out)
            .status()
            .map_err(|e| format!("rustfmt: {e}"))?;
        if !status.success() {
            return Err(format!("rustfmt failed on {}", out.display()));
        }
        eprintln!("wrote {}", out.display());
    }
    Ok(())
}

/// The rasn backend, with two rewrites of the IR before each module is generated (both work
/// around how rasn 0.30 treats constraints, see the README):
///
/// 1. Mandatory extension additions of SEQUENCEs become OPTIONAL. X.691 lets a value from an
///    earlier version omit every extension addition (H.225.0 v1 endpoints send no
///    `h245Tunneling`, for one); rasn rejects a missing mandatory addition and could not re-encode
///    its absence. The PER encoding of a present addition is the same either way (each is its own
///    open type; H.225.0 and H.245 use no `[[ ]]` groups, where OPTIONAL would add a bit).
/// 2. A component whose type is a reference to a constrained INTEGER, string, OCTET STRING or
///    BIT STRING type gets that type inlined (e.g. `TimeToLive` becomes `u32` with
///    `value("1..=4294967295")`) when it is OPTIONAL, an extension addition, or adds constraints
///    of its own. In those three cases rasn's derive codes the component with only the
///    component's own constraints and drops the referenced type's (`Option<T>` has no
///    constraints; a CHOICE alternative's constraints are not intersected with its type's), so
///    `TBCD-STRING (SIZE (3..16)) OPTIONAL` lost its permitted alphabet and an extension-addition
///    `TimeToLive` decoded as an unconstrained INTEGER.
#[derive(Default)]
struct H323Backend {
    rasn: RasnBackend,
    /// Constrained simple types by name, resolved to their built-in type, from every module seen.
    simple_types: BTreeMap<String, ir::ASN1Type>,
}

impl Backend for H323Backend {
    type Config = RasnConfig;
    const FILE_EXTENSION: &'static str = ".rs";

    fn generate_module(
        &mut self,
        mut tlds: Vec<ToplevelDefinition>,
    ) -> Result<GeneratedModule, GeneratorError> {
        let defs: BTreeMap<String, ir::ASN1Type> = tlds
            .iter()
            .filter_map(|tld| match tld {
                ToplevelDefinition::Type(t) => Some((t.name.clone(), t.ty.clone())),
                _ => None,
            })
            .collect();
        for name in defs.keys() {
            if let Some(ty) = resolve_simple(name, &defs, &self.simple_types, 0) {
                self.simple_types.insert(name.clone(), ty);
            }
        }
        for tld in &mut tlds {
            if let ToplevelDefinition::Type(t) = tld {
                rewrite(&mut t.ty, &self.simple_types);
            }
        }
        self.rasn.generate_module(tlds)
    }

    fn generate(&self, mut tld: ToplevelDefinition) -> Result<String, GeneratorError> {
        if let ToplevelDefinition::Type(t) = &mut tld {
            rewrite(&mut t.ty, &self.simple_types);
        }
        self.rasn.generate(tld)
    }

    fn format_bindings(bindings: &str) -> Result<String, CompilerError> {
        RasnBackend::format_bindings(bindings)
    }

    fn config(&self) -> &Self::Config {
        self.rasn.config()
    }

    fn from_config(config: Self::Config) -> Self {
        Self {
            rasn: RasnBackend::from_config(config),
            simple_types: BTreeMap::new(),
        }
    }

    fn new(
        config: Self::Config,
        tagging_environment: TaggingEnvironment,
        extensibility_environment: ExtensibilityEnvironment,
    ) -> Self {
        Self {
            rasn: RasnBackend::new(config, tagging_environment, extensibility_environment),
            simple_types: BTreeMap::new(),
        }
    }
}

/// The built-in type behind `name` with all constraints along the way, if it is a constrained
/// INTEGER, character string, OCTET STRING or BIT STRING.
fn resolve_simple(
    name: &str,
    defs: &BTreeMap<String, ir::ASN1Type>,
    known: &BTreeMap<String, ir::ASN1Type>,
    depth: usize,
) -> Option<ir::ASN1Type> {
    use ir::ASN1Type;
    if let Some(ty) = known.get(name) {
        return Some(ty.clone());
    }
    if depth > 8 {
        return None;
    }
    match defs.get(name)? {
        ty @ (ASN1Type::Integer(_)
        | ASN1Type::CharacterString(_)
        | ASN1Type::OctetString(_)
        | ASN1Type::BitString(_)) => {
            Some(ty.clone()).filter(|t| t.constraints().is_some_and(|c| !c.is_empty()))
        }
        ASN1Type::ElsewhereDeclaredType(d) => {
            let mut ty = resolve_simple(&d.identifier, defs, known, depth + 1)?;
            ty.constraints_mut()?.extend(d.constraints.iter().cloned());
            Some(ty)
        }
        _ => None,
    }
}

/// `ty` with the referenced type inlined, if it is a reference to a constrained simple type.
fn inlined(ty: &ir::ASN1Type, simple_types: &BTreeMap<String, ir::ASN1Type>) -> Option<ir::ASN1Type> {
    let ir::ASN1Type::ElsewhereDeclaredType(d) = ty else {
        return None;
    };
    let mut inner = simple_types.get(&d.identifier)?.clone();
    inner.constraints_mut()?.extend(d.constraints.iter().cloned());
    Some(inner)
}

fn rewrite(ty: &mut ir::ASN1Type, simple_types: &BTreeMap<String, ir::ASN1Type>) {
    use ir::{ASN1Type, Optionality};
    match ty {
        ASN1Type::Sequence(seq) | ASN1Type::Set(seq) => {
            let first_addition = seq.extensible.unwrap_or(usize::MAX);
            for (i, member) in seq.members.iter_mut().enumerate() {
                let addition = i >= first_addition;
                if addition && matches!(member.optionality, Optionality::Required) {
                    member.optionality = Optionality::Optional;
                }
                let own_constraints = !member.constraints.is_empty()
                    || member.ty.constraints().is_some_and(|c| !c.is_empty());
                if addition || (own_constraints && member.optionality != Optionality::Required) {
                    if let Some(inner) = inlined(&member.ty, simple_types) {
                        member.ty = inner;
                    }
                }
                rewrite(&mut member.ty, simple_types);
            }
        }
        ASN1Type::Choice(choice) => {
            for option in &mut choice.options {
                let own_constraints = !option.constraints.is_empty()
                    || option.ty.constraints().is_some_and(|c| !c.is_empty());
                if own_constraints {
                    if let Some(inner) = inlined(&option.ty, simple_types) {
                        option.ty = inner;
                    }
                }
                rewrite(&mut option.ty, simple_types);
            }
        }
        ASN1Type::SequenceOf(of) | ASN1Type::SetOf(of) => rewrite(&mut of.element_type, simple_types),
        _ => {}
    }
}

fn header(module: &Module) -> String {
    format!(
        "//! {title}: the ASN.1 types, for aligned PER with `rasn`.\n\
         //!\n\
         //! Generated by rasn-compiler 0.16.0 from `{file}` (H323Plus copy of the ITU-T module, see\n\
         //! `shared/reference/asn1/SOURCE.txt`), with duplicate type names renamed per module.\n\
         //! Do not edit: regenerate with `cargo run --release --manifest-path h323-asn1/generate/Cargo.toml`\n\
         //! (see `h323-asn1/README.md`).\n\n\
         #![allow(\n\
         \x20   non_camel_case_types,\n\
         \x20   non_snake_case,\n\
         \x20   non_upper_case_globals,\n\
         \x20   unused,\n\
         \x20   missing_docs,\n\
         \x20   clippy::all,\n\
         \x20   clippy::pedantic,\n\
         \x20   clippy::unwrap_used,\n\
         \x20   clippy::expect_used,\n\
         \x20   clippy::indexing_slicing,\n\
         \x20   clippy::panic\n\
         )]\n\n",
        title = module.title,
        file = module.file,
    )
}

/// rasn-compiler's module name for an ASN.1 module reference.
fn snake(asn1_name: &str) -> String {
    asn1_name.to_lowercase().replace('-', "_")
}

/// Replaces the type reference `from` by `to` where it stands as a whole ASN.1 name (ASN.1 names
/// may contain `-`, so that counts as part of a name).
fn rename_type(text: &str, from: &str, to: &str) -> (String, usize) {
    let is_name = |c: char| c.is_ascii_alphanumeric() || c == '-';
    let mut out = String::with_capacity(text.len());
    let mut count = 0;
    let mut rest = text;
    let mut prev: Option<char> = None;
    while let Some(pos) = rest.find(from) {
        let (before, at) = rest.split_at(pos);
        let before_char = before.chars().next_back().or(prev);
        let after_char = at[from.len()..].chars().next();
        out.push_str(before);
        if before_char.is_some_and(is_name) || after_char.is_some_and(is_name) {
            out.push_str(from);
        } else {
            out.push_str(to);
            count += 1;
        }
        prev = from.chars().next_back();
        rest = &at[from.len()..];
    }
    out.push_str(rest);
    (out, count)
}

/// Splits rasn-compiler's output into `name -> body` for each top-level `pub mod name { body }`.
fn split_modules(generated: &str) -> Result<BTreeMap<String, String>, String> {
    let mut modules = BTreeMap::new();
    let mut rest = generated;
    while let Some(start) = rest.find("pub mod ") {
        let after = &rest[start + "pub mod ".len()..];
        let name_end = after
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .ok_or("unterminated module name")?;
        let name = &after[..name_end];
        let open = after.find('{').ok_or("module without body")?;
        let mut depth = 0usize;
        let mut close = None;
        for (i, c) in after[open..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        close = Some(open + i);
                        break;
                    }
                }
                _ => {}
            }
        }
        let close = close.ok_or_else(|| format!("module {name} is not closed"))?;
        let body = dedent(after[open + 1..close].trim_matches('\n'));
        modules.insert(name.to_string(), body + "\n");
        rest = &after[close + 1..];
    }
    Ok(modules)
}

/// Removes one level (4 spaces) of indentation.
fn dedent(text: &str) -> String {
    text.lines()
        .map(|l| l.strip_prefix("    ").unwrap_or(l))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Looks for `shared/reference/asn1` next to the repository or one of its ancestors.
fn find_asn1_dir(start: &Path) -> Result<PathBuf, String> {
    start
        .ancestors()
        .map(|dir| dir.join("shared/reference/asn1"))
        .find(|dir| dir.join("h225.asn").is_file())
        .ok_or_else(|| {
            "shared/reference/asn1 not found above the repository; pass the directory as argument"
                .to_string()
        })
}
