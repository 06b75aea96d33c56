//! Where the store lives. SQLite's WAL needs shared memory that only one host can see, and its
//! locks are unreliable across hosts on network filesystems; so a store on NFS, Lustre, CIFS,
//! GPFS, Ceph and the like runs with a rollback journal and is written by one host at a time:
//! a lease file beside it (`vitrun.sqlite.host`) names the host that wrote last, and another
//! host is refused, by name, until that host has been quiet for [`LEASE`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// How long after its last write a host keeps the store to itself.
pub const LEASE: Duration = Duration::from_secs(300);

/// A lease is renewed when it is older than this.
const RENEW_AFTER: Duration = Duration::from_secs(30);

/// The network filesystems by `statfs` magic number.
const NETWORK_FILESYSTEMS: [(i64, &str); 14] = [
    (0x6969, "nfs"),
    (0x517B, "smb"),
    (0xFF53_4D42, "cifs"),
    (0xFE53_4D42, "smb2"),
    (0x0BD0_0BD0, "lustre"),
    (0x4750_4653, "gpfs"),
    (0x00C3_6400, "ceph"),
    (0x0102_1997, "9p"),
    (0x5346_414F, "afs"),
    (0x1983_0326, "beegfs"),
    (0xAAD7_AAEA, "panfs"),
    (0x1366_1366, "orangefs"),
    (0x0116_1970, "gfs2"),
    (0x6573_5546, "fuse"),
];

/// The kind of network filesystem `dir` is on, or `None` for a local one.
/// `VITRUN_STORE_FS=network` (or `local`) overrides the answer, for filesystems the magic
/// number does not tell apart.
pub fn network_fs(dir: &Path) -> Option<&'static str> {
    match std::env::var("VITRUN_STORE_FS").as_deref() {
        Ok("network") => return Some("a network filesystem (VITRUN_STORE_FS=network)"),
        Ok("local") => return None,
        _ => {}
    }
    let c_path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut stat: libc::statfs = unsafe { std::mem::zeroed() };
    // SAFETY: a NUL-terminated path and a statfs the call fills in.
    if unsafe { libc::statfs(c_path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    let magic = stat.f_type as i64;
    NETWORK_FILESYSTEMS
        .iter()
        .find(|(m, _)| *m == magic)
        .map(|(_, name)| *name)
}

/// The holder a lease file names.
#[derive(Debug, Clone, PartialEq)]
pub struct Holder {
    pub host: String,
    pub pid: u32,
    /// Seconds since the epoch of its last write.
    pub renewed: u64,
}

fn seconds_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Holder {
    fn here() -> Holder {
        Holder {
            host: super::hostname(),
            pid: std::process::id(),
            renewed: seconds_now(),
        }
    }

    fn parse(text: &str) -> Option<Holder> {
        let mut it = text.split_whitespace();
        Some(Holder {
            host: it.next()?.to_string(),
            pid: it.next()?.parse().ok()?,
            renewed: it.next()?.parse().ok()?,
        })
    }

    fn line(&self) -> String {
        format!("{} {} {}\n", self.host, self.pid, self.renewed)
    }

    /// Seconds since its last write.
    pub fn age(&self) -> u64 {
        seconds_now().saturating_sub(self.renewed)
    }
}

/// Why this host may not write the store now.
#[derive(Debug, Clone)]
pub struct HeldElsewhere {
    pub fs: &'static str,
    pub holder: Holder,
}

impl std::fmt::Display for HeldElsewhere {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let left = LEASE.as_secs().saturating_sub(self.holder.age());
        write!(
            f,
            "it is on {} and host {} (pid {}) wrote it {} s ago; SQLite cannot share a store between hosts there, so run this command on {}, or again in {left} s, when that host's lease lapses (or keep train.runs_dir on a local disk)",
            self.fs,
            self.holder.host,
            self.holder.pid,
            self.holder.age(),
            self.holder.host
        )
    }
}

/// This host's lease on a store on a network filesystem.
#[derive(Debug)]
pub struct HostLease {
    path: PathBuf,
    fs: &'static str,
    renewed: std::cell::Cell<SystemTime>,
}

impl HostLease {
    /// The lease file of the store at `store`.
    pub fn file_of(store: &Path) -> PathBuf {
        let mut name = store.file_name().unwrap_or_default().to_os_string();
        name.push(".host");
        store.with_file_name(name)
    }

