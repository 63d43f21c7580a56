//! The copy fallback on real directories: whiteouts, opaque directories, replacement of
//! symlinks and directories, hard links, and no writes through symlinks in the destination.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{digest, is_root, names, tarball, Sandbox, E};
use crate::image::layers::{LayerDir, LayerStore};
use crate::image::rootfs::{copy_layers, plan_rootfs, RootfsPlan};
use crate::image::unpack::UnpackOptions;

fn unpack(store: &LayerStore, entries: &[E]) -> LayerDir {
    let tar = tarball(entries);
    store.unpack(&tar[..], &digest(&tar)).unwrap()
}

#[test]
fn copy_fallback_applies_layers_in_order() {
    for opts in [UnpackOptions { chown: true, mknod: true }, UnpackOptions { chown: false, mknod: false }] {
        if opts.mknod && !is_root() {
            continue;
        }
        let sb = Sandbox::new();
        let store = LayerStore::open(&sb.root.join("layers"), &sb.root.join("tmp"), opts).unwrap();
        let sentinel = sb.sentinel.to_string_lossy().into_owned();
        let bottom = unpack(
            &store,
            &[
                E::File("etc/motd", b"hello"),
                E::File("etc/hosts", b"old hosts"),
                E::File("etc/keep", b"kept"),
                E::File("var/cache/a", b"a"),
                E::File("var/cache/sub/b", b"b"),
                E::FileMode("bin/busybox", b"bb", 0o755),
                E::Hardlink("bin/sh", "bin/busybox".into()),
                E::Symlink("lib", "usr/lib".into()),
                E::File("usr/lib/libc.so", b"libc"),
                E::Symlink("out", sentinel.clone()),
                E::File("gone-dir/x", b"x"),
            ],
        );
        let middle = unpack(
            &store,
            &[
                E::File("etc/.wh.motd", b""),
                E::File("etc/hosts", b"new hosts"),
                E::File("var/cache/.wh..wh..opq", b""),
                E::File("var/cache/fresh", b"fresh"),
                E::File(".wh.gone-dir", b""),
                // Whiteout below a path that is a symlink in the layers beneath: must not
                // follow it into the sentinel directory.
                E::File("out/.wh.file", b""),
            ],
        );
        let top = unpack(
            &store,
            &[
                E::File("etc/motd", b"back again"),
                E::Dir("lib/"),
                E::File("lib/own", b"own"),
                E::File(".wh.bin", b""),
                E::File("gone-dir", b"now a file"),
            ],
        );
        let dest = sb.root.join("rootfs");
        fs::create_dir(&dest).unwrap();
        copy_layers(&[bottom, middle, top], &dest, &opts).unwrap();

        let read = |p: &str| fs::read_to_string(dest.join(p)).unwrap();
        let exists = |p: &str| fs::symlink_metadata(dest.join(p)).is_ok();
        assert_eq!(read("etc/motd"), "back again", "re-added after a whiteout");
        assert_eq!(read("etc/hosts"), "new hosts", "upper file wins");
        assert_eq!(read("etc/keep"), "kept", "untouched lower file stays");
        assert_eq!(names(&dest.join("var/cache")), ["fresh"], "opaque dir hides lower content");
        assert!(!exists("bin"), "whiteout of a whole directory");
        assert_eq!(read("gone-dir"), "now a file");
        assert!(fs::symlink_metadata(dest.join("lib")).unwrap().is_dir(), "dir replaces symlink");
        assert_eq!(names(&dest.join("lib")), ["own"], "a dir over a symlink does not merge through it");
        assert_eq!(read("usr/lib/libc.so"), "libc");
        assert!(fs::symlink_metadata(dest.join("out")).unwrap().is_dir(), "upper dir replaced the symlink");
        assert_eq!(names(&dest.join("out")), Vec::<String>::new());
        assert_eq!(names(&dest.join("etc")), ["hosts", "keep", "motd"], "no whiteout devices copied");
        sb.assert_untouched();
    }
}

