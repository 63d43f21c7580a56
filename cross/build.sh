#!/usr/bin/env bash
# Builds static (musl) `flotilla-agent` binaries for x86_64, aarch64 and armv7 with libseccomp
# linked in statically, then checks them: `--version` (natively, or under qemu-user), static
# linking, libseccomp present, and on x86_64 a real container whose seccomp filter is enforced.
# Installs what it needs by itself (idempotent). Run as root on Debian 12, from any directory.
#
#   bash cross/build.sh                              # release profile, all three targets
#   bash cross/build.sh --profile cross-ci           # CI's cheap profile (unoptimised)
#   bash cross/build.sh --targets aarch64,armv7      # a subset (short names or triples)
#   bash cross/build.sh --no-container-check         # skip the native x86_64 container run
#
# Output: $CARGO_TARGET_DIR/cross/<triple>/flotilla-agent (CARGO_TARGET_DIR defaults to the
# workspace's target/). Downloads and tool builds are cached in $FLOTILLA_CROSS_CACHE
# (default /var/cache/flotilla-cross). See docs/cross.md.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${FLOTILLA_CROSS_CACHE:-/var/cache/flotilla-cross}
target_dir=$(realpath -m "${CARGO_TARGET_DIR:-$repo/target}")
out_root=$target_dir/cross

# Pinned tool versions: bump deliberately (the libseccomp cache is keyed by them).
ZIGLANG_VERSION=0.15.2
CARGO_ZIGBUILD_VERSION=0.24.1
# libseccomp comes from Debian's source package (2.5.4 plus Debian's syscall-table update).
LIBSECCOMP_SRC_PKG=libseccomp

profile=release
targets_arg=x86_64,aarch64,armv7
container_check=1

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
  case $1 in
    --profile) profile=$2; shift 2 ;;
    --profile=*) profile=${1#*=}; shift ;;
    --targets) targets_arg=$2; shift 2 ;;
    --targets=*) targets_arg=${1#*=}; shift ;;
    --no-container-check) container_check=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown argument: $1" >&2; usage >&2; exit 2 ;;
  esac
done

# Each step is a phase: its wall time and the CPU time of the commands it ran (user + sys of
# the waited-for children, from the `times` builtin, which must run in this shell: a $(...)
# subshell would not see them) are listed at the end.
times_file=$(mktemp /tmp/flotilla-cross-times.XXXXXX)
trap 'rm -f "$times_file"' EXIT
phase_name=; phase_rows=()
cpu_now() {  # sets $cpu: children's user + sys seconds so far
  times > "$times_file"
  cpu=$(tail -n1 "$times_file" | awk '{ t = 0; for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
                                       printf "%.1f", t }')
}
phase_end() {
  [ -n "$phase_name" ] || return 0
  cpu_now
  phase_rows+=("$(printf '%-52.52s %7ds %8.0fs' "$phase_name" $(( $(date +%s) - phase_t0 )) \
                  "$(awk "BEGIN{print $cpu - $phase_c0}")")")
  phase_name=
}
step() {
  phase_end
  printf '\n==> %s\n' "$*"
  cpu_now; phase_name=$*; phase_t0=$(date +%s); phase_c0=$cpu
}
die() { echo "error: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "run as root (it installs packages)"
[ "$(uname -m)" = x86_64 ] || die "the build host must be x86_64"

# Short name -> Rust triple; triple -> zig target, zig -mcpu (cargo-zigbuild's choice for
# armv7), `file` architecture text, qemu-user binary ("" = run natively).
triple_of() {
  case $1 in
    x86_64|x86_64-unknown-linux-musl) echo x86_64-unknown-linux-musl ;;
    aarch64|arm64|aarch64-unknown-linux-musl) echo aarch64-unknown-linux-musl ;;
    armv7|arm|armv7-unknown-linux-musleabihf) echo armv7-unknown-linux-musleabihf ;;
    *) die "unsupported target: $1 (x86_64, aarch64, armv7)" ;;
  esac
}
zig_target() {
  case $1 in
    x86_64-*) echo x86_64-linux-musl ;;
    aarch64-*) echo aarch64-linux-musl ;;
    armv7-*) echo arm-linux-musleabihf ;;
  esac
}
zig_cpu() { case $1 in armv7-*) echo "-mcpu=generic+v7a+vfp3-d32+thumb2-neon" ;; esac; }
file_arch() {
  case $1 in
    x86_64-*) echo "x86-64" ;;
    aarch64-*) echo "ARM aarch64" ;;
    armv7-*) echo "ARM, EABI5" ;;
  esac
}
uname_m() { case $1 in x86_64-*) echo x86_64 ;; aarch64-*) echo aarch64 ;; armv7-*) echo armv7l ;; esac; }
oci_platform() {
  case $1 in x86_64-*) echo linux/amd64 ;; aarch64-*) echo linux/arm64 ;; armv7-*) echo linux/arm/v7 ;; esac
}
qemu_of() {
  case $1 in
    x86_64-*) echo "" ;;
    aarch64-*) echo qemu-aarch64-static ;;
    armv7-*) echo qemu-arm-static ;;
  esac
}