    /// Takes (or renews) the lease for this host; refuses while another host holds it.
    pub fn take(
        store: &Path,
        fs: &'static str,
    ) -> std::io::Result<Result<HostLease, HeldElsewhere>> {
        let path = Self::file_of(store);
        let here = super::hostname();
        for _ in 0..3 {
            match std::fs::read_to_string(&path) {
                Ok(text) => match Holder::parse(&text) {
                    Some(h) if h.host != here && h.age() < LEASE.as_secs() => {
                        return Ok(Err(HeldElsewhere { fs, holder: h }));
                    }
                    // Ours, lapsed, or unreadable: moved aside, so that exactly one taker
                    // wins the link below.
                    _ => {
                        let aside =
                            path.with_extension(format!("host.{here}.{}", std::process::id()));
                        if std::fs::rename(&path, &aside).is_ok() {
                            let _ = std::fs::remove_file(&aside);
                        }
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            // Written under a unique name, then hard-linked into place: link fails when
            // another host got there first (atomic on NFS too, unlike a create).
            let unique = path.with_extension(format!("host.new.{here}.{}", std::process::id()));
            std::fs::File::create(&unique)?.write_all(Holder::here().line().as_bytes())?;
            let linked = std::fs::hard_link(&unique, &path);
            let _ = std::fs::remove_file(&unique);
            match linked {
                Ok(()) => {
                    return Ok(Ok(HostLease {
                        path,
                        fs,
                        renewed: std::cell::Cell::new(SystemTime::now()),
                    }))
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
        Err(std::io::Error::other(format!(
            "{}: could not take the store's host lease after three tries",
            path.display()
        )))
    }

    /// Before a write: renews the lease when it is getting old, and fails when another host
    /// has taken it meanwhile (this host was quiet past the lease).
    pub fn renew(&self) -> Result<(), HeldElsewhere> {
        let fresh = self
            .renewed
            .get()
            .elapsed()
            .is_ok_and(|age| age < RENEW_AFTER);
        if fresh {
            return Ok(());
        }
        let here = super::hostname();
        if let Some(h) = std::fs::read_to_string(&self.path)
            .ok()
            .and_then(|t| Holder::parse(&t))
        {
            if h.host != here && h.age() < LEASE.as_secs() {
                return Err(HeldElsewhere {
                    fs: self.fs,
                    holder: h,
                });
            }
        }
        let tmp = self
            .path
            .with_extension(format!("host.renew.{here}.{}", std::process::id()));
        let written = std::fs::write(&tmp, Holder::here().line())
            .and_then(|()| std::fs::rename(&tmp, &self.path));
        if written.is_ok() {
            self.renewed.set(SystemTime::now());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_folder_is_not_a_network_filesystem() {
        let dir = tempfile::tempdir().unwrap();
        if std::env::var("VITRUN_STORE_FS").is_err() {
            assert_eq!(network_fs(dir.path()), None);
        }
    }

    #[test]
    fn another_hosts_fresh_lease_is_refused_and_a_lapsed_one_taken() {
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("vitrun.sqlite");
        let file = HostLease::file_of(&store);
        let other = |age: u64| Holder {
            host: "login-2".into(),
            pid: 7,
            renewed: seconds_now() - age,
        };
        std::fs::write(&file, other(10).line()).unwrap();
        let held = HostLease::take(&store, "nfs").unwrap().unwrap_err();
        let said = held.to_string();
        assert!(
            said.contains("host login-2 (pid 7)") && said.contains("nfs"),
            "{said}"
        );
        std::fs::write(&file, other(LEASE.as_secs() + 1).line()).unwrap();
        let lease = HostLease::take(&store, "nfs").unwrap().unwrap();
        let now = Holder::parse(&std::fs::read_to_string(&file).unwrap()).unwrap();
        assert_eq!(now.host, super::super::hostname());
        assert!(lease.renew().is_ok());
        // Taken over while this host was quiet: the next write is refused, not interleaved.
        std::fs::write(&file, other(0).line()).unwrap();
        lease.renewed.set(SystemTime::now() - RENEW_AFTER * 2);
        assert!(lease.renew().is_err());
    }
}
