//! Who may call the API's admin methods (`Submit`, `MarkBenign`, `Retrain`). The bus policy
//! (`config/dbus/org.anomalyd.Detector1.conf`) is the first layer; this is the second, so a
//! permissive or mistaken policy does not open them: root, the daemon's own user, and members of
//! [`ADMIN_GROUP`] (by the user database, as dbus-daemon's `group=` rules are) are admitted.

use std::ffi::{CStr, CString};

/// Members may call the admin methods.
pub const ADMIN_GROUP: &str = "anomalyd-admin";

/// Why a caller is admitted, for the log and the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Root,
    ServiceUser,
    AdminGroup,
}

/// Whether `uid` may call the admin methods; `None` when it may not.
pub fn admit(uid: u32) -> Option<Admission> {
    if uid == 0 {
        return Some(Admission::Root);
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if uid == unsafe { libc::geteuid() } {
        return Some(Admission::ServiceUser);
    }
    let admin_gid = group_id(ADMIN_GROUP)?;
    groups_of(uid)
        .contains(&admin_gid)
        .then_some(Admission::AdminGroup)
}

/// The gid of group `name`, or `None` when there is no such group.
fn group_id(name: &str) -> Option<u32> {
    let name = CString::new(name).ok()?;
    // SAFETY: `libc::group` is a plain C struct of pointers and integers, for which all-zero
    // bytes are a valid value; getgrnam_r overwrites it.
    let mut group: libc::group = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::group = std::ptr::null_mut();
    // A group's entry holds its member list, which outgrows any fixed buffer on large sites:
    // on ERANGE the buffer doubles, up to MAX_ENTRY_BUFFER.
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    loop {
        // SAFETY: every pointer is valid for the call: `name` is a NUL-terminated string,
        // `group` and `found` are locals, `buffer` is writable for its stated length; the
        // strings the entry points into live in `buffer`, which outlives the only read
        // (`gr_gid`, a plain integer).
        let status = unsafe {
            libc::getgrnam_r(
                name.as_ptr(),
                &mut group,
                buffer.as_mut_ptr(),
                buffer.len(),
                &mut found,
            )
        };
        if status == libc::ERANGE && buffer.len() < MAX_ENTRY_BUFFER {
            buffer = vec![0 as libc::c_char; buffer.len() * 2];
            continue;
        }
        return (status == 0 && !found.is_null()).then_some(group.gr_gid);
    }
}

/// The largest buffer a user or group entry is read into (16 MiB: a group of about a million
/// members).
const MAX_ENTRY_BUFFER: usize = 16 * 1024 * 1024;

/// The primary and supplementary gids of `uid` in the user database (empty when unknown).
fn groups_of(uid: u32) -> Vec<u32> {
    // SAFETY: `libc::passwd` is a plain C struct for which all-zero bytes are valid; getpwuid_r
    // overwrites it.
    let mut user: libc::passwd = unsafe { std::mem::zeroed() };
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let mut buffer = vec![0 as libc::c_char; 16 * 1024];
    // SAFETY: `user`, `found` and `buffer` are valid for writes of their sizes; `pw_name` and
    // `pw_gid` are read below only while `buffer`, which holds the strings, is alive.
    let status = unsafe {
        libc::getpwuid_r(
            uid,
            &mut user,
            buffer.as_mut_ptr(),
            buffer.len(),
            &mut found,
        )
    };
    if status != 0 || found.is_null() {
        return Vec::new();
    }
    // SAFETY: on success `pw_name` points to a NUL-terminated string inside `buffer`.
    let name = unsafe { CStr::from_ptr(user.pw_name) }.to_owned();
    let mut groups = vec![0 as libc::gid_t; 64];
    loop {
        let mut count = groups.len() as libc::c_int;
        // SAFETY: `name` is NUL-terminated; `groups` is writable for `count` entries, and
        // getgrouplist writes at most that many, setting `count` to the number it needs.
        let status = unsafe {
            libc::getgrouplist(name.as_ptr(), user.pw_gid, groups.as_mut_ptr(), &mut count)
        };
        if status >= 0 {
            groups.truncate(count.max(0) as usize);
            return groups;
        }
        if groups.len() >= 65_536 {
            return Vec::new();
        }
        groups.resize((count.max(0) as usize).max(groups.len() * 2), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_is_admitted_and_an_unknown_uid_is_not() {
        assert_eq!(admit(0), Some(Admission::Root));
        // No user database entry, hence no groups.
        assert_eq!(admit(4_000_000_000), None);
    }

    #[test]
    fn groups_come_from_the_user_database() {
        // root's primary group is 0 on every Linux.
        assert!(groups_of(0).contains(&0));
        assert_eq!(group_id("root"), Some(0));
        assert_eq!(group_id("no-such-group-anomalyd-test"), None);
    }
}
