//! What `modinfo` shows: a module's `.modinfo` strings and its appended signature, from a
//! plain or compressed `.ko` or, for a built-in module, from `modules.builtin.modinfo`.
//!
//! [`ModuleInfo::fields`] lists them in libkmod's order (the section's order, then `sig_id`,
//! `signer`, `sig_key`, `sig_hashalgo`, `signature`); [`render`] prints them as kmod's `modinfo`
//! does, `parm`/`parmtype` pairs gathered last. The diagnostics read the same data (vermagic,
//! parameter types, signer).

pub mod elf;
pub mod signature;

use crate::loader::compression::{self, Compression};
use signature::Signature;
use std::io::Write;
use std::path::Path;

/// One `key=value` string. `value` is `None` for a string without `=` (kmod prints "(null)").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub key: Vec<u8>,
    pub value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Default)]
pub struct ModuleInfo {
    pub fields: Vec<Field>,
    pub signature: Option<Signature>,
}

fn split_field(s: &[u8]) -> Field {
    match s.iter().position(|&b| b == b'=') {
        Some(i) => Field {
            key: s[..i].to_vec(),
            value: Some(s[i + 1..].to_vec()),
        },
        None => Field {
            key: s.to_vec(),
            value: None,
        },
    }
}

/// Reads a module file, decompressing it by its magic bytes.
pub fn read_module_file(path: &Path) -> Result<Vec<u8>, String> {
    let data = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    match Compression::detect(&data) {
        Compression::None => Ok(data),
        c => compression::decompress(c, &data).map_err(|e| format!("{}: {e}", path.display())),
    }
}

impl ModuleInfo {
    /// From a module image (decompressed).
    pub fn from_image(image: &[u8]) -> Result<ModuleInfo, String> {
        let elf = elf::Elf::parse(image)?;
        let fields = elf
            .section(".modinfo")
            .map(|s| elf::strings(s).map(split_field).collect())
            .unwrap_or_default();
        Ok(ModuleInfo {
            fields,
            signature: signature::appended(image),
        })
    }

    pub fn from_file(path: &Path) -> Result<ModuleInfo, String> {
        let image = read_module_file(path)?;
        ModuleInfo::from_image(&image).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// A built-in module's strings from `modules.builtin.modinfo` (`NAME.key=value`), `None`
    /// when the file is absent (an old kernel).
    pub fn builtin(module_dir: &Path, name: &str) -> Option<ModuleInfo> {
        let data = std::fs::read(module_dir.join("modules.builtin.modinfo")).ok()?;
        Some(ModuleInfo::from_builtin_modinfo(&data, name))
    }

    /// `name`'s strings in the contents of `modules.builtin.modinfo`: its first run of
    /// consecutive strings only, as libkmod reads them. A name can have several runs when two
    /// objects built into the kernel share a module name (arm64's `arm_cci` is both the CCI bus
    /// driver and its PMU driver); `modinfo` shows the first.
    pub fn from_builtin_modinfo(data: &[u8], name: &str) -> ModuleInfo {
        let prefix = format!("{name}.");
        let fields = elf::strings(data)
            .skip_while(|s| !s.starts_with(prefix.as_bytes()))
            .map_while(|s| s.strip_prefix(prefix.as_bytes()))
            .map(split_field)
            .collect();
        ModuleInfo {
            fields,
            signature: None,
        }
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|f| f.key == key.as_bytes())
            .and_then(|f| f.value.as_deref())
    }

    /// Every field as libkmod lists it, the signature's included.
    pub fn all_fields(&self) -> Vec<Field> {
        let mut all = self.fields.clone();
        if let Some(s) = &self.signature {
            let field = |key: &str, value: Option<Vec<u8>>| Field {
                key: key.as_bytes().to_vec(),
                value,
            };
            all.push(field("sig_id", Some(s.id_type.as_bytes().to_vec())));
            all.push(field("signer", Some(s.signer.clone())));
            all.push(field("sig_key", hex(&s.key_id)));
            all.push(field("sig_hashalgo", Some(s.hash_algo.as_bytes().to_vec())));
            all.push(field("signature", hex(&s.signature)));
        }
        all
    }

