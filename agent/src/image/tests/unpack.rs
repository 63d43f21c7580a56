//! Layer unpacking: file types and attributes, whiteouts, compression, digests, and malicious
//! tarballs that must fail without writing outside the store.

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use super::{digest, gzip, is_root, names, tarball, Sandbox, E, MTIME};
use crate::image::layers::{LayerError, LayerStore};
use crate::image::paths::PathProblem;
use crate::image::unpack::{UnpackError, UnpackOptions};

const ROOT: UnpackOptions = UnpackOptions { chown: true, mknod: true };
const USER: UnpackOptions = UnpackOptions { chown: false, mknod: false };

fn layers(sb: &Sandbox, opts: UnpackOptions) -> LayerStore {
    LayerStore::open(&sb.root.join("layers"), &sb.root.join("tmp"), opts).unwrap()
}

#[test]
fn unpacks_every_file_type_with_attributes() {
    let sb = Sandbox::new();
    let opts = if is_root() { ROOT } else { USER };
    let tar = tarball(&[
        E::Dir("bin/"),
        E::FileMode("bin/busybox", b"#!busybox", 0o755),
        E::FileMode("bin/su", b"su", 0o4755),
        E::Hardlink("bin/sh", "bin/busybox".into()),
        E::Symlink("bin/ls", "busybox".into()),
        E::Symlink("etc/mtab", "/proc/self/mounts".into()),
        E::FileOwned("home/user/.profile", b"export A=1", 1234, 5678),
        E::DirMode("ro/", 0o555),
        E::File("ro/inside", b"x"),
        E::Fifo("run/fifo"),
        E::Char("dev/null", 1, 3),
        E::File("./etc/hostname", b"device"),
    ]);
    let layer = layers(&sb, opts).unpack(&gzip(&tar)[..], &digest(&tar)).unwrap();
    let fs_dir = &layer.fs;
    let meta = |p: &str| fs::symlink_metadata(fs_dir.join(p)).unwrap();

    assert_eq!(fs::read(fs_dir.join("bin/busybox")).unwrap(), b"#!busybox");
    assert_eq!(meta("bin/busybox").mode() & 0o7777, 0o755);
    assert_eq!(meta("bin/busybox").mtime() as u64, MTIME);
    assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755);
    assert_eq!(meta("bin/sh").ino(), meta("bin/busybox").ino(), "hard link shares the inode");
    assert_eq!(fs::read_link(fs_dir.join("bin/ls")).unwrap(), Path::new("busybox"));
    assert_eq!(fs::read_link(fs_dir.join("etc/mtab")).unwrap(), Path::new("/proc/self/mounts"));
    assert_eq!(meta("etc/mtab").mtime() as u64, MTIME, "symlink mtime set without following");
    assert!(meta("ro").is_dir() && meta("ro").mode() & 0o7777 == 0o555);
    assert_eq!(meta("ro").mtime() as u64, MTIME, "directory mtime set after its children");
    assert!(meta("run/fifo").file_type().is_fifo());
    assert_eq!(fs::read(fs_dir.join("etc/hostname")).unwrap(), b"device");
    assert_eq!(layer.meta.size, 9 + 2 + 10 + 1 + 6);
    if is_root() {
        assert_eq!((meta("home/user/.profile").uid(), meta("home/user/.profile").gid()), (1234, 5678));
        assert!(meta("dev/null").file_type().is_char_device());
        assert_eq!(meta("dev/null").rdev(), nix::sys::stat::makedev(1, 3));
    } else {
        assert!(fs::symlink_metadata(fs_dir.join("dev/null")).is_err());
        assert_eq!(layer.meta.skipped_devices, 1);
    }
    // Nothing left in tmp; unpacking again is a no-op returning the same layer.
    assert!(names(&sb.root.join("tmp")).is_empty());
    let again = layers(&sb, opts).unpack(&b"not even a tarball"[..], &digest(&tar)).unwrap();
    assert_eq!(again, layer);
    sb.assert_untouched();
}

