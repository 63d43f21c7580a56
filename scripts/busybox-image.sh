#!/usr/bin/env bash
# Builds a one-layer `docker save` archive from Debian's busybox-static, tagged
# flotilla.local/busybox:demo, for air-gapped demos: `flotilla-agent image import` takes it.
#   bash scripts/busybox-image.sh OUT.tar
set -euo pipefail
out=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/rootfs
mkdir -p "$root"/{bin,etc,tmp,www,proc,sys,dev}
cp /bin/busybox "$root/bin/busybox"
for applet in sh ls cat echo sleep httpd wget grep head true false; do
  ln -s busybox "$root/bin/$applet"
done
printf 'root:x:0:0:root:/root:/bin/sh\nwww:x:33:33:www:/www:/bin/false\n' > "$root/etc/passwd"
printf '<h1>Hello from a Flotilla container</h1>\n' > "$root/www/index.html"
mkdir -p "$work/img"
tar -C "$root" --numeric-owner --owner=0 --group=0 --mtime=@1700000000 -cf "$work/img/layer.tar" .
diff_id=sha256:$(sha256sum "$work/img/layer.tar" | cut -d' ' -f1)
case $(uname -m) in
  x86_64) arch=amd64 ;; aarch64) arch=arm64 ;; armv7l|armv6l) arch=arm ;; *) arch=$(uname -m) ;;
esac
printf '{"architecture":"%s","os":"linux","config":{"Cmd":["sh"],"Env":["PATH=/bin"],"WorkingDir":"/"},"rootfs":{"type":"layers","diff_ids":["%s"]}}' \
  "$arch" "$diff_id" > "$work/img/config.json"
cfg=$(sha256sum "$work/img/config.json" | cut -d' ' -f1)
mv "$work/img/config.json" "$work/img/$cfg.json"
printf '[{"Config":"%s.json","RepoTags":["flotilla.local/busybox:demo"],"Layers":["layer.tar"]}]' "$cfg" > "$work/img/manifest.json"
tar -C "$work/img" -cf "$out" "$cfg.json" layer.tar manifest.json