triples=()
IFS=, read -r -a wanted <<< "$targets_arg"
for t in "${wanted[@]}"; do triples+=("$(triple_of "$t")"); done
[ ${#triples[@]} -gt 0 ] || die "no targets"
has_x86_64=0
for t in "${triples[@]}"; do [ "$t" = x86_64-unknown-linux-musl ] && has_x86_64=1; done

# ---------------------------------------------------------------------------------------------
step "Debian packages"
# busybox-static: the image archives of the checks (scripts/busybox-image.sh).
pkgs=(ca-certificates make gperf file binutils dpkg-dev python3-venv qemu-user-static busybox-static)
missing=()
for p in "${pkgs[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

mkdir -p "$cache"
cd "$repo"

# ---------------------------------------------------------------------------------------------
step "Rust targets"
command -v cargo >/dev/null || die "cargo is not on PATH"
toolchain_sysroot=$(rustc --print sysroot)
std_from_src=()   # targets whose std must be built from rust-src (-Zbuild-std)
std_prebuilt=()
installed=$(rustup target list --installed)
for t in "${triples[@]}"; do
  if grep -qx "$t" <<< "$installed" || add_out=$(rustup target add "$t" 2>&1); then
    std_prebuilt+=("$t")
  else
    # rustup's channel for this toolchain has no prebuilt std for the target (as for
    # armv7-unknown-linux-musleabihf with 1.94/1.95): build std from source instead.
    grep -m1 -i 'error' <<< "$add_out" || true
    echo "no prebuilt std for $t on $(rustc --version): building std from rust-src"
    std_from_src+=("$t")
  fi
done
if [ ${#std_from_src[@]} -gt 0 ] && [ ! -d "$toolchain_sysroot/lib/rustlib/src/rust/library" ]; then
  rustup component add rust-src
fi
if [ ${#std_from_src[@]} -gt 0 ]; then
  # The std build's own dependencies (object, addr2line, ...) must be in the local registry:
  # the second invocation below runs offline.
  RUSTC_BOOTSTRAP=1 cargo fetch --locked -q --manifest-path "$toolchain_sysroot/lib/rustlib/src/rust/library/Cargo.toml"
fi
echo "prebuilt std: ${std_prebuilt[*]:-none}; std from source: ${std_from_src[*]:-none}"

# ---------------------------------------------------------------------------------------------
step "zig $ZIGLANG_VERSION and cargo-zigbuild"
venv=$cache/zig-venv
# Both from PyPI, into one venv: the ziglang wheel, and cargo-zigbuild's prebuilt wheel
# (a `cargo install` would compile it: about 2 minutes).
if [ "$("$venv/bin/python3" -m ziglang version 2>/dev/null || true)" != "$ZIGLANG_VERSION" ] \
   || [ "$("$venv/bin/cargo-zigbuild" --version 2>/dev/null || true)" != "cargo-zigbuild $CARGO_ZIGBUILD_VERSION" ]; then
  rm -rf "$venv"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check --no-cache-dir \
    "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"
fi
# `zig` on PATH: the wheel's binary itself (`python -m ziglang` would add a Python start to
# each of the many zig runs of configure and the build).
mkdir -p "$cache/bin"
ln -sfn "$("$venv/bin/python3" -c 'import os, ziglang; print(os.path.dirname(ziglang.__file__))')/zig" \
  "$cache/bin/zig"
export PATH=$cache/bin:$PATH
zig_version=$(zig version)
echo "zig $zig_version"
# Called by its path: `cargo zigbuild` would prefer any cargo-zigbuild in ~/.cargo/bin.
cargo_zigbuild=$venv/bin/cargo-zigbuild
"$cargo_zigbuild" --version

# ---------------------------------------------------------------------------------------------
step "libseccomp: Debian source package"
# Debian's libseccomp.a is built against glibc: it cannot go into a musl binary. Build it from
# Debian's source package with zig's C compiler for each musl target. A private apt source
# list (deb-src, bookworm main) under the cache dir keeps the system's apt config untouched.
aptdir=$cache/apt
apt_opts=(-o "Dir::Etc::SourceList=$aptdir/sources.list" -o "Dir::Etc::SourceParts=$aptdir/none"
          -o "Dir::State::Lists=$aptdir/lists" -o "Dir::Cache=$aptdir/cache"
          -o "APT::Sandbox::User=root")
srcdir=$cache/src
if ! ls "$srcdir"/${LIBSECCOMP_SRC_PKG}_*.dsc >/dev/null 2>&1; then
  mkdir -p "$aptdir/lists/partial" "$aptdir/cache/archives/partial" "$aptdir/none" "$srcdir"
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $codename main" \
    > "$aptdir/sources.list"
  apt-get "${apt_opts[@]}" update -qq
  (cd "$srcdir" && apt-get "${apt_opts[@]}" source --download-only -qq "$LIBSECCOMP_SRC_PKG")
fi
dsc=$(ls "$srcdir"/${LIBSECCOMP_SRC_PKG}_*.dsc | sort -V | tail -n1)
seccomp_version=$(basename "$dsc" .dsc); seccomp_version=${seccomp_version#${LIBSECCOMP_SRC_PKG}_}
echo "libseccomp $seccomp_version (Debian source package)"

seccomp_prefix() { echo "$cache/libseccomp/$seccomp_version-zig$zig_version/$1"; }
build_libseccomp() {
  local triple=$1 prefix work
  prefix=$(seccomp_prefix "$triple")
  if [ -f "$prefix/.done" ]; then echo "$triple: cached in $prefix"; return; fi
  echo "$triple: building into $prefix"
  work=$(mktemp -d "$cache/build.XXXXXX")
  # dpkg-source checks the checksums in the .dsc and applies Debian's patches.
  dpkg-source --no-check -x "$dsc" "$work/src" >/dev/null
  # shellcheck disable=SC2046
  (
    cd "$work/src"
    # configure links test programs, for which zig builds musl's libc.a, compiler_rt and
    # ubsan_rt for the target: about 110 CPU-seconds. Linked with cargo-zigbuild's own flags
    # (`-g -fno-sanitize=all`) and no -O, these are the very builds (zig's cache keys) that
    # the agent's final link needs when rustc passes no strip option (strip = "none", as in
    # cross-ci), and that the cc crate's compiler probes need on armv7 (cargo-zigbuild links
    # its `--version`), so zig builds them once per target. With strip = true (release), or
    # cargo's default strip = "debuginfo" for debug = false, rustc passes -s / -S: another
    # key, one more libc build per target. -O2 only for compiling libseccomp itself (make
    # links nothing: the library is static).
    export CC="zig cc -g -fno-sanitize=all $(zig_cpu "$triple") -target $(zig_target "$triple")"
    export AR="zig ar" RANLIB="zig ranlib" CFLAGS=""
    rm -rf "$prefix"
    ./configure --host="$(zig_target "$triple")" --build=x86_64-linux-gnu --prefix="$prefix" \
      --enable-static --disable-shared --disable-python > "$work/configure.log" 2>&1 \
      || { tail -n 30 "$work/configure.log"; exit 1; }
    { nice -n 10 make -j"$(nproc)" -C src CFLAGS=-O2 && make -C src install && make -C include install; } \
      > "$work/make.log" 2>&1 || { tail -n 30 "$work/make.log"; exit 1; }
  )
  [ -f "$prefix/lib/libseccomp.a" ] || die "libseccomp.a missing for $triple"
  touch "$prefix/.done"
  rm -rf "$work"
}
# The targets in parallel: configure is mostly one process at a time.
step "libseccomp for ${triples[*]}"
pids=()
for t in "${triples[@]}"; do build_libseccomp "$t" & pids+=($!); done
for p in "${pids[@]}"; do wait "$p" || die "libseccomp build failed"; done

# ---------------------------------------------------------------------------------------------
# The profile: release (shipping), cross-ci (CI: unoptimised, unstripped; see Cargo.toml), or any
# other profile Cargo.toml defines.
profile_args=(--profile "$profile")
case $profile in dev|test) profile_dir=debug ;; bench) profile_dir=release ;; *) profile_dir=$profile ;; esac

# libseccomp-sys links `static=seccomp` when LIBSECCOMP_LINK_TYPE=static; its LIBSECCOMP_LIB_PATH
# is one path for all targets, so each target gets its own -L through its target rustflags.
export LIBSECCOMP_LINK_TYPE=static
unset LIBSECCOMP_LIB_PATH RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
for t in "${triples[@]}"; do
  var=CARGO_TARGET_$(tr 'a-z-' 'A-Z_' <<< "$t")_RUSTFLAGS
  flags="-L native=$(seccomp_prefix "$t")/lib"
  # 32-bit musl: the libc crate still defaults to musl's pre-1.2 32-bit time_t, but zig links
  # musl 1.2, whose time_t is 64-bit: tell the libc crate so (the matching ABI, Y2038-safe).
  # (libcgroups 0.7's D-Bus code, behind libcontainer's `systemd` feature, now off, did not
  # compile without it: TimeVal::new(i64, ..).)
  case $t in armv7-*) flags+=" --cfg libc_unstable_musl_v1_2" ;; esac
  # A std built from source has no self-contained crt objects / libunwind next to it: let
  # zig's driver supply crt1.o etc. instead of rustc naming files that do not exist.
  case " ${std_from_src[*]:-} " in *" $t "*) flags+=" -C link-self-contained=no" ;; esac
  export "$var=$flags"
done

# -Zbuild-std (below) is unstable: RUSTC_BOOTSTRAP lets the stable toolchain use it. Set for
# every invocation, so that all of them share the host build scripts and proc macros in one
# target directory: build scripts that probe for nightly features (anyhow, thiserror,
# proc-macro2) watch RUSTC_BOOTSTRAP, and a difference between invocations rebuilt them, and
# everything above them, on each run.
export RUSTC_BOOTSTRAP=1

zigbuild() {  # zigbuild EXTRA_ARGS... -- TRIPLES...
  local extra=() targs=()
  while [ "$1" != -- ]; do extra+=("$1"); shift; done; shift
  for t in "$@"; do targs+=(--target "$t"); done
  local locked=--locked
  # The patched build's lock file (a copy) changes: no --locked, but nothing new is fetched.
  [ "${no_locked:-0}" = 1 ] && locked=--offline
  echo "+ cargo zigbuild -p flotilla-agent --bin flotilla-agent $locked ${profile_args[*]} ${extra[*]} ${targs[*]}"
  CARGO_TARGET_DIR=$target_dir nice -n 10 "$cargo_zigbuild" zigbuild -p flotilla-agent --bin flotilla-agent \
    $locked "${profile_args[@]}" "${extra[@]}" "${targs[@]}"
}

# Targets built together in one invocation (host build scripts and proc macros once): those
# with a prebuilt std and no 32-bit workaround. The others (no prebuilt std, or 32-bit) go in
# a second invocation with -Zbuild-std and/or the libcontainer patch, in the same target
# directory (its host crates are the first invocation's).
main_group=(); side_group=(); side_build_std=0; side_32=0
for t in "${triples[@]}"; do
  from_src=0
  case " ${std_from_src[*]:-} " in *" $t "*) from_src=1 ;; esac
  case $t in armv7-*) is32=1 ;; *) is32=0 ;; esac
  if [ "$from_src" = 0 ] && [ "$is32" = 0 ]; then main_group+=("$t"); continue; fi
  side_group+=("$t")
  [ "$from_src" = 1 ] && side_build_std=1
  [ "$is32" = 1 ] && side_32=1