#[test]
fn devices_are_skipped_without_privilege() {
    let sb = Sandbox::new();
    let tar = tarball(&[E::Char("dev/null", 1, 3), E::FileOwned("f", b"x", 1234, 1234), E::Fifo("p")]);
    let layer = layers(&sb, USER).unpack(&tar[..], &digest(&tar)).unwrap();
    assert_eq!(names(&layer.fs), ["dev", "f", "p"]);
    assert!(names(&layer.fs.join("dev")).is_empty());
    assert_eq!(layer.meta.skipped_devices, 1);
    let m = fs::metadata(layer.fs.join("f")).unwrap();
    assert_eq!(m.uid(), nix::unistd::geteuid().as_raw(), "no chown without the option");
}

#[test]
fn whiteouts_and_opaque_dirs_are_recorded() {
    for opts in [ROOT, USER] {
        if opts.mknod && !is_root() {
            continue;
        }
        let sb = Sandbox::new();
        let tar = tarball(&[
            E::File("etc/.wh.motd", b""),
            E::File(".wh.tmp", b""),
            E::File("var/cache/.wh..wh..opq", b""),
            E::File("var/cache/new", b"n"),
            E::File(".wh..wh.plnk", b""),
            E::File("etc/.wh.hosts", b""),
            E::File("etc/hosts", b"re-added in the same layer"),
        ]);
        let layer = layers(&sb, opts).unpack(&tar[..], &digest(&tar)).unwrap();
        let m = &layer.meta;
        let wh: Vec<_> = m.whiteouts.iter().map(|p| p.to_string_lossy().into_owned()).collect();
        assert_eq!(wh, ["etc/motd", "tmp", "etc/hosts"]);
        assert_eq!(m.opaque_dirs, [Path::new("var/cache")]);
        let xattr = xattr::get(layer.fs.join("var/cache"), "trusted.overlay.opaque").ok().flatten();
        if opts.mknod {
            assert!(m.opaque_marked && m.overlay_ready(), "marked for overlayfs: {m:?}");
            assert_eq!(xattr.as_deref(), Some(&b"y"[..]));
        } else {
            assert!(!m.overlay_ready(), "unmarked opaque dirs need the copy fallback");
            assert_eq!(xattr, None);
        }
        assert_eq!(fs::read(layer.fs.join("etc/hosts")).unwrap(), b"re-added in the same layer");
        assert!(layer.fs.join("var/cache").is_dir());
        assert!(fs::symlink_metadata(layer.fs.join(".wh..wh.plnk")).is_err());
        assert!(fs::symlink_metadata(layer.fs.join("etc/.wh.motd")).is_err());
        let motd = fs::symlink_metadata(layer.fs.join("etc/motd"));
        if opts.mknod {
            assert!(m.whiteout_devices);
            let motd = motd.unwrap();
            assert!(motd.file_type().is_char_device() && motd.rdev() == 0, "overlay whiteout device");
        } else {
            assert!(!m.whiteout_devices);
            assert!(motd.is_err());
        }
        // The metadata survives a reload from layer.json.
        let reloaded = layers(&sb, opts).get(&digest(&tar)).unwrap().unwrap();
        assert_eq!(&reloaded.meta, m);
    }
}

#[test]
fn compression_and_digest_checks() {
    let sb = Sandbox::new();
    let store = layers(&sb, USER);
    let tar = tarball(&[E::File("a", b"a")]);
    let d = digest(&tar);

    // Plain tar works as well as gzip.
    assert!(store.unpack(&tar[..], &d).is_ok());

    let other = tarball(&[E::File("b", b"b")]);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zstd", [&[0x28, 0xb5, 0x2f, 0xfd][..], &other].concat()),
        ("xz", [&[0xfd, b'7', b'z', b'X', b'Z', 0][..], &other].concat()),
        ("mismatch", gzip(&other)),
        ("mismatch plain", other.clone()),
        ("truncated gzip", gzip(&other)[..20].to_vec()),
        ("garbage", b"this is not a tar archive at all, not even close.............".repeat(20)),
    ];
    let wrong = digest(b"something else");
    for (name, bytes) in cases {
        let err = store.unpack(&bytes[..], &wrong).unwrap_err();
        let ok = match (name, &err) {
            ("zstd", LayerError::Unpack(UnpackError::Compression { format: "zstd", .. })) => true,
            ("xz", LayerError::Unpack(UnpackError::Compression { format: "xz", .. })) => true,
            (
                "mismatch" | "mismatch plain",
                LayerError::Unpack(UnpackError::DiffIdMismatch { expected, actual }),
            ) => expected == &wrong && actual == &digest(&other),
            ("truncated gzip" | "garbage", LayerError::Unpack(UnpackError::Read { .. })) => true,
            _ => false,
        };
        assert!(ok, "{name}: {err}");
        assert!(store.get(&wrong).unwrap().is_none(), "{name}: no layer left behind");
        assert!(names(&sb.root.join("tmp")).is_empty(), "{name}: temp dir removed");
    }
    sb.assert_untouched();
}

