//! Giving up root after start-up: jamd binds its ports (37 and 13 need root) and raises its file
//! limit first, then runs as `--user` (and `--group`), as memcached's `-u` and xinetd's `user` do.

use nix::unistd::{
    Gid, Group, Uid, User, getegid, geteuid, getgid, getuid, initgroups, setgid, setuid,
};

/// What [`drop_to`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dropped {
    /// The process already ran as that user and group.
    AlreadyThere,
    /// The process now runs as this user and group, with the user's supplementary groups.
    Switched {
        /// The user's name.
        user: String,
        /// Its user id.
        uid: u32,
        /// The group id now in force.
        gid: u32,
    },
}

/// Why jamd could not become `--user`; jamd then refuses to serve.
#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    /// No such user.
    #[error("--user {0}: no such user")]
    NoSuchUser(String),
    /// No such group.
    #[error("--group {0}: no such group")]
    NoSuchGroup(String),
    /// The user or group database could not be read.
    #[error("cannot look up {what}: {source}")]
    Lookup {
        /// The user or group looked up.
        what: String,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// Only root can switch users.
    #[error("cannot run as {user}: jamd runs as uid {uid}, and only root can switch users")]
    NotRoot {
        /// The user asked for.
        user: String,
        /// The current user id.
        uid: u32,
    },
    /// A system call of the switch failed.
    #[error("cannot drop privileges to {user}: {step} failed: {source}")]
    Switch {
        /// The user asked for.
        user: String,
        /// `initgroups`, `setgid` or `setuid`.
        step: &'static str,
        /// The error.
        #[source]
        source: nix::Error,
    },
    /// The switch seemed to work, but root could still be regained.
    #[error("dropping privileges to {0} did not stick: root could be regained")]
    NotDropped(String),
}

/// Becomes `user` (with `group`, or the user's own primary group), or says why not.
pub fn drop_to(user: &str, group: Option<&str>) -> Result<Dropped, PrivilegeError> {
    let account = User::from_name(user)
        .map_err(|source| PrivilegeError::Lookup {
            what: format!("user {user}"),
            source,
        })?
        .ok_or_else(|| PrivilegeError::NoSuchUser(user.to_string()))?;
    let gid = match group {
        None => account.gid,
        Some(name) => {
            Group::from_name(name)
                .map_err(|source| PrivilegeError::Lookup {
                    what: format!("group {name}"),
                    source,
                })?
                .ok_or_else(|| PrivilegeError::NoSuchGroup(name.to_string()))?
                .gid
        }
    };
    let uid = account.uid;
    if [getuid(), geteuid()] == [uid, uid] && [getgid(), getegid()] == [gid, gid] {
        return Ok(Dropped::AlreadyThere);
    }
    if !geteuid().is_root() {
        return Err(PrivilegeError::NotRoot {
            user: user.to_string(),
            uid: geteuid().as_raw(),
        });
    }
    let step = |step: &'static str| {
        move |source| PrivilegeError::Switch {
            user: user.to_string(),
            step,
            source,
        }
    };
    // Order matters: supplementary groups and the group need root, so the user goes last.
    let name = std::ffi::CString::new(user).map_err(|_| PrivilegeError::NoSuchUser(user.into()))?;
    initgroups(&name, gid).map_err(step("initgroups"))?;
    setgid(gid).map_err(step("setgid"))?;
    setuid(uid).map_err(step("setuid"))?;
    verify(user, uid, gid)?;
    Ok(Dropped::Switched {
        user: user.to_string(),
        uid: uid.as_raw(),
        gid: gid.as_raw(),
    })
}

fn verify(user: &str, uid: Uid, gid: Gid) -> Result<(), PrivilegeError> {
    let ids_hold = [getuid(), geteuid()] == [uid, uid] && [getgid(), getegid()] == [gid, gid];
    // An unprivileged user must not be able to take root back.
    let regained = !uid.is_root() && setuid(Uid::from_raw(0)).is_ok();
    if ids_hold && !regained {
        Ok(())
    } else {
        Err(PrivilegeError::NotDropped(user.to_string()))
    }
}

/// Whether the process runs as root (and so should be told about `--user`).
pub fn running_as_root() -> bool {
    geteuid().is_root()
}