done

build_start=$(date +%s)
if [ ${#main_group[@]} -gt 0 ]; then
  step "cargo zigbuild (${profile}): ${main_group[*]}"
  zigbuild -- "${main_group[@]}"
fi
if [ ${#side_group[@]} -gt 0 ]; then
  step "cargo zigbuild (${profile}, second invocation): ${side_group[*]}"
  extra=()
  [ "$side_build_std" = 1 ] && extra+=(-Zbuild-std=std,panic_abort)
  build_dir=$repo
  if [ "$side_32" = 1 ]; then
    # libcontainer 0.7.0 does not compile for 32-bit targets: src/tty.rs compares
    # FsType(DEVPTS_SUPER_MAGIC) with the constant typed u64 on musl, while nix's FsType
    # holds a c_ulong (u32 there). Build against a copy of the exact locked crate with that
    # one expression cast (`as _`, a no-op on 64-bit), through a [patch] on the command line.
    lc_version=$(awk '/^name = "libcontainer"$/{f=1;next} f&&/^version/{gsub(/"/,"",$3);print $3;exit}' "$repo/Cargo.lock")
    lc_sum=$(awk '/^name = "libcontainer"$/{f=1;next} f&&/^checksum/{gsub(/"/,"",$3);print $3;exit}' "$repo/Cargo.lock")
    [ "$lc_version" = 0.7.0 ] || die "libcontainer is $lc_version: re-check the 32-bit patch in cross/build.sh"
    cargo fetch --locked -q
    crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/libcontainer-$lc_version.crate | head -n1)
    [ "$(sha256sum < "$crate" | cut -d' ' -f1)" = "$lc_sum" ] || die "$crate does not match Cargo.lock"
    patched=$cache/patched/libcontainer-$lc_version
    if [ ! -f "$patched/.done-$lc_sum" ]; then   # kept between runs: no needless rebuilds
      rm -rf "$patched"; mkdir -p "$cache/patched"
      tar -xzf "$crate" -C "$cache/patched"
      sed -i 's/FsType(DEVPTS_SUPER_MAGIC)/FsType(DEVPTS_SUPER_MAGIC as _)/' "$patched/src/tty.rs"
      [ "$(grep -c 'FsType(DEVPTS_SUPER_MAGIC as _)' "$patched/src/tty.rs")" = 2 ] \
        || die "the libcontainer tty.rs patch no longer applies"
      touch "$patched/.done-$lc_sum"
    fi
    # The patch changes the lock file, so this build runs in a copy of the workspace (sources
    # only) with a copy of Cargo.lock; -Zlockfile-path cannot be used: it also captures
    # -Zbuild-std's own resolution of the standard library.
    ws32=$cache/ws32
    rm -rf "$ws32"; mkdir -p "$ws32"
    tar -C "$repo" --exclude=./target --exclude=./.git --exclude=./fuzz -cf - . | tar -C "$ws32" -xf -
    cp "$ws32/Cargo.lock" "$cache/Cargo.lock.ws32-orig"
    extra+=(--config "patch.crates-io.libcontainer.path=\"$patched\"")
    build_dir=$ws32
  fi
  (cd "$build_dir" && no_locked=$side_32 zigbuild "${extra[@]}" -- "${side_group[@]}")
  if [ "$side_32" = 1 ]; then
    # The patch must be the only difference: libcontainer's source and checksum lines.
    changed=$(diff "$cache/Cargo.lock.ws32-orig" "$ws32/Cargo.lock" | grep -c '^[<>]' || true)
    [ "$changed" -le 2 ] || { diff "$cache/Cargo.lock.ws32-orig" "$ws32/Cargo.lock" >&2
                              die "the 32-bit build resolved other versions"; }
  fi
fi
build_secs=$(( $(date +%s) - build_start ))

# ---------------------------------------------------------------------------------------------
step "checks"
# Syscall names that only libseccomp's syscall table carries (the agent's own profile names
# none of them): their presence shows libseccomp is linked in; a glibc build that links
# libseccomp.so dynamically has none of them.
seccomp_markers=(afs_syscall tuxcall putpmsg)
fail=0
rows=()
for t in "${triples[@]}"; do
  src=$target_dir/$t/$profile_dir/flotilla-agent
  dst=$out_root/$t/flotilla-agent
  [ -f "$src" ] || die "$src was not built"
  mkdir -p "$(dirname "$dst")"
  cp "$src" "$dst"
  finfo=$(file -b "$dst")
  problems=()
  grep -q "$(file_arch "$t")" <<< "$finfo" || problems+=("wrong architecture")
  grep -Eq 'statically linked|static-pie linked' <<< "$finfo" || problems+=("not static")
  readelf -lW "$dst" | grep -q INTERP && problems+=("has an ELF interpreter")
  readelf -dW "$dst" | grep -q NEEDED && problems+=("has NEEDED shared libraries")
  # Not stripped here when the profile does not strip (cross-ci): `zig objcopy --strip-all`
  # fails ("unimplemented") on these binaries and the host's binutils reads only x86.
  stripped=yes; grep -q ', stripped' <<< "$finfo" || stripped=no
  strs=$(strings -a "$dst")
  for m in "${seccomp_markers[@]}"; do grep -qx "$m" <<< "$strs" || problems+=("no libseccomp ($m missing)"); done
  qemu=$(qemu_of "$t")
  if version=$(${qemu:+$qemu} "$dst" --version 2>&1); then :; else problems+=("--version failed: $version"); fi
  # Real work on the target's instruction set: import an image archive made for that platform
  # (the busybox in its layer is the host's; importing does not run it) and list it.
  imgdir=$(mktemp -d /tmp/flotilla-cross-img.XXXXXX)
  mkdir -p "$imgdir/bin"
  printf '#!/bin/sh\necho %s\n' "$(uname_m "$t")" > "$imgdir/bin/uname"; chmod +x "$imgdir/bin/uname"
  PATH=$imgdir/bin:$PATH bash "$repo/scripts/busybox-image.sh" "$imgdir/image.tar"
  if ${qemu:+$qemu} "$dst" --state-dir "$imgdir/state" image import "$imgdir/image.tar" >/dev/null 2>"$imgdir/err" \
    && ls_out=$(${qemu:+$qemu} "$dst" --state-dir "$imgdir/state" image ls 2>>"$imgdir/err") \
    && grep -q "flotilla.local/busybox:demo .* $(oci_platform "$t") " <<< "$ls_out"; then
    image_check="image import ok ($(oci_platform "$t"))"
  else
    problems+=("image import failed: $(cat "$imgdir/err")"); image_check=failed
  fi
  rm -rf "$imgdir"
  size=$(stat -c %s "$dst")
  if [ ${#problems[@]} -eq 0 ]; then status=ok; else status="FAIL: $(IFS=';'; echo "${problems[*]}")"; fail=1; fi
  echo "$t: $finfo"
  echo "$t: $version (${qemu:-native}); $image_check; $status"
  rows+=("$(printf '%-32s %-10s %12s %8.2f %-8s  %s' "$t" "$profile" "$size" "$(awk "BEGIN{print $size/1048576}")" \
            "$stripped" "$status")")
done

# ---------------------------------------------------------------------------------------------
if [ "$container_check" = 1 ] && [ "$has_x86_64" = 1 ] && [ "$fail" = 0 ]; then
  step "x86_64: a real container, seccomp enforced"
  bash "$repo/cross/container-check.sh" "$out_root/x86_64-unknown-linux-musl/flotilla-agent" || fail=1
fi

phase_end
step "summary (build ${build_secs}s; binaries in $out_root)"
printf '%-32s %-10s %12s %8s %-8s  %s\n' target profile bytes MiB stripped status
printf '%s\n' "${rows[@]}"
echo
printf '%-52s %8s %9s\n' phase wall CPU
printf '%s\n' "${phase_rows[@]}"
[ "$fail" = 0 ] || die "some checks failed"