/// The expected failure of a malicious tarball.
#[derive(Debug)]
enum Want {
    Unsafe(PathProblem),
    Symlink,
    HardLink,
    NotDir,
}

#[test]
fn malicious_layers_fail_without_escaping() {
    for opts in [ROOT, USER] {
        if opts.mknod && !is_root() {
            continue;
        }
        let sb = Sandbox::new();
        // The unpack directory is <base>/store/tmp/layer-…/fs: four levels below <base>.
        let up = "../../../..";
        let sentinel = sb.sentinel.to_string_lossy().into_owned();
        let cases: Vec<(&str, Vec<E>, Want)> = vec![
            ("absolute", vec![E::File("/etc/flotilla-escape", b"x")], Want::Unsafe(PathProblem::Absolute)),
            ("dotdot", vec![E::File("../../etc/x", b"x")], Want::Unsafe(PathProblem::DotDot)),
            (
                "dotdot to sentinel",
                vec![E::File(Box::leak(format!("{up}/sentinel/pwned").into_boxed_str()), b"x")],
                Want::Unsafe(PathProblem::DotDot),
            ),
            (
                "inner dotdot",
                vec![E::Dir("a/"), E::File("a/../../x", b"x")],
                Want::Unsafe(PathProblem::DotDot),
            ),
            (
                "symlink to /",
                vec![
                    E::Symlink("link", "/".into()),
                    E::File(Box::leak(format!("link{sentinel}/pwned").into_boxed_str()), b"x"),
                ],
                Want::Symlink,
            ),
            (
                "symlink to /etc",
                vec![E::Symlink("a", "/etc".into()), E::File("a/flotilla-escape", b"x")],
                Want::Symlink,
            ),
            (
                "symlink up",
                vec![E::Symlink("link", "../..".into()), E::File("link/etc/x", b"x")],
                Want::Symlink,
            ),
            (
                "symlink to sentinel",
                vec![E::Symlink("link", format!("{up}/sentinel")), E::File("link/pwned", b"x")],
                Want::Symlink,
            ),
            (
                "nested symlink",
                vec![E::Dir("a/"), E::Symlink("a/b", format!("../{up}/sentinel")), E::Dir("a/b/c/")],
                Want::Symlink,
            ),
            (
                "dir replaced by symlink",
                vec![E::Dir("d/"), E::Symlink("d", sentinel.clone()), E::File("d/pwned", b"x")],
                Want::Symlink,
            ),
            (
                "whiteout through symlink",
                vec![E::Symlink("l", sentinel.clone()), E::File("l/.wh.file", b"")],
                Want::Symlink,
            ),
            (
                "opaque through symlink",
                vec![E::Symlink("l", sentinel.clone()), E::File("l/.wh..wh..opq", b"")],
                Want::Symlink,
            ),
            (
                "hard link through symlink",
                vec![E::Symlink("l", sentinel.clone()), E::Hardlink("h", "l/file".into())],
                Want::HardLink,
            ),
            ("hard link to /etc/passwd", vec![E::Hardlink("h", "/etc/passwd".into())], Want::HardLink),
            ("hard link up", vec![E::Hardlink("h", format!("{up}/sentinel/file"))], Want::HardLink),
            ("hard link missing", vec![E::Hardlink("h", "nothere".into())], Want::HardLink),
            ("hard link to dir", vec![E::Dir("d/"), E::Hardlink("h", "d".into())], Want::HardLink),
            ("nul in pax path", vec![E::PaxPath(b"a\0b".to_vec())], Want::Unsafe(PathProblem::Nul)),
            (
                "pax path absolute",
                vec![E::PaxPath(b"/etc/flotilla-escape".to_vec())],
                Want::Unsafe(PathProblem::Absolute),
            ),
            ("file as parent", vec![E::File("f", b"x"), E::File("f/g", b"x")], Want::NotDir),
            ("root as file", vec![E::File("./", b"x")], Want::Unsafe(PathProblem::Root)),
            ("bad whiteout", vec![E::File("a/.wh..", b"")], Want::Unsafe(PathProblem::BadWhiteout)),
        ];
        let store = layers(&sb, opts);
        for (name, entries, want) in cases {
            let tar = tarball(&entries);
            let d = digest(&tar);
            let err = match store.unpack(&gzip(&tar)[..], &d) {
                Ok(_) => panic!("{name}: unpacked"),
                Err(LayerError::Unpack(e)) => e,
                Err(e) => panic!("{name}: {e}"),
            };
            let ok = match (&want, &err) {
                (Want::Unsafe(p), UnpackError::UnsafePath { problem, .. }) => p == problem,
                (Want::Symlink, UnpackError::SymlinkInPath { .. }) => true,
                (Want::HardLink, UnpackError::BadHardLink { .. }) => true,
                (Want::NotDir, UnpackError::NotADirectory { .. }) => true,
                _ => false,
            };
            assert!(ok, "{name}: expected {want:?}, got {err}");
            assert!(store.get(&d).unwrap().is_none(), "{name}: layer must not exist");
            assert!(names(&sb.root.join("tmp")).is_empty(), "{name}: temp dir must be removed");
            sb.assert_untouched();
        }
        assert!(names(&sb.root.join("layers/sha256")).is_empty());
    }
}

