"""Several local control planes behind one bot: kubeconfigs whose context, cluster and user
carry the cluster's name, merged kubectl's way through KUBECONFIG=a:b."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path


def named_kubeconfig(source: Path, name: str, dest: Path) -> Path:
    """`source` (one context, `local`) with its context, cluster and user named `name`."""
    config = json.loads(source.read_text())
    cluster = config["clusters"][0]
    user = config["users"][0]
    config["clusters"] = [{"name": name, "cluster": cluster["cluster"]}]
    config["users"] = [{"name": f"{name}-{user['name']}", "user": user["user"]}]
    config["contexts"] = [
        {"name": name, "context": {"cluster": name, "user": f"{name}-{user['name']}"}}
    ]
    config["current-context"] = name
    dest.write_text(json.dumps(config, indent=2))
    return dest


def kubeconfig_path(files: Sequence[Path]) -> str:
    """The KUBECONFIG value listing `files` (the first file's current context is kubectl's)."""
    return os.pathsep.join(str(path) for path in files)
