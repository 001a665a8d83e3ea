//! The reference: Debian's libkmod, called the way modprobe and udev call it.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;

#[link(name = "kmod")]
unsafe extern "C" {
    fn kmod_new(dirname: *const c_char, config_paths: *const *const c_char) -> *mut c_void;
    fn kmod_unref(ctx: *mut c_void) -> *mut c_void;
    fn kmod_load_resources(ctx: *mut c_void) -> c_int;
    fn kmod_set_log_priority(ctx: *mut c_void, priority: c_int);
    fn kmod_module_new_from_lookup(
        ctx: *mut c_void,
        alias: *const c_char,
        list: *mut *mut c_void,
    ) -> c_int;
    fn kmod_list_next(list: *const c_void, curr: *const c_void) -> *mut c_void;
    fn kmod_module_get_module(entry: *const c_void) -> *mut c_void;
    fn kmod_module_get_name(module: *const c_void) -> *const c_char;
    fn kmod_module_unref(module: *mut c_void) -> *mut c_void;
    fn kmod_module_unref_list(list: *mut c_void) -> c_int;
}

/// A libkmod context on one module directory with an empty modprobe.d, so that only the module
/// directory's own tables answer (what `modaliasd resolve` implements).
pub struct Libkmod {
    ctx: *mut c_void,
    _empty_config: super::TempDir,
}

impl Libkmod {
    /// With its indexes loaded up front (`kmod_load_resources`, as udev does).
    pub fn new(module_dir: &Path) -> Libkmod {
        Libkmod::open(module_dir, true)
    }

    /// Without `kmod_load_resources`, as modprobe: each lookup opens the indexes it reads.
    /// libkmod then takes an index it cannot read for an empty one, where loading them all up
    /// front fails.
    pub fn without_resources(module_dir: &Path) -> Libkmod {
        Libkmod::open(module_dir, false)
    }

    fn open(module_dir: &Path, load_resources: bool) -> Libkmod {
        let config = super::TempDir::new("libkmod-config");
        let dir = CString::new(module_dir.as_os_str().as_encoded_bytes()).unwrap();
        let cfg = CString::new(config.path().as_os_str().as_encoded_bytes()).unwrap();
        let paths = [cfg.as_ptr(), std::ptr::null()];
        // SAFETY: valid strings and a NULL-terminated array that outlive the call.
        let ctx = unsafe { kmod_new(dir.as_ptr(), paths.as_ptr()) };
        assert!(
            !ctx.is_null(),
            "kmod_new failed for {}",
            module_dir.display()
        );
        unsafe {
            kmod_set_log_priority(ctx, 0);
            if load_resources {
                assert_eq!(kmod_load_resources(ctx), 0, "kmod_load_resources failed");
            }
        }
        Libkmod {
            ctx,
            _empty_config: config,
        }
    }

    /// `kmod_module_new_from_lookup`: the module names in libkmod's order, duplicates kept, or
    /// the negative errno it returned.
    pub fn lookup(&self, key: &[u8]) -> Result<Vec<String>, i32> {
        let key = CString::new(key).map_err(|_| -22)?;
        let mut list: *mut c_void = std::ptr::null_mut();
        // SAFETY: ctx is live; list starts empty as libkmod requires.
        let err = unsafe { kmod_module_new_from_lookup(self.ctx, key.as_ptr(), &mut list) };
        if err < 0 {
            return Err(err);
        }
        let mut names = Vec::new();
        let mut it = list;
        while !it.is_null() {
            unsafe {
                let module = kmod_module_get_module(it);
                names.push(
                    CStr::from_ptr(kmod_module_get_name(module))
                        .to_string_lossy()
                        .into_owned(),
                );
                kmod_module_unref(module);
                it = kmod_list_next(list, it);
            }
        }
        unsafe { kmod_module_unref_list(list) };
        Ok(names)
    }

    /// Only the time of the lookup itself, for benchmarks: the list is freed, names not copied.
    pub fn lookup_count(&self, key: &CStr) -> usize {
        let mut list: *mut c_void = std::ptr::null_mut();
        let mut n = 0;
        unsafe {
            kmod_module_new_from_lookup(self.ctx, key.as_ptr(), &mut list);
            let mut it = list;
            while !it.is_null() {
                n += 1;
                it = kmod_list_next(list, it);
            }
            kmod_module_unref_list(list);
        }
        n
    }
}

impl Drop for Libkmod {
    fn drop(&mut self) {
        unsafe { kmod_unref(self.ctx) };
    }
}

/// libkmod's list with each module's first occurrence kept: what `resolve` prints.
pub fn distinct(names: Vec<String>) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    names
        .into_iter()
        .filter(|n| seen.insert(n.clone()))
        .collect()
}