#[test]
fn error_names_the_entry() {
    let sb = Sandbox::new();
    let tar = tarball(&[E::Symlink("a", "/etc".into()), E::File("a/passwd", b"x")]);
    let err = layers(&sb, USER).unpack(&tar[..], &digest(&tar)).unwrap_err().to_string();
    assert!(err.contains("\"a/passwd\"") && err.contains("symlink"), "{err}");
}

#[test]
fn entries_replacing_symlinks_never_write_through_them() {
    for opts in [ROOT, USER] {
        if opts.mknod && !is_root() {
            continue;
        }
        let sb = Sandbox::new();
        let target = sb.sentinel.join("file").to_string_lossy().into_owned();
        let dir = sb.sentinel.to_string_lossy().into_owned();
        let tar = tarball(&[
            // A regular file over a symlink replaces the symlink.
            E::Symlink("s", target.clone()),
            E::File("s", b"pwned?"),
            // A hard link to a symlink links the symlink itself, not its target.
            E::Symlink("t", target.clone()),
            E::Hardlink("h", "t".into()),
            // A directory later replaced by a symlink: its deferred mode is not applied through it.
            E::DirMode("d/", 0o700),
            E::Symlink("d", dir.clone()),
            // A directory entry over a symlink replaces the symlink.
            E::Symlink("e", dir.clone()),
            E::DirMode("e/", 0o700),
            E::Fifo("f"),
            E::File("f", b"file over fifo"),
        ]);
        let before = fs::metadata(&sb.sentinel).unwrap().mode();
        let layer = layers(&sb, opts).unpack(&tar[..], &digest(&tar)).unwrap();
        assert_eq!(fs::read(layer.fs.join("s")).unwrap(), b"pwned?");
        assert!(fs::symlink_metadata(layer.fs.join("h")).unwrap().file_type().is_symlink());
        assert!(fs::symlink_metadata(layer.fs.join("d")).unwrap().file_type().is_symlink());
        assert!(fs::symlink_metadata(layer.fs.join("e")).unwrap().is_dir());
        assert_eq!(fs::read(layer.fs.join("f")).unwrap(), b"file over fifo");
        assert_eq!(fs::metadata(&sb.sentinel).unwrap().mode(), before);
        assert_eq!(fs::metadata(sb.sentinel.join("file")).unwrap().nlink(), 1);
        sb.assert_untouched();
    }
}
