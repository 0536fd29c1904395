#!/usr/bin/env python3
"""Writes a docker-archive image tarball (what `ctr images import` reads)
from a root filesystem directory, with no registry and no Docker engine.

    mkimage.py ROOTFS OUT.tar --tag NAME:TAG [--tag ...] [--entrypoint JSON]
               [--cmd JSON] [--env K=V ...] [--workdir DIR] [--user U]

The single layer is the directory as a tar with every entry owned by root
(uid/gid 0) and fixed mtimes, so the same input gives the same image.
"""
import argparse, hashlib, io, json, os, tarfile

def layer(root):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(dirnames) + sorted(filenames):
                full = os.path.join(dirpath, name)
                info = t.gettarinfo(full, arcname=os.path.relpath(full, root))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isfile():
                    with open(full, "rb") as f:
                        t.addfile(info, f)
                else:
                    t.addfile(info)
    return buf.getvalue()

def main():
    a = argparse.ArgumentParser()
    a.add_argument("rootfs"); a.add_argument("out")
    a.add_argument("--tag", action="append", required=True)
    a.add_argument("--entrypoint"); a.add_argument("--cmd")
    a.add_argument("--env", action="append", default=[])
    a.add_argument("--workdir", default="/"); a.add_argument("--user", default="0:0")
    o = a.parse_args()
    data = layer(o.rootfs)
    diff = "sha256:" + hashlib.sha256(data).hexdigest()
    cfg = {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] + o.env,
           "WorkingDir": o.workdir, "User": o.user}
    if o.entrypoint: cfg["Entrypoint"] = json.loads(o.entrypoint)
    if o.cmd: cfg["Cmd"] = json.loads(o.cmd)
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": cfg,
                         "rootfs": {"type": "layers", "diff_ids": [diff]}, "history": [{"created_by": "mkimage.py"}]},
                        sort_keys=True).encode()
    cname = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": cname, "RepoTags": o.tag, "Layers": ["layer.tar"]}]).encode()
    with tarfile.open(o.out + ".tmp", "w") as t:
        for name, blob in (("layer.tar", data), (cname, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name); info.size = len(blob); info.mtime = 0
            t.addfile(info, io.BytesIO(blob))
    os.replace(o.out + ".tmp", o.out)

if __name__ == "__main__":
    main()