/// The same layers through overlayfs and through the copy fallback give the same tree: the
/// opaque directory marked at unpack hides the lower layer's content in both.
#[test]
fn overlay_and_copy_agree_on_whiteouts_and_opaque_dirs() {
    if !is_root() {
        return;
    }
    let sb = Sandbox::new();
    let opts = UnpackOptions { chown: true, mknod: true };
    let store = LayerStore::open(&sb.root.join("layers"), &sb.root.join("tmp"), opts).unwrap();
    let bottom = unpack(
        &store,
        &[
            E::File("etc/motd", b"hello"),
            E::File("etc/keep", b"kept"),
            E::File("var/cache/a", b"a"),
            E::File("var/cache/sub/b", b"b"),
            E::File("gone/x", b"x"),
        ],
    );
    let top = unpack(
        &store,
        &[
            E::File("etc/.wh.motd", b""),
            E::File("var/cache/.wh..wh..opq", b""),
            E::File("var/cache/fresh", b"fresh"),
            E::File(".wh.gone", b""),
        ],
    );
    let layers = [bottom, top];
    let (upper, work, merged) = (sb.root.join("upper"), sb.root.join("work"), sb.root.join("merged"));
    for d in [&upper, &work, &merged] {
        fs::create_dir(d).unwrap();
    }
    let RootfsPlan::Overlay { options } = plan_rootfs(&layers, true, &upper, &work).unwrap() else {
        panic!("a marked opaque dir needs no copy fallback")
    };
    nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(&*options),
    )
    .unwrap();
    let seen = (names(&merged), names(&merged.join("etc")), names(&merged.join("var/cache")));
    nix::mount::umount2(&merged, nix::mount::MntFlags::MNT_DETACH).unwrap();
    let copy = sb.root.join("copy");
    fs::create_dir(&copy).unwrap();
    copy_layers(&layers, &copy, &opts).unwrap();
    let copied = (names(&copy), names(&copy.join("etc")), names(&copy.join("var/cache")));
    assert_eq!(seen, copied);
    assert_eq!(seen.2, ["fresh"], "the opaque dir hides the lower layer's files");
    assert_eq!(seen.1, ["keep"], "the whiteout hides motd");
    sb.assert_untouched();
}

#[test]
fn copy_fallback_preserves_links_modes_and_owners() {
    let opts = if is_root() {
        UnpackOptions { chown: true, mknod: true }
    } else {
        UnpackOptions { chown: false, mknod: false }
    };
    let sb = Sandbox::new();
    let store = LayerStore::open(&sb.root.join("layers"), &sb.root.join("tmp"), opts).unwrap();
    let layer = unpack(
        &store,
        &[
            E::FileMode("bin/busybox", b"bb", 0o4755),
            E::Hardlink("bin/sh", "bin/busybox".into()),
            E::Symlink("bin/ls", "busybox".into()),
            E::FileOwned("home/u/f", b"f", 1000, 1001),
            E::DirMode("ro/", 0o555),
            E::Fifo("run/p"),
            E::Char("dev/null", 1, 3),
        ],
    );
    let dest = sb.root.join("rootfs");
    fs::create_dir(&dest).unwrap();
    copy_layers(&[layer], &dest, &opts).unwrap();
    let m = |p: &str| fs::symlink_metadata(dest.join(p)).unwrap();
    assert_eq!(m("bin/busybox").mode() & 0o7777, 0o4755);
    assert_eq!(m("bin/sh").ino(), m("bin/busybox").ino());
    assert_eq!(fs::read_link(dest.join("bin/ls")).unwrap(), Path::new("busybox"));
    assert_eq!(m("ro").mode() & 0o7777, 0o555);
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&m("run/p").file_type()));
    if is_root() {
        assert_eq!((m("home/u/f").uid(), m("home/u/f").gid()), (1000, 1001));
        assert_eq!(m("dev/null").rdev(), nix::sys::stat::makedev(1, 3));
    }
    sb.assert_untouched();
}

#[test]
fn opaque_root_hides_everything_below() {
    let sb = Sandbox::new();
    let opts = UnpackOptions { chown: false, mknod: false };
    let store = LayerStore::open(&sb.root.join("layers"), &sb.root.join("tmp"), opts).unwrap();
    let lower = unpack(&store, &[E::File("a", b"a"), E::File("d/b", b"b")]);
    let upper = unpack(&store, &[E::File(".wh..wh..opq", b""), E::File("c", b"c")]);
    assert_eq!(upper.meta.opaque_dirs, [Path::new("")]);
    let dest = sb.root.join("rootfs");
    fs::create_dir(&dest).unwrap();
    copy_layers(&[lower, upper], &dest, &opts).unwrap();
    assert_eq!(names(&dest), ["c"]);
}