    /// Parameters as modinfo gathers them: name, description (`parm`) and type (`parmtype`),
    /// in its order: reverse order of each name's first appearance.
    pub fn params(&self) -> Vec<Param> {
        let mut params: Vec<Param> = Vec::new();
        for f in &self.fields {
            let is_type = match f.key.as_slice() {
                b"parm" => false,
                b"parmtype" => true,
                _ => continue,
            };
            let Some(value) = &f.value else { continue };
            let Some(colon) = value.iter().position(|&b| b == b':') else {
                continue; // kmod reports "missing ':'" and skips it
            };
            let (name, rest) = (&value[..colon], &value[colon + 1..]);
            let i = match params.iter().position(|p| p.name == name) {
                Some(i) => i,
                None => {
                    params.push(Param {
                        name: name.to_vec(),
                        description: None,
                        kind: None,
                    });
                    params.len() - 1
                }
            };
            if is_type {
                params[i].kind = Some(rest.to_vec());
            } else {
                params[i].description = Some(rest.to_vec());
            }
        }
        params.reverse();
        params
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    pub name: Vec<u8>,
    pub description: Option<Vec<u8>>,
    /// As declared: `int`, `uint`, `charp`, `array of int`, ...
    pub kind: Option<Vec<u8>>,
}

/// libkmod's `kmod_module_hex_to_str`: `XX:XX:...`, a line break and two tabs after every
/// 20 bytes. Nothing (`None`, printed "(null)") for no bytes.
pub fn hex(bytes: &[u8]) -> Option<Vec<u8>> {
    if bytes.is_empty() {
        return None;
    }
    let mut s = String::with_capacity(bytes.len() * 3 + bytes.len() / 20 * 3);
    for (i, b) in bytes.iter().enumerate() {
        s.push_str(&format!("{b:02X}"));
        if i + 1 < bytes.len() {
            s.push(':');
            if (i + 1) % 20 == 0 {
                s.push_str("\n\t\t");
            }
        }
    }
    Some(s.into_bytes())
}

/// How one module is printed: its file (or built in) and what was read from it.
pub struct Shown<'a> {
    /// `None` for a built-in module.
    pub filename: Option<&'a [u8]>,
    pub name: &'a str,
    /// `None` when a built-in module's information is unavailable.
    pub info: Option<&'a ModuleInfo>,
}

/// Prints `shown` as kmod's `modinfo` does; with `field`, only that field's values (`-F`).
/// `separator` ends each line (`\n`, or NUL for `-0`, which also prints `key=value`).
pub fn render(
    out: &mut impl Write,
    shown: &Shown,
    field: Option<&str>,
    separator: u8,
) -> std::io::Result<()> {
    let null = b"(null)".as_slice();
    let sep = [separator];
    let filename = match shown.filename {
        Some(f) => f,
        None => {
            // kmod prints a built-in module's name itself, for `-F name` too: no file to
            // read it from.
            match field {
                None => {
                    write!(out, "{:<16}{}", "name:", shown.name)?;
                    out.write_all(&sep)?;
                }
                Some("name") => {
                    out.write_all(shown.name.as_bytes())?;
                    out.write_all(&sep)?;
                }
                Some(_) => {}
            }
            b"(builtin)".as_slice()
        }
    };
    match field {
        Some("filename") => {
            out.write_all(filename)?;
            return out.write_all(&sep);
        }
        None => {
            write!(out, "{:<16}", "filename:")?;
            out.write_all(filename)?;
            out.write_all(&sep)?;
        }
        Some(_) => {}
    }
    let Some(info) = shown.info else {
        return Ok(());
    };
    let labelled = field.is_none();
    if field == Some("parm") {
        // kmod gathers parm and parmtype for -F parm too, and prints them without the label.
        return render_params(out, info, labelled, &sep);
    }
    for f in info.all_fields() {
        let value = f.value.as_deref().unwrap_or(null);
        if let Some(field) = field {
            if f.key == field.as_bytes() {
                out.write_all(value)?;
                out.write_all(&sep)?;
            }
            continue;
        }
        if f.key == b"parm" || f.key == b"parmtype" {
            continue;
        }
        out.write_all(&f.key)?;
        if separator == 0 {
            out.write_all(b"=")?;
        } else {
            // printf("%s:%-*s", key, 15 - keylen, ""): a negative width pads too.
            out.write_all(b":")?;
            let pad = (15 - f.key.len() as i64).unsigned_abs() as usize;
            out.write_all(&b" ".repeat(pad))?;
        }
        out.write_all(value)?;
        out.write_all(&sep)?;
    }
    if field.is_some() {
        return Ok(());
    }
    render_params(out, info, labelled, &sep)
}

fn render_params(
    out: &mut impl Write,
    info: &ModuleInfo,
    labelled: bool,
    sep: &[u8],
) -> std::io::Result<()> {
    for p in info.params() {
        if labelled {
            write!(out, "{:<16}", "parm:")?;
        }
        out.write_all(&p.name)?;
        out.write_all(b":")?;
        match (&p.description, &p.kind) {
            (Some(d), Some(k)) => {
                out.write_all(d)?;
                out.write_all(b" (")?;
                out.write_all(k)?;
                out.write_all(b")")?;
            }
            (Some(d), None) => out.write_all(d)?,
            // kmod's two printers differ here: the listing shows `name:type`, `-F parm`
            // shows `name: (type)`.
            (None, Some(k)) if labelled => out.write_all(k)?,
            (None, Some(k)) => {
                out.write_all(b" (")?;
                out.write_all(k)?;
                out.write_all(b")")?;
            }
            (None, None) => {}
        }
        out.write_all(sep)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_breaks_lines_after_twenty_bytes() {
        assert_eq!(hex(&[]), None);
        assert_eq!(hex(&[0xab, 1]).unwrap(), b"AB:01");
        let s = String::from_utf8(hex(&[0; 21]).unwrap()).unwrap();
        assert_eq!(s, format!("{}\n\t\t00", "00:".repeat(20)));
    }

    #[test]
    fn a_builtin_module_is_its_first_run_of_strings() {
        let data = b"a.license=GPL\0m.description=bus\0m.file=drivers/bus/m\0\
                     b.license=GPL\0m.description=pmu\0m.file=drivers/perf/m\0";
        let info = ModuleInfo::from_builtin_modinfo(data, "m");
        let values: Vec<_> = info
            .fields
            .iter()
            .map(|f| f.value.clone().unwrap())
            .collect();
        assert_eq!(values, [&b"bus"[..], b"drivers/bus/m"]);
        assert!(
            ModuleInfo::from_builtin_modinfo(data, "n")
                .fields
                .is_empty()
        );
        // A name that only prefixes another module's name is not that module.
        assert!(
            ModuleInfo::from_builtin_modinfo(b"mm.file=x\0", "m")
                .fields
                .is_empty()
        );
    }

    #[test]
    fn params_pair_up_in_modinfos_order() {
        let info = ModuleInfo {
            fields: [
                "parmtype=a:int",
                "parm=a:first",
                "parm=b:second",
                "parmtype=c:bool",
            ]
            .iter()
            .map(|s| split_field(s.as_bytes()))
            .collect(),
            signature: None,
        };
        let mut out = Vec::new();
        let shown = Shown {
            filename: Some(b"/m.ko"),
            name: "m",
            info: Some(&info),
        };
        render(&mut out, &shown, None, b'\n').unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "filename:       /m.ko\nparm:           c:bool\nparm:           b:second\nparm:           a:first (int)\n"
        );
    }
}
